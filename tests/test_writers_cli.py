"""Output formats parsed by real parsers, and the batch command line."""

from __future__ import annotations

import io
import json

import pytest
import soundfile
import srt
import webvtt

from funasr_nano.cli.main import main
from funasr_nano.results import Segment, Transcription
from funasr_nano.writers import FORMATS, format_timestamp, get_writer, subtitle_cues

from .conftest import shared_file
from .test_long import LongInput


def _result(segments) -> Transcription:
    segments = tuple(Segment(start, end, text, (1, 2)) for start, end, text in segments)
    return Transcription(text=" ".join(s.text for s in segments), tokens=(), language=None,
                         duration=4000.0, segments=segments)


# overlapping, zero-length, negative start, multi-line text, empty text, past one hour
AWKWARD = _result([(-0.2, 1.5, "你好"), (1.4, 1.4, "overlap\nand zero length"), (2.0, 2.5, "  "),
                   (3.0, 4.25, "第三句"), (3725.5, 3727.0049, "after an hour")])


def _write(result, output_format):
    buffer = io.StringIO()
    get_writer(output_format)(result, buffer)
    return buffer.getvalue()


def test_format_timestamp():
    assert format_timestamp(3725.5049) == "01:02:05.505"
    assert format_timestamp(0.0015, decimal_marker=",") == "00:00:00,002"
    assert format_timestamp(-1) == "00:00:00.000"
    assert format_timestamp(59.9996, always_include_hours=False) == "01:00.000"


def _check_cues(times, texts):
    assert texts == ["你好", "overlap and zero length", "第三句", "after an hour"]
    for start, end in times:
        assert 0 <= start < end
    for (_, end), (start, _) in zip(times, times[1:]):
        assert end <= start
    assert times[-1][0] == pytest.approx(3725.5)


def test_srt_parses_and_is_monotonic():
    subtitles = list(srt.parse(_write(AWKWARD, "srt"), ignore_errors=False))
    assert [s.index for s in subtitles] == [1, 2, 3, 4]
    _check_cues([(s.start.total_seconds(), s.end.total_seconds()) for s in subtitles],
                [s.content for s in subtitles])


def test_vtt_parses_and_is_monotonic():
    captions = list(webvtt.from_buffer(io.StringIO(_write(AWKWARD, "vtt"))))
    _check_cues([(c.start_in_seconds + c.start_time.milliseconds / 1000,
                  c.end_in_seconds + c.end_time.milliseconds / 1000) for c in captions],
                [c.text for c in captions])
    assert _write(AWKWARD, "vtt").startswith("WEBVTT\n\n")


def test_tsv_and_json():
    rows = _write(AWKWARD, "tsv").splitlines()
    assert rows[0] == "start\tend\ttext"
    assert rows[1] == "-200\t1500\t你好" and len(rows) == 6
    data = json.loads(_write(AWKWARD, "json"))
    assert data["segments"][3] == {"start": 3.0, "end": 4.25, "text": "第三句", "tokens": [1, 2], "words": None,
                                   "avg_logprob": None, "no_speech_prob": None}
    assert _write(AWKWARD, "txt") == AWKWARD.text + "\n"


def test_subtitle_cues_of_empty_result():
    assert subtitle_cues(_result([])) == []
    assert _write(_result([]), "srt") == ""
    with pytest.raises(ValueError, match="srt"):
        get_writer("docx")


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    long_path = folder / "long.wav"
    soundfile.write(long_path, LongInput().samples, 16000)
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    return [str(shared_file("audio/zh_binhai.wav")), str(corrupt), str(shared_file("audio/zh_mid.wav")),
            str(long_path)]


def test_cli_batch_survives_a_corrupt_file(tiny_official, audio_files, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["transcribe", *audio_files, "--model", str(tiny_official), "--max-new-tokens", "6",
                 "--batch-size", "2", "--format", "all", "--output-dir", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "corrupt.wav" in err and "1 of 4 files failed" in err
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{stem}.{fmt}" for stem in ("zh_binhai", "zh_mid", "long") for fmt in FORMATS)
    # the long file was cut by VAD: four cues, well formed
    subtitles = list(srt.parse((out / "long.srt").read_text(encoding="utf-8"), ignore_errors=False))
    assert len(subtitles) == 4
    assert all(a.end <= b.start for a, b in zip(subtitles, subtitles[1:]))
    long_json = json.loads((out / "long.json").read_text(encoding="utf-8"))
    assert len(long_json["segments"]) == 4
    assert len(json.loads((out / "zh_binhai.json").read_text(encoding="utf-8"))["segments"]) == 1


def test_cli_no_vad_on_long_audio_fails_with_advice(tiny_official, audio_files, capsys):
    code = main(["transcribe", audio_files[-1], "--model", str(tiny_official), "--no-vad", "--quiet"])
    assert code == 1
    assert "enable VAD" in capsys.readouterr().err


def test_cli_srt_to_stdout(tiny_official, audio_files, capsys):
    code = main(["transcribe", audio_files[0], "--model", str(tiny_official), "--max-new-tokens", "4",
                 "--vad", "--format", "srt", "--quiet"])
    assert code == 0
    subtitles = list(srt.parse(capsys.readouterr().out, ignore_errors=False))
    assert len(subtitles) == 1 and subtitles[0].start.total_seconds() > 0.5
