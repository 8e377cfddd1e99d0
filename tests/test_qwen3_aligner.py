"""Qwen3-ForcedAligner without the reference: loading and its errors, words that join back to the text with
punctuation attached, monotonic in-bounds times, the 180 s bound, and Qwen3-ASR's word timestamps through
the aligner (Python API, CLI)."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from funasr_nano import load_model
from funasr_nano.audio.io import load_audio
from funasr_nano.cli.main import main
from funasr_nano.errors import AudioTooLongError, CheckpointError, InvalidOptionError
from funasr_nano.models.qwen3_asr.aligner import AlignedUnit, ForcedAligner, words_from_units
from funasr_nano.models.qwen3_asr.aligner_checkpoint import load_aligner
from funasr_nano.testing.tiny_qwen3_aligner import TinyAlignerConfig, write_tiny_aligner

from .conftest import shared_file

TEXT = "我想问，我在“滨海新区”有房。"


@pytest.fixture(scope="module")
def aligner_folder(tmp_path_factory):
    return write_tiny_aligner(str(tmp_path_factory.mktemp("tiny-aligner")), "official", seed=0)


@pytest.fixture(scope="module")
def aligner(aligner_folder):
    return ForcedAligner(load_aligner(aligner_folder))


@pytest.fixture(scope="module")
def qwen3_asr_with_aligner(tiny_qwen3_asr, aligner_folder):
    return load_model(tiny_qwen3_asr, aligner=aligner_folder)


def unit(text, start, end):
    return AlignedUnit(text, start, end, 0.5)


def test_words_keep_the_text_around_their_units():
    text = "“Hello,” she said: it's an e-mail (test)… 你好，世界。"
    units = [unit("Hello", 0, 1), unit("she", 1, 2), unit("said", 2, 3), unit("it's", 3, 4), unit("an", 4, 5),
             unit("email", 5, 6), unit("test", 6, 7), unit("你", 7, 8), unit("好", 8, 9), unit("世", 9, 10),
             unit("界", 10, 11)]
    words = words_from_units(text, units, offset=1.5)
    assert [w.word for w in words] == ["“Hello,”", " she", " said:", " it's", " an", " e-mail", " (test)…", " 你",
                                       "好，", "世", "界。"]
    assert "".join(w.word for w in words) == text
    assert [(w.start, w.end) for w in words[:2]] == [(1.5, 2.5), (2.5, 3.5)]
    assert words[0].probability == 0.5


def test_times_are_capped_at_the_end_of_the_audio():
    words = words_from_units("a b", [unit("a", 0.4, 3.0), unit("b", 3.5, 400.0)], duration=3.2)
    assert [(w.start, w.end) for w in words] == [(0.4, 3.0), (3.2, 3.2)]


def test_words_of_a_real_recording_are_monotonic_and_inside_the_audio(tmp_path):
    """A classifier of the released 5000 bins (400 s): a random network's bins fall past the 6 s recording,
    and the words' times are capped there."""
    config = dataclasses.replace(TinyAlignerConfig(), classify_num=5000)
    folder = write_tiny_aligner(str(tmp_path / "a"), "official", config)
    aligner = ForcedAligner(load_aligner(folder))
    units = aligner.align_units(load_audio(shared_file("audio/zh_binhai.wav")), TEXT, "zh")
    assert max(u.end for u in units) > 6.0  # what the reference would report
    words = aligner.align(shared_file("audio/zh_binhai.wav"), TEXT, "zh", offset=10.0)
    assert "".join(w.word for w in words) == TEXT
    times = [t for w in words for t in (w.start, w.end)]
    assert times == sorted(times)
    assert all(10.0 <= t <= 16.0 for t in times)
    assert all(0.0 <= w.probability <= 1.0 for w in words)


def test_text_without_letters_has_no_words(aligner):
    assert aligner.align(shared_file("audio/zh_binhai.wav"), "。，！", "zh") == []


def test_more_than_180_seconds_is_refused(aligner):
    with pytest.raises(AudioTooLongError, match="at most 180 s"):
        aligner.align_units(np.zeros(16000 * 181, np.float32), "a b", None)


def test_missing_folder_and_files_are_named(tmp_path, aligner_folder, tiny_qwen3_asr):
    with pytest.raises(CheckpointError, match="no-such-dir: no such folder"):
        load_aligner(tmp_path / "no-such-dir")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"empty/config\.json: no such file"):
        load_aligner(empty)
    with pytest.raises(CheckpointError, match=r"config\.json: no thinker_config\.classify_num: this is a Qwen3-ASR"):
        load_aligner(tiny_qwen3_asr)
    no_weights = tmp_path / "no-weights"
    shutil.copytree(aligner_folder, no_weights)
    os.remove(no_weights / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors weights \(model\.safetensors\)"):
        load_aligner(no_weights)


def test_wrong_tensors_and_configs_are_named(tmp_path, aligner_folder):
    broken = tmp_path / "broken"
    shutil.copytree(aligner_folder, broken)
    tensors = load_file(broken / "model.safetensors")
    head = tensors.pop("thinker.lm_head.weight")
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing: score\.weight"):
        load_aligner(broken)
    tensors["thinker.lm_head.weight"] = head[:-1]
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatch: thinker\.lm_head\.weight -> score\.weight"):
        load_aligner(broken)
    config = json.loads((broken / "config.json").read_text())
    config["thinker_config"]["model_type"] = "qwen3_asr_thinker"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="thinker_config.model_type is 'qwen3_asr_thinker'"):
        load_aligner(broken)


def test_qwen3_asr_word_timestamps_come_from_the_aligner(qwen3_asr_with_aligner, tiny_qwen3_asr):
    model = qwen3_asr_with_aligner
    result = model.transcribe(shared_file("audio/zh_welcome.wav"), word_timestamps=True, max_new_tokens=24)
    segment = result.segments[0]
    assert segment.words and "".join(w.word for w in segment.words) == segment.text
    times = [t for w in segment.words for t in (w.start, w.end)]
    assert times == sorted(times) and segment.start <= times[0] and times[-1] <= segment.end
    assert model.transcribe(shared_file("audio/zh_welcome.wav"), max_new_tokens=4).segments[0].words is None
    # VAD segments: each segment's words inside it (times from the start of the input)
    audio = np.concatenate([np.zeros(3 * 16000, np.float32), load_audio(shared_file("audio/zh_binhai.wav"))])
    late = model.transcribe(audio, vad=True, word_timestamps=True, max_new_tokens=12)
    assert late.segments and late.segments[0].start > 2.0
    assert all(segment.words for segment in late.segments)
    for segment in late.segments:
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
    with pytest.raises(InvalidOptionError, match="at most 180 s"):
        model.transcribe(shared_file("audio/zh_welcome.wav"), word_timestamps=True, vad=False, max_duration=200)
    without = load_model(tiny_qwen3_asr)
    with pytest.raises(CheckpointError, match=r"Qwen3-ForcedAligner, a separate model.*--aligner DIR"):
        without.transcribe(shared_file("audio/zh_welcome.wav"), word_timestamps=True)


def test_the_aligner_is_for_qwen3_asr_only(tiny_official, aligner_folder):
    with pytest.raises(InvalidOptionError, match="Qwen3-ForcedAligner times the words of Qwen3-ASR models"):
        load_model(tiny_official, aligner=aligner_folder)


def test_a_wrong_aligner_folder_fails_at_load(tiny_qwen3_asr, tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json: no such file"):
        load_model(tiny_qwen3_asr, aligner=tmp_path)


def test_cli_transcribe_with_aligner_writes_words(tiny_qwen3_asr, aligner_folder, capsys):
    audio = str(shared_file("audio/zh_binhai.wav"))
    assert main(["transcribe", audio, "--model", str(tiny_qwen3_asr), "--aligner", aligner_folder,
                 "--word-timestamps", "--max-new-tokens", "8", "--format", "json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    words = out["segments"][0]["words"]
    assert words and "".join(w["word"] for w in words) == out["segments"][0]["text"]


def test_cli_align_a_known_transcript(tmp_path, capsys):
    folder = tmp_path / "aligner"
    assert main(["tiny", str(folder), "--family", "qwen3-forced-aligner"]) == 0
    capsys.readouterr()
    audio = str(shared_file("audio/zh_binhai.wav"))
    assert main(["align", audio, "--text", TEXT, "--aligner", str(folder), "--language", "zh"]) == 0
    words = json.loads(capsys.readouterr().out)
    expected = ForcedAligner(load_aligner(folder)).align(audio, TEXT, "zh")
    assert words == [dataclasses.asdict(w) for w in expected] and "".join(w["word"] for w in words) == TEXT
    assert main(["align", audio, "--text", TEXT, "--aligner", str(folder), "--format", "tsv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "start\tend\tword" and lines[3] == f"{round(expected[2].start * 1000)}\t" \
        f"{round(expected[2].end * 1000)}\t问，"
    assert main(["align", audio, "--text", "。", "--aligner", str(folder)]) == 2
    assert "no letters or digits" in capsys.readouterr().err
    assert main(["align", audio, "--text", TEXT, "--aligner", str(tmp_path / "none")]) == 2
    assert "none: no such folder" in capsys.readouterr().err


def test_server_word_granularity_through_the_aligner(qwen3_asr_with_aligner, tiny_qwen3_asr, binhai):
    """OpenAI's ``words`` array from Qwen3-ForcedAligner (``funasr-nano serve --aligner DIR``), through the
    official openai client; Qwen3-ASR served without an aligner answers 400 naming it."""
    import openai

    from funasr_nano.server import ServerOptions

    from .server_util import running_server

    expected = qwen3_asr_with_aligner.transcribe(binhai, word_timestamps=True, max_new_tokens=8)
    words = [(w.word.strip(), round(w.start, 3), round(w.end, 3)) for s in expected.segments for w in s.words]
    assert words
    with running_server(qwen3_asr_with_aligner, ServerOptions()) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        verbose = client.audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                                     timestamp_granularities=["word"],
                                                     extra_body={"max_new_tokens": 8})
        assert verbose.text == expected.text
        assert [(w.word, w.start, w.end) for w in verbose.words] == words
    with running_server(load_model(tiny_qwen3_asr), ServerOptions()) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        with pytest.raises(openai.BadRequestError) as error:
            client.audio.transcriptions.create(file=binhai, model="m", response_format="verbose_json",
                                               timestamp_granularities=["word"])
    assert "Qwen3-ForcedAligner" in error.value.body["message"]


def test_a_gguf_folder_with_an_aligner_loads_the_aligner(tiny_qwen3_asr, aligner_folder, tmp_path):
    """The light runtime has no forced aligner: with aligner= a GGUF-layout folder runs its torch audio tower
    beside llama.cpp, and the aligner is loaded (it used to be dropped on the light path)."""
    from funasr_nano.export.thinker_gguf import export_gguf_folder
    from funasr_nano.models.qwen3_asr.light import LightQwen3AsrModel
    from funasr_nano.models.qwen3_asr.model import Qwen3AsrModel

    folder = tmp_path / "gguf"
    export_gguf_folder(tiny_qwen3_asr, folder, "f32")
    assert type(load_model(folder).family) is LightQwen3AsrModel
    model = load_model(folder, aligner=aligner_folder)
    assert type(model.family) is Qwen3AsrModel and model.family.aligner is not None
    assert model.engine.name == "llama.cpp"
    model.close()
