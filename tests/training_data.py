"""Small synthetic speech corpora for the training tests: Mandarin sentences voiced by espeak-ng
(voice cmn, varied speed/pitch/voice), or, where espeak-ng is not installed, a distinct tone pattern
per sentence so the tests still exercise training on real audio files."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
import soundfile
import torch

# (Chinese, English) pairs from Tatoeba (CC-BY 2.0 FR), copied so the tests need no shared data.
SENTENCES = (
    ("我答应了。", "I agreed."), ("我会做的。", "I'll do it."), ("我买了。", "I bought it."),
    ("我来啦。", "I'm coming."), ("我正在吃东西。", "I'm eating."), ("我更快。", "I'm faster."),
    ("我单身。", "I'm single."), ("我困了。", "I'm sleepy."), ("我三十岁。", "I'm thirty."),
    ("别理汤姆。", "Ignore Tom."), ("他长得高吗？", "Is he tall?"), ("那是爱吗？", "Is it love?"),
    ("快点。", "Hurry up."), ("我忘了。", "I forgot."), ("我放弃。", "I give up."),
    ("你好。", "Hello."), ("谢谢你。", "Thank you."), ("我很好。", "I'm fine."),
    ("明天见。", "See you tomorrow."), ("下雨了。", "It's raining."),
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~10x faster on one torch thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tones(index: int, path: pathlib.Path) -> float:
    rng = np.random.default_rng(index)
    rate, pieces = 16000, []
    for _ in range(4 + index % 3):
        t = np.arange(int(rate * 0.25)) / rate
        pieces.append(0.3 * np.sin(2 * np.pi * rng.uniform(150, 1500) * t))
    samples = np.concatenate(pieces).astype(np.float32)
    soundfile.write(str(path), samples, rate, subtype="PCM_16")
    return samples.size / rate


def make_corpus(folder: pathlib.Path, count: int = 20, translations: bool = False) -> pathlib.Path:
    """Write ``count`` utterances and ``folder/manifest.jsonl`` (transcribe lines, plus translate lines
    with ``translations``); returns the manifest path."""
    pairs = SENTENCES[:count]
    if shutil.which("espeak-ng"):
        from funasr_nano.training.synth import Sentence, SynthConfig, synthesize

        sentences = [Sentence(zh, en if translations else None) for zh, en in pairs]
        return pathlib.Path(synthesize(sentences, str(folder), SynthConfig(seed=1), jobs=2).manifest)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.jsonl"
    with open(manifest, "w", encoding="utf-8") as f:
        for i, (zh, en) in enumerate(pairs):
            audio = f"wav/{i:06d}.wav"
            duration = _tones(i, folder / audio)
            f.write(json.dumps({"audio": audio, "target": zh, "task": "transcribe", "duration": duration},
                               ensure_ascii=False) + "\n")
            if translations:
                f.write(json.dumps({"audio": audio, "target": en, "task": "translate", "source_text": zh},
                                   ensure_ascii=False) + "\n")
    return manifest
