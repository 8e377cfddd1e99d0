"""Manifests (both formats, errors naming file, line and cause), `data check`, task prompts and
espeak-ng synthesis."""

from __future__ import annotations

import json
import shutil

import pytest
import soundfile

from funasr_nano.cli.main import main
from funasr_nano.training.data import check_manifest, read_manifest, text_translation_examples
from funasr_nano.errors import ManifestError, SynthesisError
from funasr_nano.models.fun_asr_nano.prompt import TASKS, get_task, transcription_instruction

from .training_data import make_corpus


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    manifest = make_corpus(tmp_path_factory.mktemp("clip"), 1)
    return manifest.parent / "wav" / "000000.wav"


def write(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
                    encoding="utf-8")
    return path


def test_task_prompts():
    assert TASKS["transcribe"].user_text() == transcription_instruction() == "语音转写："
    assert TASKS["translate"].user_text() == "语音转写并翻译成英文："
    assert get_task("text_translate").user_text("你好") == "请将以下中文翻译为英文：你好"
    assert not TASKS["text_translate"].uses_audio
    with pytest.raises(ValueError, match="needs a source text"):
        TASKS["text_translate"].user_text()
    with pytest.raises(ValueError, match="unknown task"):
        get_task("summarize")


def test_both_formats_and_relative_paths(tmp_path, clip):
    (tmp_path / "sub").mkdir()
    shutil.copy(clip, tmp_path / "a.wav")
    manifest = write(
        tmp_path / "sub" / "m.jsonl",
        {"key": "o1", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                   {"role": "user", "content": "语音转写：<|startofspeech|>!../a.wav<|endofspeech|>"},
                                   {"role": "assistant", "content": "你好"}]},
        "",
        {"audio": "../a.wav", "target": "Hello", "task": "translate", "language": "zh", "source_text": "你好"},
        {"task": "text_translate", "source_text": "谢谢", "target": "Thanks"},
        {"messages": [{"role": "user", "content": "把这段话总结一下：<|startofspeech|>!/abs/b.wav<|endofspeech|>"},
                      {"role": "assistant", "content": "x"}]},
    )
    official, translate, text, custom = read_manifest(manifest)
    assert official.task == "transcribe" and official.audio == str(tmp_path / "a.wav") and official.key == "o1"
    assert translate.task == "translate" and translate.audio == str(tmp_path / "a.wav")
    assert translate.instruction == "语音转写并翻译成英文："
    assert text.audio is None and text.instruction == "请将以下中文翻译为英文：谢谢"
    assert translate.source == f"{manifest}:3"
    assert custom.task == "custom" and custom.instruction == "把这段话总结一下：" and custom.audio == "/abs/b.wav"
    derived = text_translation_examples([translate])
    assert derived[0].audio is None and derived[0].target == "Hello" and derived[0].task == "text_translate"


BAD_LINES = {
    "json": ('{"audio": "a.wav", "target": ', "invalid JSON"),
    "no_target": ({"audio": "a.wav"}, 'missing field "target"'),
    "empty_target": ({"audio": "a.wav", "target": "  "}, 'field "target" is empty'),
    "task": ({"audio": "a.wav", "target": "x", "task": "summarize"}, 'unknown task "summarize"'),
    "field": ({"audio": "a.wav", "target": "x", "txt": "y"}, "unknown fields ['txt']"),
    "text_task_audio": ({"audio": "a.wav", "target": "x", "task": "text_translate", "source_text": "y"}, "takes no audio"),
    "text_task_source": ({"target": "x", "task": "text_translate"}, 'needs "source_text"'),
    "neither": ({"text": "x"}, "neither format"),
    "array": ("[1, 2]", "expected a JSON object"),
    "turns": ({"messages": [{"role": "user", "content": "a"}]}, "expected messages system, user, assistant"),
    "two_clips": ({"messages": [{"role": "user", "content": "<|startofspeech|>!a<|endofspeech|><|startofspeech|>!b<|endofspeech|>"},
                                {"role": "assistant", "content": "x"}]}, "2 audio clips"),
    "reference": ({"messages": [{"role": "user", "content": "语音转写：<|startofspeech|>a.wav<|endofspeech|>"},
                                {"role": "assistant", "content": "x"}]}, "must be !PATH"),
}


@pytest.mark.parametrize("line,cause", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_bad_line_names_file_line_and_cause(tmp_path, line, cause):
    manifest = write(tmp_path / "m.jsonl", {"audio": "a.wav", "target": "fine"}, "", line)
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    assert str(caught.value).startswith(f"{manifest}:3: ")
    assert cause in str(caught.value)
    assert caught.value.line == 3 and caught.value.path == str(manifest)


def test_data_check_catches_a_missing_audio_file(tmp_path, clip, capsys):
    shutil.copy(clip, tmp_path / "a.wav")
    manifest = write(tmp_path / "m.jsonl", {"audio": "a.wav", "target": "你好"}, {"audio": "gone.wav", "target": "再见"})
    report = check_manifest(manifest)
    assert report.examples == 2 and report.tasks == {"transcribe": 2}
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"{manifest}:2: ") and "gone.wav: no such file" in report.problems[0]
    assert 0.5 < report.audio_seconds == report.max_duration < 10

    assert main(["data", "check", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "2 examples" in out and "1 problem(s)" in out and "gone.wav" in out
    write(manifest, {"audio": "a.wav", "target": "你好"})
    assert main(["data", "check", str(manifest)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_data_check_counts_tokens(tmp_path, clip, tiny_official):
    from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint

    shutil.copy(clip, tmp_path / "a.wav")
    manifest = write(tmp_path / "m.jsonl", {"audio": "a.wav", "target": "你好"})
    tokenizer = load_checkpoint(str(tiny_official)).tokenizer
    report = check_manifest(manifest, tokenizer)
    assert report.mean_target_tokens == len(tokenizer.encode("你好<|im_end|>"))
    assert check_manifest(manifest, tokenizer, max_tokens=report.max_tokens - 1).problems


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed (apt-get install espeak-ng); .ci/run installs it")
def test_synthesis_makes_16khz_files_and_a_manifest(tmp_path):
    source = tmp_path / "pairs.tsv"
    source.write_text("Hurry up.\t快点。\tCC-BY\nI forgot.\t我忘了。\tCC-BY\nThank you.\t谢谢你。\tCC-BY\n", encoding="utf-8")
    out = tmp_path / "synth"
    assert main(["data", "synth", str(source), str(out), "--noise", "0.01", "--jobs", "2"]) == 0
    wavs = sorted((out / "wav").glob("*.wav"))
    assert len(wavs) == 3
    for wav in wavs:
        info = soundfile.info(str(wav))
        assert info.samplerate == 16000 and info.channels == 1 and 0.3 < info.duration < 5
    examples = read_manifest(out / "manifest.jsonl")
    assert [e.task for e in examples] == ["transcribe", "translate"] * 3
    assert [e.target for e in examples[::2]] == ["快点。", "我忘了。", "谢谢你。"]
    assert examples[1].target == "Hurry up." and examples[1].source_text == "快点。"
    assert check_manifest(out / "manifest.jsonl").ok
    # reproducible and resumable: a second run makes nothing and keeps the files
    before = [w.read_bytes() for w in wavs]
    from funasr_nano.training.synth import SynthConfig, read_sentences, synthesize

    result = synthesize(read_sentences(str(source)), str(out), SynthConfig(noise=0.01))
    assert (result.made, result.skipped) == (0, 3)
    wavs[0].unlink()
    assert synthesize(read_sentences(str(source)), str(out), SynthConfig(noise=0.01)).made == 1
    assert wavs[0].read_bytes() == before[0]


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    from funasr_nano.training import synth

    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(SynthesisError, match="apt-get install espeak-ng"):
        synth.synthesize([synth.Sentence("你好")], str(tmp_path))
