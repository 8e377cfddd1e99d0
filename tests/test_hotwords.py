"""Hotword lists beyond the prompt: pinyin-level narrowing of a 10,000-entry list per utterance, and the
pipeline that puts the matches into each segment's prompt."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from funasr_nano import load_model
from funasr_nano.errors import CheckpointError, InvalidOptionError
from funasr_nano.pipeline.hotwords import HotwordList, load_hotwords_file, syllables
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

pytest.importorskip("pypinyin")


def _distractors(count: int, seed: int = 0) -> list[str]:
    """Random 2-4 character words over common characters."""
    pool = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理世车")
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(pool, size=int(rng.integers(2, 5)))) for _ in range(count)]


def test_syllables_fold_tones_and_confusable_initials():
    assert syllables("滨海 New区！") == ("bin", "hai", "new", "qu")
    assert syllables("知识") == syllables("滋斯") == ("zi", "si")  # zh/z, sh/s folded; tones dropped
    assert syllables("北京") == syllables("背景")  # homophones


def test_a_planted_hotword_is_found_among_10000_by_its_sound():
    hotwords = HotwordList(_distractors(10_000) + ["滨海新区", "达摩院", "OpenAI"])
    # a CTC read-out with homophone errors: 宾/滨, 心/新, 达魔园 for 达摩院
    assert "滨海新区" in hotwords.match("我想问我在宾海心区有房", limit=10)
    assert "达摩院" in hotwords.match("欢迎体验达魔院推出的模型", limit=10)
    assert hotwords.match("we use openai models", limit=10)[0] == "OpenAI"
    assert "滨海新区" not in hotwords.match("今天天气很好", limit=10)
    assert len(hotwords.match("我想问我在宾海心区有房", limit=3)) <= 3


def test_a_four_syllable_hotword_tolerates_one_wrong_syllable():
    hotwords = HotwordList(["滨海新区", "滨海"])
    assert hotwords.match("我在滨海星区", limit=5) == ["滨海新区", "滨海"]  # xing/xin folded: all agree
    assert hotwords.match("我在滨海鑫曲", limit=5) == ["滨海新区", "滨海"]  # homophones of every syllable
    assert hotwords.match("我在滨海光区", limit=5) == ["滨海", "滨海新区"]  # one wrong of four: ranked after
    assert hotwords.match("我在冰箱光区", limit=5) == []  # two wrong


def test_a_hotwords_file_is_read_once_and_refused_clearly(tmp_path):
    path = tmp_path / "hotwords.txt"
    path.write_text("# names\n滨海新区\n\n达摩院\n滨海新区\n", encoding="utf-8")
    assert load_hotwords_file(str(path)).words == ("滨海新区", "达摩院")
    assert load_hotwords_file(str(path)) is load_hotwords_file(str(path))
    with pytest.raises(InvalidOptionError, match="missing.txt"):
        load_hotwords_file(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(InvalidOptionError, match="no hotwords"):
        load_hotwords_file(str(tmp_path / "empty.txt"))


@pytest.fixture(scope="module")
def ctc_model(tmp_path_factory):
    return load_model(write_tiny_checkpoint(str(tmp_path_factory.mktemp("ctc")), "official", TinyConfig(ctc=True),
                                            seed=0))


def test_matched_file_hotwords_reach_each_segments_prompt(ctc_model, binhai, tmp_path, monkeypatch):
    waveform, _ = soundfile.read(binhai, dtype="float32")
    heard = ctc_model.family.ctc_analysis(waveform).greedy_text  # what the random CTC head reads out
    planted = "".join(c for c in heard if "\u4e00" <= c <= "\u9fff")[:2]
    assert len(syllables(planted)) == 2
    path = tmp_path / "hotwords.txt"
    path.write_text("\n".join(_distractors(2000) + [planted]), encoding="utf-8")
    seen = []
    original = ctc_model.family.transcription_prompt

    def spy(language, hotwords, itn):
        seen.append(tuple(hotwords))
        return original(language, hotwords, itn)

    monkeypatch.setattr(ctc_model.family, "transcription_prompt", spy)
    with_file = ctc_model.transcribe(waveform, hotwords=["达摩院"], hotwords_file=str(path), max_new_tokens=8)
    assert any(planted in hotwords and hotwords[0] == "达摩院" for hotwords in seen)
    expected = ctc_model.transcribe(waveform, hotwords=["达摩院", *[h for h in seen[-1][1:]]], max_new_tokens=8)
    assert with_file.tokens == expected.tokens


def test_hotwords_file_needs_a_ctc_head(model, binhai, tmp_path):
    path = tmp_path / "hotwords.txt"
    path.write_text("滨海新区\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="hotwords_file"):
        model.transcribe(binhai, hotwords_file=str(path))
