"""Qwen3-ASR through the common API: loading, prompt and output conventions, audio lengths, long audio,
batching, streaming, writers and the CLI, on the tiny random checkpoint and real recordings."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from funasr_nano import load_model
from funasr_nano.audio.io import load_audio
from funasr_nano.errors import InvalidOptionError, UnsupportedLanguageError
from funasr_nano.models.qwen3_asr.model import Qwen3AsrModel, num_audio_tokens
from funasr_nano.models.qwen3_asr.prompt import fix_repetitions, language_name, parse_output

from .conftest import shared_file


@pytest.fixture(scope="module")
def qwen(tiny_qwen3_asr):
    return load_model(tiny_qwen3_asr)


def test_load_model_recognises_the_family(qwen, tiny_qwen3_asr_hf):
    assert isinstance(qwen.family, Qwen3AsrModel) and qwen.engine.name == "transformers"
    assert isinstance(load_model(tiny_qwen3_asr_hf).family, Qwen3AsrModel)
    assert qwen.family.stop_token_ids == [151643, 151645]


@pytest.mark.parametrize("kwargs, message", [
    ({"encoder_precision": "int8"}, "fp32 only"), ({"use_low_frame_rate": True}, "Fun-ASR-Nano setting"),
    ({"lora": "adapter"}, "LoRA"), ({"engine": "llama.cpp"}, "GGUF"),
])
def test_fun_asr_nano_options_are_refused(tiny_qwen3_asr, kwargs, message):
    with pytest.raises(InvalidOptionError, match=message):
        load_model(tiny_qwen3_asr, **kwargs)


def test_languages_and_itn(qwen):
    assert [language_name(x) for x in ("zh", "chinese", "ENGLISH", "yue", None, "")] == [
        "Chinese", "Chinese", "English", "Cantonese", None, None]
    with pytest.raises(UnsupportedLanguageError, match="Klingon"):
        qwen.transcribe(shared_file("audio/zh_mid.wav"), language="Klingon")
    with pytest.raises(InvalidOptionError, match="itn=False"):
        qwen.transcribe(shared_file("audio/zh_mid.wav"), itn=False)


def test_prompt_text(qwen):
    family = qwen.family
    assert family.transcription_prompt(None, [], True) == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n"
        "<|im_start|>assistant\n")
    forced = family.transcription_prompt("ja", ["東京", "大阪"], True)
    assert forced.startswith("<|im_start|>system\n東京 大阪<|im_end|>")
    assert forced.endswith("<|im_start|>assistant\nlanguage Japanese<asr_text>")


def test_output_parsing():
    assert parse_output("language Chinese<asr_text>你好。") == ("Chinese", "你好。")
    assert parse_output("language english<asr_text> Hi ") == ("English", "Hi")
    assert parse_output("language None<asr_text>") == (None, "")
    assert parse_output("no tag at all") == (None, "no tag at all")
    assert parse_output("你好", forced_language="Chinese") == ("Chinese", "你好")
    assert parse_output("  ", forced_language="Chinese") == (None, "")
    assert fix_repetitions("啊" * 25 + "好") == "啊好"
    assert fix_repetitions("x" + "ab" * 30 + "c") == "xabc"
    assert fix_repetitions("ab" * 19) == "ab" * 19  # fewer than 20 repeats stay


def test_language_and_text_of_generated_tokens(qwen):
    tokenizer = qwen.tokenizer
    tokens = tokenizer.encode("language Chinese<asr_text>我想问", add_special_tokens=False)
    assert 151704 in tokens  # <asr_text> is one token
    assert qwen.parse_transcription(tokens) == ("Chinese", "我想问")
    assert qwen.decode_text(tokens) == "我想问"
    assert qwen.parse_transcription(tokenizer.encode("我想问", add_special_tokens=False), "zh") == ("Chinese", "我想问")


@pytest.mark.parametrize("seconds", [0.1, 0.5, 0.99, 1.0, 1.37, 2.0, 7.25])
def test_audio_positions_match_the_encoder(qwen, seconds):
    samples = int(seconds * 16000)
    waveform = (0.1 * np.random.default_rng(0).standard_normal(samples)).astype(np.float32)
    embeddings = qwen.audio_embeddings(waveform)
    assert embeddings.shape == (qwen.family.audio_positions(samples), 32)
    assert qwen.family.audio_positions(16000) == num_audio_tokens(100) == 13


def test_peak_above_one_is_normalised(qwen):
    waveform = load_audio(shared_file("audio/zh_mid.wav"))
    np.testing.assert_allclose(qwen.audio_embeddings(waveform * 3.0 / np.abs(waveform).max()).numpy(),
                               qwen.audio_embeddings(waveform / np.abs(waveform).max()).numpy(), atol=1e-5)


def test_long_audio_batches_and_streaming(qwen, tmp_path):
    """VAD cuts long audio; segments decode as the same clips would alone; a stream gives finals."""
    parts = [load_audio(shared_file(f"audio/{n}.wav")) for n in ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")]
    silence = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([x for part in parts for x in (part, silence)])
    path = tmp_path / "long.wav"
    soundfile.write(path, audio, 16000, subtype="PCM_16")
    result = qwen.transcribe(path, max_duration=10, max_new_tokens=6, batch_size=3)
    assert len(result.segments) >= 2 and result.duration == pytest.approx(audio.size / 16000, abs=0.01)
    assert all(a.end <= b.start for a, b in zip(result.segments, result.segments[1:]))
    assert result.tokens == tuple(t for s in result.segments for t in s.tokens)
    forced = qwen.transcribe(path, max_duration=10, max_new_tokens=6, language="zh")
    assert forced.language == "Chinese"
    # batched inputs: each equals its own transcription
    clips = [shared_file(f"audio/{n}.wav") for n in ("zh_binhai", "zh_mid")]
    batch = list(qwen.transcribe_batch(clips, batch_size=2, max_new_tokens=8, language="en"))
    for clip, row in zip(clips, batch):
        alone = qwen.transcribe(clip, max_new_tokens=8, language="en")
        assert (row.tokens, row.text, row.language) == (alone.tokens, alone.text, "English")
    session = qwen.stream(max_new_tokens=4, language="Chinese")
    events = [e for start in range(0, audio.size, 8000) for e in session.feed(audio[start:start + 8000])]
    events += session.finish()
    finals = [e for e in events if e.final]
    assert finals and session.transcription().language == "Chinese"
    # the finals are the offline VAD transcription's segments (boundaries, tokens, text), as the README says
    offline = qwen.transcribe(audio, vad=True, max_new_tokens=4, language="Chinese")
    assert [e.to_segment() for e in finals] == list(offline.segments)
    assert session.transcription().text == offline.text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "funasr_nano.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_cli_and_writers(tiny_qwen3_asr, tmp_path):
    audio = shared_file("audio/zh_binhai.wav")
    proc = run_cli("transcribe", audio, "--model", tiny_qwen3_asr, "--max-new-tokens", "5", "--language", "zh",
                   "--hotwords", "滨海新区", "--format", "all", "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = json.loads((tmp_path / "zh_binhai.json").read_text(encoding="utf-8"))
    assert written["language"] == "Chinese" and len(written["tokens"]) == 5
    assert {p.suffix for p in tmp_path.iterdir()} >= {".txt", ".json", ".srt", ".vtt", ".tsv"}
    proc = run_cli("transcribe", audio, "--model", tiny_qwen3_asr, "--no-itn")
    assert proc.returncode == 2 and "itn=False" in proc.stderr
    assert run_cli("tiny", tmp_path / "tiny", "--family", "qwen3-asr", "--layout", "hf").returncode == 0
    assert isinstance(load_model(tmp_path / "tiny").family, Qwen3AsrModel)


def test_stream_partials_continue_in_the_language_the_model_named(qwen, monkeypatch):
    """Without a forced language, a partial's prefix text follows a prompt that forces the language the
    previous partial named (the model writes ``language X<asr_text>`` before the text, which the prefix
    text lacks); the first partial of each segment and every final decode with the plain prompt."""
    audio = load_audio(shared_file("audio/zh_long.wav"))
    calls = []
    decode = qwen.decode_waveforms

    def spy(waveforms, instruction, options=None, *, prefix_texts=None, **kwargs):
        calls.append((instruction, (prefix_texts or [""])[0]))
        return decode(waveforms, instruction, options, prefix_texts=prefix_texts, **kwargs)

    def named(tokens, language):  # a model that always names Chinese and writes ten characters
        return language or "Chinese", "今天天气很好我们出去"

    monkeypatch.setattr(qwen, "decode_waveforms", spy)
    monkeypatch.setattr(qwen.family, "parse_transcription", named)
    session = qwen.stream(max_new_tokens=2)
    for start in range(0, audio.size, 8000):
        session.feed(audio[start:start + 8000])
    session.finish()
    plain = [instruction for instruction, prefix in calls if not prefix]
    continued = [instruction for instruction, prefix in calls if prefix]
    assert plain and continued, calls
    assert all("language Chinese<asr_text>" not in instruction for instruction in plain)
    assert all(instruction.endswith("language Chinese<asr_text>") for instruction in continued)
