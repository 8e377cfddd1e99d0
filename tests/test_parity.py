"""Parity with the official FunASR implementation (funasr 1.4.16) on the same checkpoint and audio:
identical generated token ids (greedy, fp32) and LLM input embeddings within 1e-4."""

import pytest
import torch

from funasr_nano import DecodingOptions, load_model

from .official import run_official

MAX_NEW_TOKENS = 40
CASES = {
    "plain": {},
    "hotwords": {"hotwords": ["滨海", "新区"]},
    "language": {"language": "中文"},
    "itn_off": {"itn": False},
    "all": {"hotwords": ["滨海"], "language": "英文", "itn": False},
}


def ours(model, audio, case):
    options = DecodingOptions(max_new_tokens=MAX_NEW_TOKENS, repetition_guard=False)
    return model.transcribe(audio, options=options, **case)


def our_inputs_embeds(model, audio, case):
    from funasr_nano.audio.io import load_audio
    from funasr_nano.models.fun_asr_nano.prompt import build_prompt_ids, language_name, transcription_instruction
    from funasr_nano.engines.base import LLMInput

    instruction = transcription_instruction(case.get("hotwords", ()), language_name(case.get("language")),
                                            case.get("itn", True))
    audio_embeds = model.audio_embeddings(load_audio(audio))
    prompt = build_prompt_ids(model.tokenizer, instruction, audio_embeds.shape[0])
    parts = (prompt.prefix_ids, audio_embeds, prompt.suffix_ids)
    return prompt, model.engine.embed(LLMInput(parts))[None]


@pytest.fixture(scope="module", params=["low_frame_rate", "all_frames"])
def checkpoint(request, tiny_official, tiny_official_all_frames):
    return tiny_official if request.param == "low_frame_rate" else tiny_official_all_frames


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_tokens_and_embeddings_match_official(checkpoint, binhai, case):
    official = run_official(checkpoint, binhai, max_new_tokens=MAX_NEW_TOKENS, **case)
    model = load_model(checkpoint)
    prompt, embeds = our_inputs_embeds(model, binhai, case)
    # the prompt: same ids around the audio slot, audio slot at the same place and of the same size
    assert official.fbank_beg == len(prompt.prefix_ids)
    assert official.num_audio == prompt.num_audio == (13 if model.family.use_low_frame_rate else 100)
    slot = slice(len(prompt.prefix_ids), len(prompt.prefix_ids) + prompt.num_audio)
    assert official.prompt_ids[: slot.start] == prompt.prefix_ids
    assert official.prompt_ids[slot.stop :] == prompt.suffix_ids
    # what enters the LLM
    assert embeds.shape == official.inputs_embeds.shape
    assert torch.max(torch.abs(embeds - official.inputs_embeds)).item() <= 1e-4
    # what leaves it
    result = ours(model, binhai, case)
    assert len(official.tokens) > 5, "the random model should generate several tokens"
    assert list(result.tokens) == official.tokens
    assert result.text == official.text


def test_hf_layout_gives_the_same_tokens(tiny_official, tiny_hf, binhai):
    for case in CASES.values():
        a = ours(load_model(tiny_official), binhai, case)
        b = ours(load_model(tiny_hf), binhai, case)
        assert a.tokens == b.tokens and a.text == b.text
