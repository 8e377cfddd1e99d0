"""The server examples (examples/batch_translate.py, examples/realtime_translate.py) run against a real
server on the embedded demo model, as a pipeline builder would run them, and print what the model gives."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openai")
pytest.importorskip("websockets")

from funasr_nano.audio.vad import VadOptions  # noqa: E402
from funasr_nano.server import ServerOptions  # noqa: E402

from .conftest import ROOT  # noqa: E402
from .server_util import running_server  # noqa: E402
from .test_server import CLIPS, EXAMPLE  # noqa: E402


@pytest.fixture(scope="module")
def server(demo):
    with running_server(demo, ServerOptions()) as (url, app):
        yield url


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_batch_translate_writes_subtitles_in_both_languages(demo, server, tmp_path):
    import srt

    folder = tmp_path / "recordings"
    folder.mkdir()
    for clip in CLIPS[:3]:
        shutil.copy(clip, folder / clip.name)
    (folder / "notes.txt").write_text("not audio")
    done = run_example("batch_translate.py", str(folder), str(tmp_path / "subs"), "--url", server + "/v1")
    assert done.returncode == 0, done.stderr
    for clip in CLIPS[:3]:
        chinese = list(srt.parse((tmp_path / "subs" / f"{clip.stem}.zh.srt").read_text(encoding="utf-8")))
        english = list(srt.parse((tmp_path / "subs" / f"{clip.stem}.en.srt").read_text(encoding="utf-8")))
        assert [cue.content for cue in chinese] == [demo.transcribe(clip).text]
        assert " ".join(cue.content for cue in english) == demo.translate(clip).text
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == sorted(
        f"{c.stem}.{lang}.srt" for c in CLIPS[:3] for lang in ("zh", "en"))


def test_realtime_translate_prints_each_sentence_with_its_latency(demo, server):
    expected = demo.translate(EXAMPLE, vad_options=VadOptions(max_merge_gap=0.5))
    done = run_example("realtime_translate.py", str(EXAMPLE), "--url", server.replace("http", "ws") + "/v1/realtime",
                       "--speed", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(re.fullmatch(r"\[ *\d+\.\d\d s\] .+", line) for line in lines), done.stdout
    assert " ".join(line.split("] ", 1)[1] for line in lines) == expected.text
    transcript = run_example("realtime_translate.py", str(EXAMPLE), "--url",
                             server.replace("http", "ws") + "/v1/realtime", "--speed", "0", "--task", "transcribe")
    assert transcript.returncode == 0, transcript.stderr
    assert "".join(line.split("] ", 1)[1] for line in transcript.stdout.splitlines()) == demo.transcribe(EXAMPLE).text
