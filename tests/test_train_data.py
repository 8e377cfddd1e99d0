"""Training on the libraries' parts: the learning-rate schedule (transformers), feature prefetch in
DataLoader workers, and training audio that does not decode (skipped and counted, or one clear error;
never exit 2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from funasr_nano.cli.main import main
from funasr_nano.errors import TrainingDataError
from funasr_nano.testing.tiny import write_tiny_checkpoint
from funasr_nano.training.trainer import TrainConfig, Trainer, lr_schedule

from .training_data import make_corpus, one_thread  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("base")), "official", seed=3)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """8 good utterances, one file of random bytes (found when the examples are read) and one whose
    manifest line gives its duration, so it is only opened inside a batch: the failure mid-run."""
    folder = tmp_path_factory.mktemp("damaged")
    manifest = make_corpus(folder, 8)
    noise = np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes()
    (folder / "garbage.wav").write_bytes(noise)
    (folder / "late.wav").write_bytes(b"RIFF" + noise)
    with open(manifest, "a", encoding="utf-8") as f:
        f.write(json.dumps({"audio": "garbage.wav", "target": "坏", "task": "transcribe"}) + "\n")
        f.write(json.dumps({"audio": "late.wav", "target": "坏", "task": "transcribe", "duration": 1.0}) + "\n")
    return manifest


def _config(base, manifest, output_dir, **overrides):
    values = dict(model=base, train_manifests=(str(manifest),), output_dir=str(output_dir), batch_size=4,
                  max_steps=3, warmup_steps=1, log_every=0, learning_rate=1e-3, min_lr_ratio=0.1)
    values.update(overrides)
    return TrainConfig(**values)


def expected_lr(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """The documented schedule (funasr_nano.training.trainer.lr_schedule) at 0-based optimizer step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup + 1) / (total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@pytest.mark.parametrize("warmup, total, min_ratio", [(3, 10, 0.1), (0, 5, 0.0), (1, 4, 0.5)])
def test_lr_schedule_per_step(warmup, total, min_ratio):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=2e-3)
    scheduler = lr_schedule(optimizer, warmup, total, min_ratio)
    used = []
    for _ in range(total):
        used.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert used == pytest.approx([expected_lr(s, 2e-3, warmup, total, min_ratio) for s in range(total)], rel=1e-9)
    assert used[-1] == pytest.approx(2e-3 * min_ratio)  # the last step runs at the floor


def test_unreadable_clips_are_skipped_and_counted(base, damaged, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="funasr_nano.training.trainer"):
        trainer = Trainer(_config(base, damaged, tmp_path / "run"))  # 2 DataLoader workers (the default)
        result = trainer.train(export=False)
    assert len(result.steps) == 3
    # the step logs used the schedule
    assert [s.learning_rate for s in result.steps] == pytest.approx([expected_lr(s, 1e-3, 1, 3, 0.1) for s in range(3)])
    # 9 readable-looking examples in batches of 4: three steps see the whole epoch, late.wav included
    assert len(result.skipped) == 2
    garbage, late = result.skipped
    assert f"{damaged}:9:" in garbage and "garbage.wav" in garbage
    assert f"{damaged}:10:" in late and "late.wav" in late
    assert caplog.text.count("skipping an unreadable training example") == 2
    assert "2 training example(s) skipped" in caplog.text
    assert len(trainer.examples) == 9  # garbage.wav left out when the examples were read


def test_unreadable_clip_is_one_clear_error_when_asked(base, damaged, tmp_path):
    with pytest.raises(TrainingDataError, match=r"garbage\.wav"):
        Trainer(_config(base, damaged, tmp_path / "a", on_bad_audio="error"))
    late_only = tmp_path / "late.jsonl"
    late_only.write_text("".join(line for line in damaged.read_text(encoding="utf-8").splitlines(keepends=True)
                                 if "garbage.wav" not in line).replace('"late.wav"', f'"{damaged.parent}/late.wav"'),
                         encoding="utf-8")
    trainer = Trainer(_config(base, late_only, tmp_path / "b", on_bad_audio="error"))
    with pytest.raises(TrainingDataError, match=rf"{late_only}:9: .*late\.wav") as error:
        trainer.train(export=False)
    assert "DataLoader worker" not in str(error.value)  # the clip's message, not a worker traceback


def test_cli_exit_status_for_unreadable_clips(base, damaged, tmp_path, capsys):
    config = {"model": base, "train_manifests": [str(damaged)], "output_dir": str(tmp_path / "out"), "max_steps": 1,
              "batch_size": 4, "warmup_steps": 1, "log_every": 0, "num_workers": 0}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", "--config", str(path)]) == 0
    assert "skipped 2 training example(s)" in capsys.readouterr().out  # late.wav is in the first batch
    path.write_text(yaml.safe_dump({**config, "on_bad_audio": "error"}), encoding="utf-8")
    assert main(["train", "--config", str(path)]) == 1  # an input failed; 2 is for bad arguments
    assert "garbage.wav" in capsys.readouterr().err


def test_workers_compute_the_features_and_change_nothing(base, damaged, tmp_path):
    losses, cached = {}, {}
    for workers in (0, 2):
        trainer = Trainer(_config(base, damaged, tmp_path / str(workers), num_workers=workers, max_steps=2))
        losses[workers] = [trainer.train_step().loss for _ in range(2)]
        cached[workers] = len(trainer.collator.cache)  # the training process's own feature cache
        trainer.close()
    assert losses[0] == losses[2]
    assert cached[0] > 0 and cached[2] == 0  # with workers, fbank ran in the worker processes
