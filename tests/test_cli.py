import json
import subprocess
import sys

from .conftest import shared_file


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "funasr_nano.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_corrupt_file_among_good_ones(tiny_official, binhai, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    second = shared_file("audio/zh_mid.wav")
    proc = run_cli("transcribe", binhai, corrupt, second, "--model", tiny_official, "--max-new-tokens", "6",
                   "--format", "json")
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(binhai), str(second)]
    assert all(len(line["tokens"]) > 0 for line in lines)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "corrupt.wav" in errors[0]


def test_single_file_txt_and_bad_model(tiny_official, binhai, tmp_path):
    proc = run_cli("transcribe", binhai, "--model", tiny_official, "--max-new-tokens", "4", "--no-itn",
                   "--language", "zh", "--hotwords", "滨海,新区")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1
    proc = run_cli("transcribe", binhai, "--model", tmp_path)
    assert proc.returncode == 2 and "not a Fun-ASR-Nano checkpoint" in proc.stderr


def test_tiny_command_writes_a_loadable_checkpoint(tmp_path, binhai):
    target = tmp_path / "tiny"
    assert run_cli("tiny", target, "--layout", "hf").returncode == 0
    proc = run_cli("transcribe", binhai, "--model", target, "--max-new-tokens", "3", "--format", "json")
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["tokens"]) == 3
