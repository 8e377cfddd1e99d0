"""Token log-probabilities on the llama.cpp engine (Segment.avg_logprob with the transformers engine's
definition): greedy rows equal the transformers engine's on the parity cases (f32 GGUF), sampled
tokens and min_new_tokens equal the teacher-forced log-softmax after the temperature, rows that end on
a stop token count it, the pipeline fills avg_logprob, and the log-softmax is numerically stable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from funasr_nano.engines.base import GeneratedTokens
from funasr_nano.engines.llamacpp import LlamaCppEngine
from funasr_nano.engines.sampling import log_softmax, pick_token
from funasr_nano.engines.transformers import TransformersEngine
from funasr_nano.options import DecodingOptions

from .test_llamacpp import GREEDY, INSTRUCTIONS, MAX_NEW, Setup, all_frames, low_frame_rate, waveform  # noqa: F401

TOLERANCE = 5e-5  # f32 GGUF against the torch model: measured differences up to 5e-6 on the tiny model


@torch.no_grad()
def teacher_forced(setup: Setup, item, generated, options: DecodingOptions, stops) -> list[float]:
    """The log-probability of each of ``generated`` (the row's tokens, then its stop token when it ended
    on one) under the torch model fed the prompt plus those tokens: ``log_softmax`` of the logits, ``stops``
    masked below ``min_new_tokens``, over the temperature."""
    embed = setup.model.get_input_embeddings()
    parts = [p if isinstance(p, torch.Tensor) else embed(torch.tensor(list(p))) for p in item.parts]
    prompt = torch.cat(parts)
    inputs = torch.cat([prompt, embed(torch.tensor(list(generated), dtype=torch.long))])[None]
    logits = setup.model(inputs_embeds=inputs).logits[0, prompt.shape[0] - 1:].double()
    values = []
    for step, token in enumerate(generated):
        scores = logits[step].clone()
        if step < options.min_new_tokens:
            scores[list(stops)] = -float("inf")
        if options.temperature > 0:
            scores /= options.temperature
        values.append(torch.log_softmax(scores, -1)[token].item())
    return values


@pytest.mark.parametrize("which", ["low_frame_rate", "all_frames"])
def test_greedy_log_probabilities_equal_the_transformers_engine(which, request):
    setup = request.getfixturevalue(which)
    inputs = [setup.llm_input(instruction) for instruction in INSTRUCTIONS]
    free = setup.transformers_greedy(inputs[0])
    stops = setup.stop + [free[3]]  # a token the model emits early ends the row: its log-probability counts
    cases = [(setup.engine, TransformersEngine(setup.model, setup.stop), inputs)]
    with LlamaCppEngine(setup.path, stops, n_threads=1) as stopping:
        cases.append((stopping, TransformersEngine(setup.model, stops), inputs[:1]))
        ended = 0
        for engine, reference, items in cases:
            expected = [reference.generate([item], GREEDY)[0] for item in items]
            got = engine.generate(items, GREEDY)
            for mine, theirs in zip(got, expected):
                assert isinstance(mine, GeneratedTokens) and list(mine) == list(theirs)
                assert len(mine.logprobs) == len(theirs.logprobs) in (len(mine), len(mine) + 1)
                assert mine.logprobs == pytest.approx(theirs.logprobs, abs=TOLERANCE)
                assert mine.avg_logprob == pytest.approx(theirs.avg_logprob, abs=TOLERANCE)
                assert all(value <= 0 for value in mine.logprobs)
                ended += len(mine.logprobs) == len(mine) + 1
        assert ended >= 1, "no row ended on a stop token"
        assert len(got[0]) == free.index(free[3])


def test_sampled_tokens_and_min_new_tokens_have_their_log_probabilities_after_the_temperature(low_frame_rate):
    setup = low_frame_rate
    item = setup.llm_input(INSTRUCTIONS[0])
    stop = setup.transformers_greedy(item)[3]  # one stop token: a row that ends on it reports it last
    with LlamaCppEngine(setup.path, [stop], n_threads=1, seed=3) as engine:
        for options in (DecodingOptions(max_new_tokens=24, temperature=1.5, repetition_guard=False),
                        DecodingOptions(max_new_tokens=24, temperature=0.7, min_new_tokens=6, repetition_guard=False),
                        DecodingOptions(max_new_tokens=24, min_new_tokens=6, repetition_guard=False)):
            rows = engine.generate([item, item], options)
            assert options.temperature == 0 or rows[0] != rows[1]  # two draws
            for row in rows:
                assert len(row.logprobs) in (len(row), len(row) + 1)
                generated = list(row) + [stop] * (len(row.logprobs) - len(row))
                assert row.logprobs == pytest.approx(teacher_forced(setup, item, generated, options, [stop]),
                                                     abs=TOLERANCE)


def test_the_pipeline_fills_avg_logprob_on_llama_cpp(tiny_official, tmp_path, binhai):
    from funasr_nano import load_model
    from funasr_nano.export.gguf_folder import export_gguf

    export_gguf(tiny_official, tmp_path / "gguf", "f32")
    light = load_model(tmp_path / "gguf", engine="llama.cpp", n_threads=1)
    reference = load_model(tiny_official)
    try:
        got = light.transcribe(str(binhai), max_new_tokens=12)
        expected = reference.transcribe(str(binhai), max_new_tokens=12)
    finally:
        light.close()
    assert got.tokens == expected.tokens
    assert got.segments[0].avg_logprob is not None and got.segments[0].avg_logprob < 0
    assert got.segments[0].avg_logprob == pytest.approx(expected.segments[0].avg_logprob, abs=1e-4)


def test_log_softmax_is_stable_and_exact():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(1000).astype(np.float32) * 5
    expected = torch.log_softmax(torch.tensor(logits, dtype=torch.float64), -1).numpy()
    assert np.allclose(log_softmax(logits), expected, atol=1e-12)
    huge = logits + np.float32(1e4)  # exp overflows without the shift
    assert np.allclose(log_softmax(huge), expected, atol=1e-3) and np.isfinite(log_softmax(huge)).all()
    masked = logits.copy()
    masked[[3, 7]] = -np.inf
    values = log_softmax(masked)
    assert values[3] == -np.inf and np.exp(values).sum() == pytest.approx(1.0)
    token, logprob = pick_token(huge, 0, DecodingOptions(), (3,), None)
    assert token == int(np.argmax(logits)) and logprob == pytest.approx(expected[token], abs=1e-3)
