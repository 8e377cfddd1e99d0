"""Subtitles cut at word times (whisper's --max-line-width, --max-line-count, --max-words-per-line,
--highlight-words): cues and lines built from Segment/Word records, parsed by the srt and webvtt
parsers, the option checks, and the command line with word timestamps on a tiny CTC checkpoint."""

from __future__ import annotations

import io
import json

import pytest
import srt
import webvtt

from funasr_nano.cli.main import main
from funasr_nano.errors import InvalidOptionError
from funasr_nano.options import SubtitleOptions
from funasr_nano.results import Segment, Transcription, Word
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint
from funasr_nano.writers import get_writer, subtitle_cues


def _segment(words) -> Segment:
    words = tuple(Word(start, end, text, 0.9) for start, end, text in words)
    return Segment(words[0].start, words[-1].end, "".join(w.word for w in words).strip(), (1,), words=words)


ENGLISH = _segment([(0.0, 0.4, "Hello"), (0.5, 0.9, " world,"), (1.0, 1.3, " this"), (1.4, 1.8, " is"),
                    (1.9, 2.5, " a"), (2.6, 3.0, " test.")])
NEXT = _segment([(3.2, 3.5, "Next"), (3.6, 4.0, " one.")])  # no pause after ENGLISH
CHINESE = _segment([(7.5, 7.8, "滨"), (7.8, 8.1, "海"), (8.1, 8.4, "新"), (8.4, 8.7, "区")])  # after a 3.5 s pause
RESULT = Transcription(text="", tokens=(), language=None, duration=9.0, segments=(ENGLISH, NEXT, CHINESE))


def test_without_options_a_cue_is_a_segment():
    expected = [(0.0, 3.0, "Hello world, this is a test."), (3.2, 4.0, "Next one."), (7.5, 8.7, "滨海新区")]
    assert subtitle_cues(RESULT) == subtitle_cues(RESULT, SubtitleOptions()) == expected


def test_max_line_width_breaks_lines_at_words_and_keeps_segments():
    assert subtitle_cues(RESULT, SubtitleOptions(max_line_width=12)) == [
        (0.0, 3.0, "Hello world,\nthis is a\ntest."), (3.2, 4.0, "Next one."), (7.5, 8.7, "滨海新区")]
    # a word longer than the line stands alone on its line; Chinese counts characters
    assert subtitle_cues(RESULT, SubtitleOptions(max_line_width=3)) == [
        (0.0, 3.0, "Hello\nworld,\nthis\nis\na\ntest."), (3.2, 4.0, "Next\none."), (7.5, 8.7, "滨海新\n区")]


def test_max_line_count_flows_words_across_segments_until_a_long_pause():
    cues = subtitle_cues(RESULT, SubtitleOptions(max_line_width=12, max_line_count=2))
    assert cues == [(0.0, 2.5, "Hello world,\nthis is a"), (2.6, 4.0, "test. Next\none."), (7.5, 8.7, "滨海新区")]
    single = subtitle_cues(RESULT, SubtitleOptions(max_line_width=12, max_line_count=1))
    assert [text for _, _, text in single] == ["Hello world,", "this is a", "test. Next", "one.", "滨海新区"]


def test_max_words_per_line_cuts_segments_into_cues():
    assert subtitle_cues(RESULT, SubtitleOptions(max_words_per_line=4)) == [
        (0.0, 1.8, "Hello world, this is"), (1.9, 3.0, "a test."), (3.2, 4.0, "Next one."),
        (7.5, 8.7, "滨海新区")]
    assert [text for _, _, text in subtitle_cues(RESULT, SubtitleOptions(max_words_per_line=4, max_line_width=8))][:2] \
        == ["Hello\nworld,\nthis is", "a test."]


def test_highlight_words_underlines_each_word_in_its_time():
    cues = subtitle_cues(Transcription("", (), None, 9.0, (NEXT, CHINESE)), SubtitleOptions(highlight_words=True))
    assert cues[:3] == [(3.2, 3.5, "<u>Next</u> one."), (3.5, 3.6, "Next one."), (3.6, 4.0, "Next <u>one.</u>")]
    assert cues[3:5] == [(7.5, 7.8, "<u>滨</u>海新区"), (7.8, 8.1, "滨<u>海</u>新区")]
    lines = subtitle_cues(Transcription("", (), None, 9.0, (NEXT,)), SubtitleOptions(highlight_words=True,
                                                                                         max_line_width=4))
    assert lines[-1] == (3.6, 4.0, "Next\n<u>one.</u>")


@pytest.mark.parametrize("options", [SubtitleOptions(max_line_width=12, max_line_count=2),
                                     SubtitleOptions(max_words_per_line=2, highlight_words=True)])
def test_srt_and_vtt_parse_and_are_monotonic(options):
    buffer = io.StringIO()
    get_writer("srt", options)(RESULT, buffer)
    cues = list(srt.parse(buffer.getvalue(), ignore_errors=False))
    expected = subtitle_cues(RESULT, options)
    assert [c.content for c in cues] == [text for _, _, text in expected]
    assert [t for c in cues for t in (c.start.total_seconds(), c.end.total_seconds())] == pytest.approx(
        [t for start, end, _ in expected for t in (start, end)])
    buffer = io.StringIO()
    get_writer("vtt", options)(RESULT, buffer)
    captions = webvtt.from_buffer(io.StringIO(buffer.getvalue()))
    assert [c.raw_text for c in captions] == [c.content for c in cues]  # the <u> tags kept
    times = [(c.start.total_seconds(), c.end.total_seconds()) for c in cues]
    assert all(start < end for start, end in times)
    assert all(end <= start for (_, end), (start, _) in zip(times, times[1:]))


def test_option_checks_and_segments_without_words():
    for bad, message in ((dict(max_line_count=2), "max_line_count needs max_line_width"),
                         (dict(max_line_width=10, max_line_count=2, max_words_per_line=3), "no effect"),
                         (dict(max_line_width=0), "max_line_width must be an integer >= 1"),
                         (dict(max_words_per_line=2.5), "max_words_per_line"),
                         (dict(highlight_words=1), "highlight_words")):
        with pytest.raises(InvalidOptionError, match=message):
            SubtitleOptions(**bad)
    plain = Transcription("a b", (), None, 2.0, (Segment(0.0, 1.0, "a b", (1,)), Segment(1.0, 2.0, "", (), words=None)))
    with pytest.raises(InvalidOptionError, match="need word timestamps"):
        subtitle_cues(plain, SubtitleOptions(max_words_per_line=1))
    buffer = io.StringIO()
    get_writer("tsv", SubtitleOptions(max_words_per_line=1))(plain, buffer)  # tsv has no cues: unaffected
    assert buffer.getvalue().splitlines()[1] == "0\t1000\ta b"


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory):
    """A random checkpoint with the CTC branch whose output on the recording aligns to six words."""
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-ctc")), "official", TinyConfig(ctc=True), seed=1)


def test_cli_cuts_subtitles_at_word_times(tiny_ctc, binhai, capsys):
    common = ["transcribe", str(binhai), "--model", str(tiny_ctc), "--max-new-tokens", "48", "--no-repetition-guard",
              "--quiet"]
    assert main(common + ["--format", "json", "--word-timestamps"]) == 0
    segments = json.loads(capsys.readouterr().out)["segments"]
    result = Transcription("", (), None, 6.0, tuple(
        Segment(s["start"], s["end"], s["text"], tuple(s["tokens"]), words=tuple(Word(**w) for w in s["words"]))
        for s in segments))
    words = [w for s in result.segments for w in s.words]
    assert len(words) >= 5
    assert main(common + ["--format", "srt", "--word-timestamps", "--max-line-width", "3", "--max-line-count", "2"]) == 0
    cues = list(srt.parse(capsys.readouterr().out, ignore_errors=False))
    expected = subtitle_cues(result, SubtitleOptions(max_line_width=3, max_line_count=2))
    assert [c.content for c in cues] == [text for _, _, text in expected]
    assert len(words) / 2 <= len(cues) < len(words)  # two lines a cue, a word or more a line
    for cue in cues:
        lines = cue.content.split("\n")
        assert len(lines) <= 2
        assert all(len(line) <= 3 or " " not in line for line in lines)  # longer only when it is one word
    assert cues[0].start.total_seconds() == pytest.approx(words[0].start, abs=1e-3)
    assert cues[-1].end.total_seconds() == pytest.approx(words[-1].end, abs=1e-3)
    code = main(common + ["--format", "srt", "--max-line-width", "3", "--highlight-words"])
    assert code == 2
    assert "--max-line-width, --highlight-words: subtitles cut at word times need --word-timestamps" in \
        capsys.readouterr().err
