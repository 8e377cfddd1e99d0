"""The vLLM engine against the transformers engine. These tests run inside the vLLM environment
(.venv-vllm, made by setup-vllm.sh), started by tests/test_vllm.py; not collected by the main suite
(vLLM needs transformers < 5.20). Log-probabilities (Segment.avg_logprob) equal the transformers engine's,
greedy, and the teacher-forced log-softmax after the temperature, sampled."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from funasr_nano import DecodingOptions, load_model
from funasr_nano.pipeline import decoding
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

from .conftest import shared_file

OPTIONS = DecodingOptions(max_new_tokens=40, repetition_guard=False)
RECORDINGS = ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")
CASES = {"plain": {}, "hotwords": {"hotwords": ["滨海", "新区"]}, "language": {"language": "中文"}, "itn_off": {"itn": False}}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``(transformers model, vLLM model)`` of one tiny random checkpoint; vLLM's CPU attention takes head
    sizes from 32 up, so the LLM's head_dim is 32 (the default tiny model's 16 is refused by vLLM)."""
    folder = write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny")), "official", TinyConfig(llm_head_dim=32), seed=0)
    served = load_model(folder, engine="vllm", n_threads=1)
    yield load_model(folder), served
    served.close()


@pytest.fixture(scope="module")
def audio():
    return {name: str(shared_file(f"audio/{name}.wav")) for name in RECORDINGS}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tokens_equal_the_transformers_engine(pair, audio, case):
    reference, served = pair
    assert served.engine.name == "vllm"
    for path in audio.values():
        expected = reference.transcribe(path, options=OPTIONS, **CASES[case])
        got = served.transcribe(path, options=OPTIONS, **CASES[case])
        assert got.tokens == expected.tokens
        # the same log-probabilities as the transformers engine (vLLM's processed logprobs)
        assert [s.avg_logprob for s in got.segments] == pytest.approx([s.avg_logprob for s in expected.segments],
                                                                    abs=1e-3)
        assert all(s.avg_logprob is not None and s.avg_logprob < 0 for s in got.segments)


def test_batches_long_audio_guard_and_concurrency(pair, audio):
    reference, served = pair
    files = list(audio.values())
    expected = [r.tokens for r in reference.transcribe_batch(files, OPTIONS, batch_size=4)]
    assert [r.tokens for r in served.transcribe_batch(files, OPTIONS, batch_size=4)] == expected
    # the repetition guard (default options) stops and cuts the same loops
    assert served.transcribe(files[0]).tokens == reference.transcribe(files[0]).tokens
    # long audio cut by the VAD, segments batched
    import soundfile

    pieces = [soundfile.read(path, dtype="float32")[0] for path in files]
    long = np.concatenate([p for piece in pieces * 2 for p in (piece, np.zeros(16000, np.float32))])
    options = DecodingOptions(max_new_tokens=16, repetition_guard=False)
    a = reference.transcribe(long, options, vad=True, batch_size=3)
    b = served.transcribe(long, options, vad=True, batch_size=3)
    assert len(b.segments) > 1 and [s.tokens for s in b.segments] == [s.tokens for s in a.segments]
    # concurrent calls share vLLM's batch and still give each row its own tokens
    results = {}

    def work(index, path):
        results[index] = served.transcribe(path, options=OPTIONS).tokens

    threads = [threading.Thread(target=work, args=(i, p)) for i, p in enumerate(files * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(threads))] == [reference.transcribe(p, OPTIONS).tokens for p in files * 2]


def teacher_forced(reference, row, tokens, options):
    """Each token's log-probability under the torch model fed the prompt plus the tokens: log_softmax of
    the logits, stop tokens masked below min_new_tokens, over the temperature; then, when the row ended
    on a stop token, that of the stop token closest to the reported one (which one ended it is not
    reported)."""
    import torch

    stops = list(reference.family.stop_token_ids)
    engine = reference.engine
    prompt = engine.embed(row)
    table = engine.model.get_input_embeddings()
    with torch.inference_mode():
        inputs = torch.cat([prompt, table(torch.tensor(list(tokens), dtype=torch.long))])[None]
        logits = engine.model(inputs_embeds=inputs).logits[0, prompt.shape[0] - 1:].double()
    values = []
    for step in range(len(tokens.logprobs)):
        scores = logits[step].clone()
        if step < options.min_new_tokens:
            scores[stops] = -float("inf")
        logprobs = torch.log_softmax(scores / options.temperature, -1)
        if step < len(tokens):
            values.append(logprobs[tokens[step]].item())
        else:  # the stop token
            values.append(min((logprobs[s].item() for s in stops), key=lambda v: abs(v - tokens.logprobs[step])))
    return values


def test_on_token_and_cancel(pair, audio):
    _, served = pair
    family, engine = served.family, served.engine
    row = family.llm_input(family.transcription_prompt(None, (), True),
                           served.audio_embeddings(served_waveform(audio["zh_mid"])))
    full = engine.generate([row], OPTIONS)[0]
    reference = pair[0].engine.generate([row], OPTIONS)[0]
    assert len(full.logprobs) == len(reference.logprobs) in (len(full), len(full) + 1)
    assert full.logprobs == pytest.approx(reference.logprobs, abs=1e-3)
    sampling = DecodingOptions(max_new_tokens=12, temperature=1.5, min_new_tokens=4, repetition_guard=False)
    sampled = engine.generate([row], sampling)[0]
    assert sampled.logprobs == pytest.approx(teacher_forced(pair[0], row, sampled, sampling), abs=1e-3)
    seen = []

    def stop_after_five(index, tokens):
        seen.append(list(tokens))
        return len(tokens) >= 5

    assert engine.generate([row], OPTIONS, on_token=stop_after_five)[0] == full[:5]
    assert seen == [full[:n] for n in range(1, 6)]
    cancel = threading.Event()
    cancel.set()
    assert engine.generate([row], OPTIONS, cancel=cancel)[0] == []
    streamed = list(decoding.TokenStream(engine, row, OPTIONS))
    assert streamed[-1] == full and streamed[:-1] == [full[:n] for n in range(1, len(full) + 1)]
    with pytest.raises(ValueError, match="beam search"):
        decoding.generate(engine, [row], DecodingOptions(num_beams=2))


def served_waveform(path):
    from funasr_nano.audio.io import load_audio

    return load_audio(path)


def test_demo_model_transcribes_and_translates_on_vllm():
    reference, served = load_model(engine="transformers"), load_model(engine="vllm", n_threads=1)
    try:
        example = "examples/demo_zh.wav"
        assert served.transcribe(example).tokens == reference.transcribe(example).tokens
        assert served.translate(example, mode="unified").text == reference.translate(example, mode="unified").text
        assert served.run("text_translate", text="你好。").tokens == reference.run("text_translate", text="你好。").tokens
    finally:
        served.close()
