"""Speech translation: cascade and unified, streamed by sentence (issue 5), on tiny random models.

Random models write gibberish, so sentences here come from the VAD pauses between the three real
recordings (a pause always ends a sentence) and from whatever sentence marks the gibberish holds."""

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from funasr_nano import UnsupportedLanguageError, load_model
from funasr_nano.results import join_texts
from funasr_nano.testing.tiny import build_tokenizer
from funasr_nano import DecodingOptions, TranslationOptions, TranslatorError
from funasr_nano.pipeline.translate import (PartialTranscript, SentenceTranslated, SourceSentence, TranslationFinished,
                                            split_sentences, translate, translate_stream)
from funasr_nano.pipeline.translators import ChatLMTranslator, load_translator

from .conftest import shared_file, write_translating_checkpoint

CONFIG = TranslationOptions(decoding=DecodingOptions(max_new_tokens=12))


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def three_sentences(tmp_path_factory):
    """Three real recordings with 3 s of silence between them (16 kHz mono wav)."""
    silence = np.zeros(3 * 16000, dtype=np.float32)
    parts = []
    for name in ("zh_binhai.wav", "zh_welcome.wav", "zh_mid.wav"):
        parts += [soundfile.read(shared_file(f"audio/{name}"), dtype="float32")[0], silence]
    path = tmp_path_factory.mktemp("audio") / "three.wav"
    soundfile.write(path, np.concatenate(parts[:-1]), 16000)
    return path


@pytest.fixture(scope="module")
def translating_model(tmp_path_factory):
    """A tiny random checkpoint whose config says it was trained for all three tasks."""
    return load_model(write_translating_checkpoint(tmp_path_factory.mktemp("translating")))


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    """A tiny random Qwen3 chat LLM folder (tokenizer with a ChatML template)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer()
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("chat-lm")
    Qwen3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_sentence_splitting():
    assert split_sentences("你好。我很好！你呢", final=False) == (["你好。", "我很好！"], "你呢")
    assert split_sentences("你好。我很好！你呢", final=True) == (["你好。", "我很好！", "你呢"], "")
    assert split_sentences("It costs 3.5 dollars. Fine", final=False) == (["It costs 3.5 dollars."], " Fine")
    assert split_sentences("他说：“走吧。”然后", final=False) == (["他说：“走吧。”"], "然后")


def test_unsupported_language_pair(model, binhai):
    with pytest.raises(UnsupportedLanguageError, match="zh->en"):
        TranslationOptions(target_language="fr")
    with pytest.raises(UnsupportedLanguageError, match="zh->de"):
        model.translate(binhai, target_language="de", mode="cascade")


def test_translator_errors(model, tmp_path, chat_lm):
    with pytest.raises(TranslatorError, match="no such folder"):
        load_translator(tmp_path / "missing")
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "bert")
    with pytest.raises(TranslatorError, match="cannot translate"):
        load_translator(tmp_path / "bert")
    no_template = tmp_path / "no-template"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(chat_lm).save_pretrained(no_template)
    tokenizer = AutoTokenizer.from_pretrained(chat_lm)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(TranslatorError, match="chat template"):
        load_translator(no_template)
    # a transcription-only speech model can neither translate itself nor serve as a text translator
    with pytest.raises(TranslatorError, match="not trained for speech translation"):
        model.translate(shared_file("audio/zh_binhai.wav"), mode="unified")
    with pytest.raises(TranslatorError, match="not trained for text translation"):
        model.translate(shared_file("audio/zh_binhai.wav"), mode="cascade")


def test_cascade_with_a_tiny_text_llm(model, chat_lm, three_sentences):
    translator = ChatLMTranslator(str(chat_lm))
    result = model.translate(three_sentences, CONFIG, mode="cascade", translator=translator)
    assert result.mode == "cascade" and result.duration == pytest.approx(soundfile.info(three_sentences).duration, abs=1e-3)
    assert len(result.segments) >= 3
    for sentence in result.segments:  # each sentence is the translator's output for its source
        assert sentence.text == translator.translate(sentence.source, CONFIG)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(0 <= s.start < s.end <= result.duration for s in result.segments)
    # the source text is the transcript of the same VAD segments
    transcript = model.transcribe(three_sentences, vad=True, max_new_tokens=CONFIG.decoding.max_new_tokens)
    assert len(transcript.segments) == 3
    assert squash(result.source_text) == squash(transcript.text)
    assert result.text == join_texts(s.text for s in result.segments)


def test_cascade_with_the_speech_models_own_llm(translating_model, three_sentences):
    result = translating_model.translate(three_sentences, CONFIG, mode="cascade")
    assert len(result.segments) >= 3
    for sentence in result.segments:
        expected = translating_model.run("text_translate", text=sentence.source,
                                         options=__import__("funasr_nano").DecodingOptions(max_new_tokens=12))
        assert sentence.text == expected.text.strip()


def test_unified(translating_model, three_sentences):
    from funasr_nano.audio.io import iter_audio
    from funasr_nano.pipeline.decoding import DecodingOptions
    from funasr_nano.audio.vad import speech_chunks

    result = translating_model.translate(three_sentences, CONFIG, mode="unified")
    assert result.mode == "unified" and result.source_text is None
    assert all(s.source is None for s in result.segments)
    chunks = list(speech_chunks(iter_audio(three_sentences)))
    expected = [translating_model.run("translate", audio=c.samples, options=DecodingOptions(max_new_tokens=12)).text
                for c in chunks]
    assert squash(result.text) == squash("".join(expected))


@pytest.mark.parametrize("mode", ["cascade", "unified"])
def test_streaming_order_and_equality(translating_model, three_sentences, mode):
    events = list(translate_stream(translating_model, three_sentences, dataclasses.replace(CONFIG, mode=mode)))
    assert isinstance(events[-1], TranslationFinished)
    assert not any(isinstance(e, TranslationFinished) for e in events[:-1])
    translated = [i for i, e in enumerate(events) if isinstance(e, SentenceTranslated)]
    assert len(translated) >= 3
    assert [events[i].sentence.index for i in translated] == list(range(len(translated)))
    if mode == "cascade":
        sources = [i for i, e in enumerate(events) if isinstance(e, SourceSentence)]
        assert len(sources) == len(translated)
        for s, t in zip(sources, translated):  # each translation right after its source sentence
            assert t == s + 1 and events[t].sentence.source == events[s].text
        partials = [i for i, e in enumerate(events) if isinstance(e, PartialTranscript)]
        last_segment = max(events[i].segment for i in partials)
        first_of_last = min(i for i in partials if events[i].segment == last_segment)
        # sentence 1 is translated before the last sentence's transcript has begun
        assert translated[0] < first_of_last < sources[-1]
    else:
        assert all(isinstance(events[i], SentenceTranslated) for i in range(len(events) - 1))
    streamed = join_texts(events[i].sentence.text for i in translated)
    final = translate(translating_model, three_sentences, dataclasses.replace(CONFIG, mode=mode))
    assert streamed == final.text == events[-1].translation.text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "funasr_nano.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_cli_translate(tiny_official, chat_lm, three_sentences, tmp_path, capsys):
    import srt

    from funasr_nano.cli.main import main

    proc = run_cli("translate", three_sentences, "--model", tiny_official, "--mode", "cascade", "--translator",
                   chat_lm, "--format", "srt", "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr
    cues = list(srt.parse(proc.stdout))
    assert len(cues) >= 3 and all(a.end <= b.start for a, b in zip(cues, cues[1:]))
    common = ["translate", str(three_sentences), "--model", str(tiny_official)]
    assert main([*common, "--mode", "cascade", "--translator", str(chat_lm), "--format", "json", "--stream",
                 "--max-new-tokens", "8"]) == 0
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert events[0] == "PartialTranscript" and "SentenceTranslated" in events
    assert main([*common, "--mode", "cascade", "--translator", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(common) == 2
    assert "not trained for speech translation" in capsys.readouterr().err


def test_a_sentence_is_translated_while_its_segment_is_still_being_transcribed(model, binhai, monkeypatch):
    """Random models write no sentence marks, so here the transcript is fed token by token: the first
    sentence must be translated before the rest of the segment's transcript appears."""
    import funasr_nano.pipeline.translate as translate_module

    text = "你好。我很好！再见"
    ids = model.tokenizer.encode(text, add_special_tokens=False)

    class ScriptedStream:  # stands in for pipeline.decoding.TokenStream
        def __init__(self, engine, llm_input, options):
            pass

        def __iter__(self):
            for count in range(1, len(ids) + 1):
                yield ids[:count]
            yield ids

        def close(self):
            pass

    class Echo:
        def translate(self, source, config):
            return source

    monkeypatch.setattr(translate_module, "TokenStream", ScriptedStream)
    events = list(translate_stream(model, binhai, dataclasses.replace(CONFIG, mode="cascade"), translator=Echo()))
    sources = [e.text for e in events if isinstance(e, SourceSentence)]
    assert sources == ["你好。", "我很好！", "再见"]
    first_translation = next(i for i, e in enumerate(events) if isinstance(e, SentenceTranslated))
    second_sentence_seen = next(i for i, e in enumerate(events) if isinstance(e, PartialTranscript) and "我" in e.text)
    assert first_translation < second_sentence_seen
    assert events[-1].translation.text == text == events[-1].translation.source_text


def test_demo_model_translates_the_shipped_example_unified(demo):
    """The demo model is weak (see README), but unified mode gives English words, not Chinese."""
    from .conftest import ROOT

    result = demo.translate(ROOT / "examples" / "demo_zh.wav", mode="unified")
    assert result.source_text is None and result.segments
    assert re.search(r"[A-Za-z]{2,}", result.text) and not re.search(r"[\u4e00-\u9fff]", result.text)


def test_demo_model_llm_as_cascade_translator(demo):
    from .conftest import ROOT

    result = demo.translate(ROOT / "examples" / "demo_zh.wav", mode="cascade")
    assert result.source_text and re.search(r"[\u4e00-\u9fff]", result.source_text)  # the Chinese transcript
    for sentence in result.segments:
        assert sentence.text == demo.run("text_translate", text=sentence.source,
                                         options=__import__("funasr_nano").DecodingOptions(max_new_tokens=256)).text.strip()
