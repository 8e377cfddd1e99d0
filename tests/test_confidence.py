"""Confidences and silence: token log-probabilities from the transformers engine (Segment.avg_logprob),
no_speech_prob, and the silence gate on 30 s of silence and of noise (no text) while speech is still
transcribed."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from funasr_nano import load_model
from funasr_nano.engines.base import GeneratedTokens
from funasr_nano.options import DecodingOptions
from funasr_nano.pipeline.decoding import cut_repetition
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint


def _silence(seconds=30.0):
    return np.zeros(int(seconds * 16000), np.float32)


def _noise(seconds=30.0, seed=0):
    """White noise at about -20 dBFS."""
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def test_avg_logprob_is_the_llm_log_probability_of_the_tokens(model, binhai):
    waveform, _ = soundfile.read(binhai, dtype="float32")
    segment = model.transcribe(waveform, max_new_tokens=12).segments[0]
    family, engine = model.family, model.engine
    instruction = family.transcription_prompt(None, (), True)
    prompt = engine.embed(family.llm_input(instruction, family.audio_embeddings(waveform)))
    stop = family.stop_token_ids[0]
    generated = list(segment.tokens) + ([stop] if len(segment.tokens) < 12 else [])
    table = engine.model.get_input_embeddings()
    inputs = torch.cat([prompt, table(torch.tensor(generated))])[None]
    with torch.inference_mode():
        logits = engine.model(inputs_embeds=inputs).logits[0].float()
    logprobs = torch.log_softmax(logits[prompt.shape[0] - 1: -1], dim=-1)
    expected = logprobs[torch.arange(len(generated)), torch.tensor(generated)].mean().item()
    assert segment.avg_logprob == pytest.approx(expected, abs=1e-4)
    assert segment.avg_logprob < 0


def test_the_stop_tokens_log_probability_is_counted(model, binhai):
    """A row that ends on a stop token reports it too (whisper's avg_logprob counts the end of text)."""
    from funasr_nano.engines.transformers import TransformersEngine

    waveform, _ = soundfile.read(binhai, dtype="float32")
    family = model.family
    llm_input = family.llm_input(family.transcription_prompt(None, (), True), family.audio_embeddings(waveform))
    free = model.engine.generate([llm_input], DecodingOptions(max_new_tokens=12))[0]
    stop = free[5]
    engine = TransformersEngine(model.engine.model, [stop])  # the 6th token (first seen at i) now ends the row
    ended = engine.generate([llm_input], DecodingOptions(max_new_tokens=12))[0]
    index = list(free).index(stop)
    assert list(ended) == list(free)[:index] and len(ended.logprobs) == index + 1
    assert ended.logprobs == pytest.approx(free.logprobs[: index + 1], abs=1e-5)
    assert ended.avg_logprob == pytest.approx(sum(free.logprobs[: index + 1]) / (index + 1), abs=1e-5)


def test_the_repetition_guard_cuts_the_log_probabilities_with_the_tokens():
    tokens = GeneratedTokens([5] + [1, 2] * 20, [-0.5] + [-0.1] * 40)
    cut = cut_repetition(tokens, DecodingOptions(guard_min_tokens=8))
    assert list(cut) == [5, 1, 2] and cut.logprobs == (-0.5, -0.1, -0.1)


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_silence_and_noise_give_no_text_and_speech_still_does(model, binhai, kind):
    audio = _silence() if kind == "silence" else _noise()
    assert model.transcribe(audio, vad=True).text == ""  # the VAD finds no speech
    gated = model.transcribe(audio, silence_gate=True, max_new_tokens=8)  # decoded whole, gated by silero
    assert gated.text == "" and gated.segments == ()
    ungated = model.transcribe(audio, max_new_tokens=8)  # FunASR's behaviour: the LLM writes into it
    assert ungated.text != ""
    speech = model.transcribe(binhai, silence_gate=True, max_new_tokens=8)
    assert speech.text != "" and speech.segments[0].no_speech_prob < 0.5


@pytest.fixture(scope="module")
def deaf_ctc(tmp_path_factory):
    """A CTC checkpoint whose head always says blank (its blank bias raised): the CTC gate's case."""
    path = write_tiny_checkpoint(str(tmp_path_factory.mktemp("deaf")), "official", TinyConfig(ctc=True), seed=2)
    checkpoint = torch.load(f"{path}/model.pt", weights_only=True)
    bias = checkpoint["state_dict"]["ctc.ctc_lo.bias"]
    bias[-1] = 100.0
    torch.save(checkpoint, f"{path}/model.pt")
    return load_model(path)


def test_the_ctc_gate_drops_vad_segments_the_head_hears_nothing_in(deaf_ctc, binhai):
    assert deaf_ctc.transcribe(binhai, vad=True, max_new_tokens=8).segments == ()  # on by default for VAD
    kept = deaf_ctc.transcribe(binhai, vad=True, max_new_tokens=8, silence_gate=False, word_timestamps=True)
    assert kept.text != "" and kept.segments[0].no_speech_prob > 0.99  # the CTC head ran for the words
    whole = deaf_ctc.transcribe(binhai, max_new_tokens=8)  # decoded whole: FunASR's behaviour, no gate
    assert whole.text != "" and whole.segments[0].no_speech_prob is None
