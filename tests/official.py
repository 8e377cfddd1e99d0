"""Run the official FunASR implementation (funasr 1.4.16, test-only dependency) on a checkpoint and
capture what enters and leaves its LLM."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import soundfile
import torch


@dataclasses.dataclass
class OfficialRun:
    text: str
    tokens: list[int]  # generated ids, end-of-turn excluded
    inputs_embeds: torch.Tensor  # (1, length, hidden) - what enters the LLM
    prompt_ids: list[int]  # source_ids (audio positions hold 0)
    fbank_beg: int
    num_audio: int


@functools.lru_cache(maxsize=4)
def official_model(path: str):
    pytest.importorskip("funasr", reason="the official funasr package is a test-only dependency")
    from funasr import AutoModel

    return AutoModel(model=path, device="cpu", disable_update=True, disable_log=True)


def official_frontend():
    pytest.importorskip("funasr")
    from funasr.frontends.wav_frontend import WavFrontend

    return WavFrontend(fs=16000, window="hamming", n_mels=80, frame_length=25, frame_shift=10, lfr_m=7, lfr_n=6,
                       dither=0.0)


def run_official(path, audio_path, *, hotwords=(), language=None, itn=True, max_new_tokens=40) -> OfficialRun:
    auto = official_model(str(path))
    model = auto.model
    waveform, rate = soundfile.read(audio_path, dtype="float32")
    assert rate == 16000
    captured = {}
    generate, prepare = model.llm.generate, model.inference_prepare

    def capture_generate(*args, **kwargs):
        captured["inputs_embeds"] = kwargs["inputs_embeds"].detach().clone()
        out = generate(*args, **kwargs)
        captured["ids"] = out.clone()
        return out

    def capture_prepare(*args, **kwargs):
        out = prepare(*args, **kwargs)
        batch = out[2]
        captured["source_ids"] = out[3][0].tolist()
        captured["fbank_beg"] = int(batch["fbank_beg"][0, 0])
        captured["fake_token_len"] = int(batch["fake_token_len"][0, 0])
        return out

    model.llm.generate, model.inference_prepare = capture_generate, capture_prepare
    try:
        results, _ = model.inference(
            [torch.from_numpy(np.ascontiguousarray(waveform))], key=["utt"], tokenizer=auto.kwargs["tokenizer"],
            frontend=auto.kwargs["frontend"], device="cpu", max_length=max_new_tokens,
            hotwords=list(hotwords), language=language, itn=itn,
        )
    finally:
        del model.llm.generate, model.inference_prepare
    eos = model.llm.config.eos_token_id
    ids = captured["ids"][0].tolist()
    tokens = ids[: ids.index(eos)] if eos in ids else ids
    return OfficialRun(results[0]["text"], tokens, captured["inputs_embeds"], captured["source_ids"],
                       captured["fbank_beg"], captured["fake_token_len"])
