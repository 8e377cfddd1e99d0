"""Corpus transcription (funasr_nano.corpus): inputs, the resumable JSONL journal, and the job on a local Ray
instance (2 CPUs, one per module) with real recordings, two corrupt files and a job killed midway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from funasr_nano.corpus import Journal, list_inputs, transcribe_corpus
from funasr_nano.corpus.journal import read_rows
from funasr_nano.errors import ManifestError
from funasr_nano.options import DecodingOptions, TranscribeOptions

from .conftest import ROOT, shared_file

RECORDINGS = ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")
CORRUPT = ("corrupt/random.wav", "corrupt/truncated.flac")
# short outputs keep the demo model fast on real speech (it loops on it); rows must still equal transcribe
OPTIONS = TranscribeOptions(batch_size=2, decoding=DecodingOptions(max_new_tokens=16))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 files: the 4 real recordings as wav and flac, 3 s and 2 s cuts of each (in a subfolder), one at
    44.1 kHz stereo, a 57 s file of all of them with pauses (cut by the VAD), and 2 corrupt files."""
    folder = tmp_path_factory.mktemp("corpus")
    waves = {}
    for name in RECORDINGS:
        samples, rate = soundfile.read(shared_file(f"audio/{name}.wav"), dtype="float32")
        assert rate == 16000
        waves[name] = samples
        soundfile.write(folder / f"{name}.wav", samples, rate)
        soundfile.write(folder / f"{name}.flac", samples, rate)
        (folder / "cuts").mkdir(exist_ok=True)
        soundfile.write(folder / "cuts" / f"{name}-head.wav", samples[: 3 * rate], rate)
        soundfile.write(folder / "cuts" / f"{name}-tail.flac", samples[-2 * rate:], rate)
    import soxr

    stereo = soxr.resample(waves["zh_binhai"], 16000, 44100)
    soundfile.write(folder / "zh_binhai-44k-stereo.wav", np.stack([stereo, 0.5 * stereo], axis=1), 44100)
    pause = np.zeros(16000, dtype=np.float32)
    long = np.concatenate([part for name in RECORDINGS * 2 for part in (waves[name], pause)])
    soundfile.write(folder / "long.wav", long, 16000)
    (folder / "corrupt").mkdir()
    (folder / CORRUPT[0]).write_bytes(np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes())
    flac = (folder / "zh_mid.flac").read_bytes()
    (folder / CORRUPT[1]).write_bytes(flac[:200])
    (folder / "notes.txt").write_text("not audio")  # ignored: not an audio suffix
    assert len(list_inputs(folder)) == 20
    return folder


@pytest.fixture(scope="module")
def expected(corpus):
    """model.transcribe of every good file with the model the corpus job loads by default (the embedded
    demo on the light runtime), computed once."""
    from funasr_nano import load_model

    demo = load_model()
    return {item.key: demo.transcribe(item.audio, OPTIONS) for item in list_inputs(corpus)
            if item.key not in CORRUPT}


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance (2 CPUs) for the module, shut down after it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'funasr-nano[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'funasr-nano[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _check_rows(rows, expected_results):
    """Every input has exactly one row; good files equal model.transcribe, corrupt ones are error rows."""
    by_key = {row["key"]: row for row in rows}
    assert len(by_key) == len(rows) == 20
    for key in CORRUPT:
        assert by_key[key]["status"] == "error"
        assert by_key[key]["error"].startswith("AudioDecodeError: ") and key.split("/")[1] in by_key[key]["error"]
    for key, row in by_key.items():
        if key in CORRUPT:
            continue
        expected = expected_results[key]
        assert row["status"] == "ok" and row["error"] is None, row
        assert row["text"] == expected.text and row["tokens"] == list(expected.tokens), key
        assert row["duration"] == pytest.approx(expected.duration)
        assert [(s["start"], s["end"], s["text"], tuple(s["tokens"])) for s in row["segments"]] == \
            [(s.start, s.end, s.text, s.tokens) for s in expected.segments]
    assert len(by_key["long.wav"]["segments"]) > 1  # cut by the VAD


def test_ray_job_rows_equal_transcribe(corpus, expected, ray_address, tmp_path):
    output = tmp_path / "out.jsonl"
    report = transcribe_corpus(corpus, output, options=OPTIONS, num_workers=2, parquet=tmp_path / "out.parquet")
    assert (report.total, report.skipped, report.transcribed, report.failed) == (20, 0, 20, 2)
    rows = read_rows(output)
    _check_rows(rows, expected)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert sorted(r["key"] for r in table) == sorted(r["key"] for r in rows)
    assert {r["key"]: r["tokens"] for r in table} == {r["key"]: r["tokens"] for r in rows}
    # a rerun has nothing left to do (and starts no actor)
    again = transcribe_corpus(corpus, output, options=OPTIONS, num_workers=2)
    assert (again.skipped, again.transcribed) == (20, 0) and read_rows(output) == rows


def test_killed_job_resumes_without_redoing(corpus, expected, ray_address, tmp_path):
    """The CLI on the module's Ray instance (--address), killed (SIGKILL) after a few rows, then run again."""
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "funasr_nano.cli", "transcribe-corpus", str(corpus), str(output), "--ray",
               "--address", ray_address, "--num-workers", "1", "--batch-size", "1", "--max-new-tokens", "16", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None:
            if output.exists() and output.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.1)
        assert job.poll() is None, job.communicate()
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
    first = read_rows(output)
    assert 3 <= len(first) < 20
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    rows = read_rows(output)
    failed = sum(row["status"] == "error" for row in rows[len(first):])
    assert rerun.returncode == (1 if failed else 0), rerun.stderr  # 1: a corrupt file failed in this run
    assert f"{20 - len(first)} transcribed ({failed} failed), {len(first)} already in {output}" in rerun.stdout, \
        rerun.stdout
    assert rows[: len(first)] == first  # the finished rows are kept as they were ...
    assert not {row["key"] for row in first} & {row["key"] for row in rows[len(first):]}  # ... and not redone
    _check_rows(rows, expected)
    assert rerun.stderr.count("error: ") == failed


def test_local_job_rows_equal_transcribe_and_retry_failed(corpus, expected, tmp_path):
    """Without --ray the same rows come from this process; --retry-failed redoes only error rows."""
    items = [item for item in list_inputs(corpus) if item.key.startswith(("corrupt/", "cuts/zh_mid"))]
    output = tmp_path / "out.jsonl"
    report = transcribe_corpus(items, output, options=OPTIONS, ray=False)
    assert (report.total, report.failed) == (4, 2)
    rows = read_rows(output)
    for row in rows:
        if row["status"] == "ok":
            assert row["tokens"] == list(expected[row["key"]].tokens) and row["text"] == expected[row["key"]].text
    again = transcribe_corpus(items, output, options=OPTIONS, ray=False, retry_failed=True)
    assert (again.skipped, again.transcribed, again.failed) == (2, 2, 2)
    assert sorted(r["key"] for r in read_rows(output)) == sorted(i.key for i in items)


def test_inputs_from_manifest_and_list(corpus, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"key": "a", "audio": str(corpus / "zh_mid.wav"), "target": "x"}) + "\n"
                        + json.dumps({"task": "text_translate", "source_text": "你好", "target": "hi"}) + "\n")
    assert [(i.key, i.audio) for i in list_inputs(manifest)] == [("a", str(corpus / "zh_mid.wav"))]
    listing = tmp_path / "files.txt"
    listing.write_text(f"# two files\n{corpus / 'zh_mid.wav'}\n\n{os.path.relpath(corpus / 'long.wav', tmp_path)}\n")
    assert [i.audio for i in list_inputs(listing)] == [str(corpus / "zh_mid.wav"), str(corpus / "long.wav")]
    duplicate = tmp_path / "dup.txt"
    duplicate.write_text(f"{corpus / 'zh_mid.wav'}\n{corpus / 'zh_mid.wav'}\n")
    with pytest.raises(ManifestError, match="names two inputs"):
        list_inputs(duplicate)
    with pytest.raises(ManifestError, match="no such file"):
        list_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no audio"):
        list_inputs(tmp_path / "empty")


def test_journal_drops_an_incomplete_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "status": "error"}\n{"key": "c", "sta')
    with Journal(path) as journal:
        assert journal.done == {"a", "b"}
        journal.append([{"key": "c", "status": "ok"}])
    assert [row["key"] for row in read_rows(path)] == ["a", "b", "c"]
    with Journal(path, retry_failed=True) as journal:
        assert journal.done == {"a", "c"}
    assert [row["key"] for row in read_rows(path)] == ["a", "c"]


def test_cli_usage_errors(corpus, tmp_path, capsys):
    from funasr_nano.cli import main

    output = str(tmp_path / "out.jsonl")
    assert main(["transcribe-corpus", str(corpus), output, "--address", "auto"]) == 2
    assert "--address needs --ray" in capsys.readouterr().err
    assert main(["transcribe-corpus", str(tmp_path / "missing"), output]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["transcribe-corpus", str(corpus), output, "--num-workers", "0", "--ray"]) == 2
    assert not os.path.exists(output)
