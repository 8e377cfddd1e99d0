"""Parity with the reference package qwen-asr 0.0.6 (its own venv, transformers 4.57.6, called as a
subprocess) on the tiny official-layout Qwen3-ASR checkpoint and real recordings: the same prompt ids,
LLM input embeddings within 1e-4, multimodal-RoPE positions equal on the three axes, identical generated
ids (greedy, fp32) and the same language and text; with and without context text and with a forced
language; the transformers-layout copy and batched decoding give the same tokens."""

import contextlib

import numpy as np
import pytest
import soundfile
import torch

from funasr_nano import load_model
from funasr_nano.audio.io import load_audio
from funasr_nano.load import from_checkpoint
from funasr_nano.models.qwen3_asr.checkpoint import load_checkpoint
from funasr_nano.testing.qwen_asr_reference import ReferenceUnavailable, ensure_reference, run_reference

from .conftest import shared_file

MAX_NEW_TOKENS = 24
# (recording, hotwords -> the reference's context text, our language hint -> the reference's language)
CASES = {
    "plain": ("audio/zh_binhai.wav", [], None, "", None),
    "context": ("audio/zh_welcome.wav", ["欢迎", "达摩院"], None, "欢迎 达摩院", None),
    "language": ("audio/zh_mid.wav", [], "en", "", "English"),
    "context_and_language": ("audio/zh_long.wav", ["滨海新区"], "Chinese", "滨海新区", "Chinese"),
}


@pytest.fixture(scope="module")
def reference_available():
    try:
        ensure_reference()
    except ReferenceUnavailable as error:
        pytest.skip(f"the qwen-asr 0.0.6 reference venv cannot be created here: {error}")


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """13.8 s of real speech (two recordings back to back): more than one 8 s encoder attention window."""
    parts = [soundfile.read(shared_file(f"audio/{name}.wav"), dtype="float32")[0] for name in ("zh_long", "zh_mid")]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    soundfile.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def reference(reference_available, tiny_qwen3_asr, long_recording):
    cases = [{"audio": str(shared_file(audio)), "context": context, "language": language}
             for audio, _, _, context, language in CASES.values()]
    cases.append({"audio": str(long_recording), "context": "", "language": None})
    return run_reference(str(tiny_qwen3_asr), cases, MAX_NEW_TOKENS)


def ours(model, audio, hotwords, language):
    return model.transcribe(audio, max_new_tokens=MAX_NEW_TOKENS, repetition_guard=False, hotwords=hotwords,
                            language=language)


def our_prompt(model, audio, hotwords, language):
    family = model.family
    instruction = family.transcription_prompt(language, hotwords, True)
    llm_input = family.llm_input(instruction, family.audio_embeddings(load_audio(audio)))
    prefix, audio_part, suffix = llm_input.parts
    ids = list(prefix) + [model.family.model.config.audio_token_id] * audio_part.shape[0] + list(suffix)
    return ids, model.engine.embed(llm_input)


@contextlib.contextmanager
def captured_positions(model):
    """The ``position_ids`` each call of the LLM's text model receives during generation."""
    calls = []

    def hook(module, args, kwargs):
        calls.append(kwargs["position_ids"].detach().clone())

    handle = model.family.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def test_reference_holds_every_tensor(reference):
    assert reference["weights_checked"] > 0  # the runner compared each file tensor with the reference model


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_tokens_and_embeddings_match_reference(reference, tiny_qwen3_asr, case):
    audio, hotwords, hint, _, _ = CASES[case]
    expected = reference["cases"][list(CASES).index(case)]
    model = load_model(tiny_qwen3_asr)
    ids, embeds = our_prompt(model, shared_file(audio), hotwords, hint)
    assert ids == expected["prompt_ids"]
    assert embeds.shape == expected["inputs_embeds"].shape
    assert torch.allclose(embeds, expected["inputs_embeds"], atol=1e-4, rtol=0)
    # the reference's multimodal positions: one 1-D count, the same on the t/h/w axes (so plain RoPE)
    positions = expected["position_ids"]
    assert torch.equal(positions[0], positions[1]) and torch.equal(positions[1], positions[2])
    assert positions[0].tolist() == list(range(len(ids)))
    with captured_positions(model) as calls:
        result = ours(model, shared_file(audio), hotwords, hint)
    assert list(result.tokens) == expected["tokens"] and len(result.tokens) > 0
    assert (result.language or "", result.text) == (expected["language"], expected["text"])
    # our engine feeds the text model the reference's positions: the prompt's, then one more per token
    assert calls[0].tolist() == [positions[0].long().tolist()]
    assert [int(c[0, -1]) for c in calls[1:]] == list(range(len(ids), len(ids) + len(calls) - 1))


def test_transformers_layout_and_batches_give_the_same_tokens(reference, tiny_qwen3_asr_hf):
    model = load_model(tiny_qwen3_asr_hf)
    audios = [shared_file(audio) for audio, *_ in CASES.values()]
    for (audio, hotwords, hint, _, _), expected in zip(CASES.values(), reference["cases"]):
        assert list(ours(model, shared_file(audio), hotwords, hint).tokens) == expected["tokens"]
    # rows of different lengths decoded together (left padding): same tokens as the reference one by one
    plain = reference["cases"][0]["tokens"]
    batch = list(model.transcribe_batch([audios[0], audios[0]], batch_size=2, max_new_tokens=MAX_NEW_TOKENS,
                                        repetition_guard=False))
    assert [list(r.tokens) for r in batch] == [plain, plain]
    with captured_positions(model) as calls:
        mixed = list(model.transcribe_batch(audios[:3], batch_size=3, max_new_tokens=MAX_NEW_TOKENS,
                                            repetition_guard=False))
    # each left-padded row counts its positions from its own first real token, as the reference does
    lengths = [len(our_prompt(model, audio, [], None)[0]) for audio in audios[:3]]
    assert len(set(lengths)) == 3
    for row, length in enumerate(lengths):
        assert calls[0][row, -length:].tolist() == list(range(length))
    singles = [list(ours(model, a, [], None).tokens) for a in audios[:3]]
    assert [list(r.tokens) for r in mixed] == singles


def test_audio_longer_than_an_attention_window(reference, tiny_qwen3_asr, long_recording):
    """The reference's transformers backend on CPU attends across the whole clip (its windows only reach
    flash-attention): encoder_attention="full" reproduces it; the default windowed encoder differs."""
    expected = reference["cases"][-1]
    full = from_checkpoint(load_checkpoint(tiny_qwen3_asr), encoder_attention="full")
    ids, embeds = our_prompt(full, long_recording, [], None)
    assert ids == expected["prompt_ids"]
    assert torch.allclose(embeds, expected["inputs_embeds"], atol=1e-4, rtol=0)
    assert list(ours(full, long_recording, [], None).tokens) == expected["tokens"]
    _, windowed = our_prompt(load_model(tiny_qwen3_asr), long_recording, [], None)
    assert not torch.allclose(windowed, expected["inputs_embeds"], atol=1e-4, rtol=0)
