"""``funasr-nano serve``: starts on a free port (``--port 0``, the address logged), serves, stops on
SIGTERM; bad flags and a port in use are one ``error:`` line and exit status 2, before loading a model."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx2")

from .conftest import ROOT  # noqa: E402


def serve(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "funasr_nano.cli", "serve", *args], stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def test_serve_on_a_free_port_then_stop():
    process = serve("--port", "0", "--max-batch-size", "4", "--model-name", "demo")
    try:
        assert "embedded demo model" in process.stderr.readline()  # no --model: the notice comes first
        line = process.stderr.readline()
        match = re.search(r"serving demo \(llama\.cpp engine\) on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        status = httpx.get(match.group(1) + "/health", timeout=30).json()
        assert status["model"] == "demo" and status["limits"]["max_batch_size"] == 4
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal (as a process killed by it exits)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        process.stderr.close()


@pytest.mark.parametrize("flags, message", [
    (["--max-queue", "0"], "--max-queue: max_queue must be an integer >= 1"),
    (["--translation-mode", "both"], "--translation-mode: translation_mode must be one of"),
    (["--translator", "x"], "translator is only used with translation_mode cascade"),
    (["--batch-window", "9"], "batch_window must be at most 5 s"),
])
def test_bad_flags_exit_2(flags, message, capsys):
    from funasr_nano.cli.main import main

    assert main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_port_in_use_exits_2(capsys):
    from funasr_nano.cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: cannot listen there" in err, err
