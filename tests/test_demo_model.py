"""The embedded demo model (recipes/demo): it loads by default, still gives the outputs recorded when it
was shipped, and its CER on the shipped held-out subset stays within the recorded figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from funasr_nano import load_model
from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
from funasr_nano.training.data import read_manifest
from funasr_nano.errors import CheckpointError
from funasr_nano.load import DEFAULT_MODEL, from_checkpoint

from .conftest import ROOT

SUBSET = ROOT / "tests" / "data" / "demo_heldout"
EXPECTED = json.loads((SUBSET / "expected.json").read_text(encoding="utf-8"))
EXAMPLE = ROOT / EXPECTED["example"]["audio"]


def character_error_rate(references, hypotheses) -> float:
    import jiwer

    return float(jiwer.cer(["".join(r.split()) for r in references], ["".join(h.split()) for h in hypotheses]))


def test_default_model_is_the_shipped_demo(demo):
    assert demo.family.path == DEFAULT_MODEL
    assert demo.tasks == ("transcribe", "translate", "text_translate")
    assert demo.family.use_low_frame_rate is False
    assert demo.family.model.lm_head.weight.dtype == torch.float32  # fp16 on disk, converted on load
    size = sum(os.path.getsize(os.path.join(DEFAULT_MODEL, n)) for n in os.listdir(DEFAULT_MODEL))
    assert size <= 30e6


def test_example_output_is_the_recorded_one(demo):
    result = demo.transcribe(EXAMPLE)
    assert list(result.tokens) == EXPECTED["example"]["tokens"]
    assert result.text == EXPECTED["example"]["transcript"]
    assert demo.run("translate", audio=EXAMPLE).text == EXPECTED["example"]["speech_translation"]


def test_heldout_subset_cer_within_recorded_figure(demo):
    examples = [e for e in read_manifest(SUBSET / "manifest.jsonl") if e.task == "transcribe"]
    assert len(examples) == EXPECTED["subset"]["sentences"] >= 30
    hypotheses = [demo.transcribe(e.audio).text for e in examples]
    cer = character_error_rate([e.target for e in examples], hypotheses)
    assert cer <= EXPECTED["subset"]["cer_bound"], (cer, hypotheses)


def test_perturbed_weights_change_the_example_output():
    # the regression guard can fail: a model whose encoder is damaged no longer gives the recorded output
    checkpoint = load_checkpoint(DEFAULT_MODEL)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for parameter in checkpoint.model.model.audio_tower.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    assert list(from_checkpoint(checkpoint).transcribe(EXAMPLE).tokens) != EXPECTED["example"]["tokens"]


def test_cli_transcribes_with_the_default_model():
    proc = subprocess.run([sys.executable, "-m", "funasr_nano.cli", "transcribe", str(EXAMPLE)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == EXPECTED["example"]["transcript"]


def test_missing_default_model_is_a_checkpoint_error(monkeypatch, tmp_path):
    import funasr_nano.load

    monkeypatch.setattr(funasr_nano.load, "DEFAULT_MODEL", str(tmp_path / "nowhere"))
    monkeypatch.setattr(funasr_nano.load, "DEFAULT_LIGHT_MODEL", str(tmp_path / "nowhere-either"))
    with pytest.raises(CheckpointError, match="embedded demo model is missing"):
        load_model()
