"""The reference implementation of Qwen3-ASR, ``qwen-asr`` 0.0.6, in a virtual environment of its own.

qwen-asr pins ``transformers==4.57.6`` (we need >= 5.17) and pulls heavy extras (gradio, flask, vLLM
helpers) that its transformers inference path never uses, so it lives in a separate, cached venv holding
only what that path imports: torch, transformers 4.57.6, librosa, soundfile, nagisa (imported at module
level by its forced aligner) and qwen-asr itself (``--no-deps``). Tests and benchmarks call it as a
subprocess (:mod:`funasr_nano.testing.qwen_asr_runner`) and compare.

The venv is created on first use (about a minute with pip's cache, torch from the local wheel) at
``$FUNASR_NANO_QWEN_ASR_VENV``, default ``~/.cache/funasr-nano/qwen-asr-0.0.6``. ``python -m
funasr_nano.testing.qwen_asr_reference`` creates it ahead of time (``setup.sh`` does).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import tempfile
from typing import Any, Sequence

logger = logging.getLogger(__name__)

REFERENCE_VERSION = "0.0.6"
# What qwen-asr's transformers inference path imports (its metadata pins transformers 4.57.6 and nagisa
# 0.2.11); torch is pinned to the version of our own environment, whose CPU wheel is on disk.
REFERENCE_PACKAGES = ("torch==2.13.0", "transformers==4.57.6", "librosa", "soundfile", "nagisa==0.2.11")
_READY = ".funasr-nano-ready"


class ReferenceUnavailable(RuntimeError):
    """The reference venv could not be created (the message holds pip's error)."""


def venv_path() -> str:
    """Where the reference venv lives."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "funasr-nano", f"qwen-asr-{REFERENCE_VERSION}")
    return os.environ.get("FUNASR_NANO_QWEN_ASR_VENV", default)


def _python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def _run(command: Sequence[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ReferenceUnavailable(f"{what}: {error}") from error
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ReferenceUnavailable(f"{what} failed (exit {done.returncode}):\n{tail}")


def ensure_reference(timeout: float = 1200.0) -> str:
    """The reference venv's Python, creating the venv first if needed (under a file lock, so concurrent
    callers build it once).

    Raises:
        ReferenceUnavailable: venv creation or installation failed (e.g. no package index reachable).
    """
    venv = venv_path()
    python = _python(venv)
    if os.path.exists(os.path.join(venv, _READY)):
        return python
    os.makedirs(os.path.dirname(venv) or ".", exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(venv, _READY)):
            return python
        logger.info("creating the qwen-asr %s reference venv at %s", REFERENCE_VERSION, venv)
        if not os.path.exists(python):
            _run([sys.executable, "-m", "venv", "--clear", venv], "python -m venv", 300)
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run(pip + list(REFERENCE_PACKAGES), "pip install " + " ".join(REFERENCE_PACKAGES), timeout)
        _run(pip + ["--no-deps", f"qwen-asr=={REFERENCE_VERSION}"], f"pip install qwen-asr=={REFERENCE_VERSION}", 600)
        _run([python, "-c", "import qwen_asr, transformers; assert transformers.__version__ == '4.57.6'"],
             "import qwen_asr", 300)
        with open(os.path.join(venv, _READY), "w") as f:
            f.write(REFERENCE_VERSION + "\n")
    return python


def run_reference(model: str, cases: Sequence[dict[str, Any]], max_new_tokens: int,
                  timeout: float = 600.0) -> dict[str, Any]:
    """Run qwen-asr on ``cases`` (``{"audio": wav path, "context": str, "language": str | None}``) with the
    checkpoint folder ``model``; returns :mod:`.qwen_asr_runner`'s result (``torch.load``-ed).

    Raises:
        ReferenceUnavailable: the venv cannot be created. RuntimeError: the reference failed (its
            output is in the message).
    """
    return _run_runner("qwen_asr_runner.py", {"model": os.fspath(model), "max_new_tokens": max_new_tokens,
                                              "cases": list(cases)}, timeout)


def run_aligner_reference(model: str, cases: Sequence[dict[str, Any]], timeout: float = 600.0) -> dict[str, Any]:
    """Run qwen-asr's ``Qwen3ForcedAligner`` on ``cases`` (``{"audio": wav path, "text": str, "language":
    str}``) with the checkpoint folder ``model``; returns :mod:`.qwen_asr_aligner_runner`'s result.

    Raises:
        ReferenceUnavailable: the venv cannot be created. RuntimeError: the reference failed.
    """
    return _run_runner("qwen_asr_aligner_runner.py", {"model": os.fspath(model), "cases": list(cases)}, timeout)


def _run_runner(runner_name: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    import torch

    python = ensure_reference()
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), runner_name)
    with tempfile.TemporaryDirectory() as work:
        request_file, result = os.path.join(work, "request.json"), os.path.join(work, "result.pt")
        with open(request_file, "w", encoding="utf-8") as f:
            json.dump(request, f)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        env.pop("PYTHONPATH", None)
        done = subprocess.run([python, runner, request_file, result], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=work)
        if done.returncode != 0:
            raise RuntimeError(f"qwen-asr failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
        return torch.load(result, weights_only=False)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure_reference())
    except ReferenceUnavailable as error:
        print(f"qwen-asr reference venv not created: {error}", file=sys.stderr)
        sys.exit(1)
