"""Shared fixtures: tiny random checkpoints in both layouts, the real recordings in tests/data/audio."""

from __future__ import annotations

import pathlib

import pytest

from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

pytest_plugins = ["tests.skip_guard"]  # an unexpected skip fails the run

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"  # recordings and data the tests read, shipped with their sources (README.md there)


def shared_file(relative: str) -> pathlib.Path:
    """A test data file shipped in ``tests/data`` (``"audio/zh_mid.wav"``): the real recordings of the
    shared data folder, copied into the repository so that a plain clone runs every test.

    Raises:
        FileNotFoundError: the file is not in ``tests/data`` (a test asking for data nobody shipped).
    """
    path = DATA / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: tests read their data from tests/data (see its README.md)")
    return path


@pytest.fixture(scope="session")
def binhai() -> pathlib.Path:
    """Real Mandarin speech, 16 kHz mono, 6.0 s."""
    return shared_file("audio/zh_binhai.wav")


@pytest.fixture(scope="session")
def tiny_official(tmp_path_factory) -> pathlib.Path:
    """Official-layout random checkpoint, use_low_frame_rate: true (as Fun-ASR-Nano-2512)."""
    return pathlib.Path(write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-official")), "official", seed=0))


@pytest.fixture(scope="session")
def tiny_official_all_frames(tmp_path_factory) -> pathlib.Path:
    """Official-layout random checkpoint with use_low_frame_rate: false."""
    config = TinyConfig(use_low_frame_rate=False)
    return pathlib.Path(write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-all")), "official", config, seed=1))


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> pathlib.Path:
    """The same weights as ``tiny_official`` (same seed) in the transformers layout."""
    return pathlib.Path(write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-hf")), "hf", seed=0))


@pytest.fixture(scope="session")
def demo():
    """The embedded demo model (trained here: transcribe, translate, text_translate), loaded once; torch on
    one thread (the tests that use it measure nothing, and two threads on a busy core are slower)."""
    import torch

    from funasr_nano import load_model

    torch.set_num_threads(1)
    return load_model(engine="transformers")  # the torch reference (load_model() runs the light runtime)


@pytest.fixture(scope="session")
def model(tiny_official):
    from funasr_nano import load_model

    return load_model(tiny_official)


def write_translating_checkpoint(path: pathlib.Path) -> pathlib.Path:
    """A tiny random official checkpoint whose config says it was trained for all three tasks."""
    import yaml

    write_tiny_checkpoint(str(path), "official", seed=3)
    config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    config["tasks"] = ["transcribe", "translate", "text_translate"]
    (path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_qwen3_asr(tmp_path_factory) -> pathlib.Path:
    """A random Qwen3-ASR checkpoint in the official layout (as Qwen/Qwen3-ASR-0.6B ships)."""
    from funasr_nano.testing.tiny_qwen3_asr import write_tiny_checkpoint as write_qwen3_asr

    return pathlib.Path(write_qwen3_asr(str(tmp_path_factory.mktemp("tiny-qwen3-asr")), "official", seed=0))


@pytest.fixture(scope="session")
def tiny_qwen3_asr_hf(tmp_path_factory) -> pathlib.Path:
    """The same weights as ``tiny_qwen3_asr`` in the transformers (-hf) layout."""
    from funasr_nano.testing.tiny_qwen3_asr import write_tiny_checkpoint as write_qwen3_asr

    return pathlib.Path(write_qwen3_asr(str(tmp_path_factory.mktemp("tiny-qwen3-asr-hf")), "hf", seed=0))
