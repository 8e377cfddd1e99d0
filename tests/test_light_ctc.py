"""Fun-ASR-Nano's CTC branch on the light runtime: ``export gguf`` of a checkpoint with the branch writes
the CTC head as ONNX (fed by the audio graph's ``encoder_out``), and the GGUF folder then gives what the
torch model gives: the same CTC posteriors (within float32 rounding), the same words on the real
recordings, the silence gate, ``hotwords_file`` narrowing and the server's word timestamps; either
runtime runs the encoder once per segment. The no-torch check is tests/test_light_runtime.py."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from funasr_nano import load_model
from funasr_nano.audio.io import load_audio
from funasr_nano.errors import CheckpointError
from funasr_nano.export.gguf_folder import export_gguf
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

from .conftest import shared_file

RECORDINGS = ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")
STEPS = 16  # max_new_tokens: enough words to align, a few seconds per recording


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory) -> pathlib.Path:
    return pathlib.Path(write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-ctc")), "official",
                                              TinyConfig(ctc=True), seed=0))


@pytest.fixture(scope="module")
def ctc_folder(tiny_ctc, tmp_path_factory) -> pathlib.Path:
    """``funasr-nano export gguf`` of the CTC checkpoint, f32 LLM (llama.cpp = transformers' tokens)."""
    folder = tmp_path_factory.mktemp("light-ctc") / "tiny-ctc-f32"
    export_gguf(tiny_ctc, folder, "f32", n_threads=1)
    return folder


@pytest.fixture(scope="module")
def torch_ctc(tiny_ctc):
    return load_model(tiny_ctc)


@pytest.fixture(scope="module")
def light_ctc(ctc_folder):
    model = load_model(ctc_folder, n_threads=1)
    yield model
    model.close()


def _wave(name: str) -> np.ndarray:
    return load_audio(shared_file(f"audio/{name}.wav"))


def test_export_writes_and_records_the_ctc_head(tiny_ctc, ctc_folder, light_ctc):
    import onnxruntime

    config = json.loads((ctc_folder / "config.json").read_text(encoding="utf-8"))
    record = config["ctc"]
    assert record["onnx"] == {"fp32": "ctc.onnx", "int8": "ctc-int8.onnx"}
    assert record["tokenizer"] == "multilingual.tiktoken" and record["blank_id"] == record["vocab_size"] - 1
    for name in ("ctc.onnx", "ctc.onnx.data", "ctc-int8.onnx", "ctc-int8.onnx.data"):
        assert (ctc_folder / name).is_file(), name
    assert (ctc_folder / "multilingual.tiktoken").read_bytes() == (tiny_ctc / "multilingual.tiktoken").read_bytes()
    audio = onnxruntime.InferenceSession(str(ctc_folder / "audio.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in audio.get_outputs()] == ["embeddings", "encoder_out"]
    family = light_ctc.family
    assert type(family).__name__ == "LightFunAsrNanoModel" and family.has_ctc


def test_onnx_ctc_log_probs_equal_torch_fp32(torch_ctc, light_ctc):
    """ctc.onnx vs the torch CTC head (fp32), on the same encoder output: within 2e-5 max-abs (measured
    8e-6, log-posteriors down to -26); end to end (audio.onnx's encoder_out, then ctc.onnx) within 2e-5 of
    the largest |log-posterior| (measured 1.9e-4 = 7e-6 of it: the encoder's own float32 rounding, as
    tests/test_light_runtime.py bounds the embeddings)."""
    head = torch_ctc.family.checkpoint.ctc
    for name in RECORDINGS:
        wave = _wave(name)
        ours, reference = light_ctc.family.ctc_analysis(wave), torch_ctc.family.ctc_analysis(wave)
        expected = head.log_probs(reference.encoder_out).numpy()
        same_input = light_ctc.family.ctc.log_probs(reference.encoder_out.numpy())
        assert same_input.shape == expected.shape and same_input.dtype == np.float32
        assert np.abs(same_input - expected).max() < 2e-5, name
        end_to_end = light_ctc.family.ctc.log_probs(ours.encoder_out)
        assert np.abs(end_to_end - expected).max() < 2e-5 * np.abs(expected).max(), name
        assert ours.greedy_tokens == reference.greedy_tokens and ours.greedy_text == reference.greedy_text
        assert ours.no_speech_prob == pytest.approx(reference.no_speech_prob, abs=1e-5)
        np.testing.assert_allclose(ours.audio_embeddings, reference.audio_embeddings.numpy(), atol=2e-4)


# Texts to align besides the tiny LLM's own output (random bytes, often one "word"): Chinese (a word per
# character) and English (words cut at spaces, punctuation attached), so that many word boundaries are compared.
TEXTS = ("我想问，滨海新区有房吗？欢迎来到杭州。", "hello world, the model is here.")


@pytest.mark.parametrize("name", RECORDINGS)
def test_light_words_equal_the_torch_paths(torch_ctc, light_ctc, name):
    wave = _wave(name)
    reference = torch_ctc.transcribe(wave, word_timestamps=True, max_new_tokens=STEPS)
    ours = light_ctc.transcribe(wave, word_timestamps=True, max_new_tokens=STEPS)
    assert ours.text == reference.text and ours.text
    (segment,), (expected,) = ours.segments, reference.segments
    assert segment.words, "no words"
    assert [(w.word, w.start, w.end) for w in segment.words] == [(w.word, w.start, w.end) for w in expected.words]
    assert [w.probability for w in segment.words] == pytest.approx([w.probability for w in expected.words], abs=2e-3)
    assert "".join(w.word for w in segment.words) == segment.text
    light_analysis, torch_analysis = light_ctc.family.ctc_analysis(wave), torch_ctc.family.ctc_analysis(wave)
    for text in TEXTS:
        got = light_ctc.family.align_words(light_analysis, text, offset=1.5)
        want = torch_ctc.family.align_words(torch_analysis, text, offset=1.5)
        assert len(got) >= 5 and len({w.start for w in got}) >= 5  # many words, at different times
        assert [(w.word, w.start, w.end) for w in got] == [(w.word, w.start, w.end) for w in want], text
        assert [w.probability for w in got] == pytest.approx([w.probability for w in want], abs=2e-3)


def test_int8_ctc_head_gives_words(ctc_folder, torch_ctc):
    int8 = load_model(ctc_folder, n_threads=1, encoder_precision="int8")
    assert int8.family.ctc.graph.file.endswith("ctc-int8.onnx")
    wave = _wave("zh_binhai")
    segment = int8.transcribe(wave, word_timestamps=True, max_new_tokens=STEPS).segments[0]
    assert segment.words and "".join(w.word for w in segment.words) == segment.text
    starts = [w.start for w in segment.words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in segment.words)
    got = int8.family.ctc_analysis(wave)
    expected = torch_ctc.family.ctc_analysis(wave)
    assert np.abs(got.blank_prob - expected.blank_prob).max() < 0.1  # quantized, yet close
    int8.close()


@pytest.fixture(scope="module")
def deaf_folder(tmp_path_factory):
    """A CTC checkpoint whose head always says blank (its blank bias raised, as tests/test_confidence.py's
    deaf head), exported to a GGUF folder: the gate's case on the light runtime."""
    path = write_tiny_checkpoint(str(tmp_path_factory.mktemp("deaf")), "official", TinyConfig(ctc=True), seed=2)
    checkpoint = torch.load(f"{path}/model.pt", weights_only=True)
    checkpoint["state_dict"]["ctc.ctc_lo.bias"][-1] = 100.0
    torch.save(checkpoint, f"{path}/model.pt")
    folder = tmp_path_factory.mktemp("deaf-gguf") / "gguf"
    export_gguf(path, folder, "f32", n_threads=1)
    model = load_model(folder, n_threads=1)
    yield model
    model.close()


def _silence(seconds=30.0):
    return np.zeros(int(seconds * 16000), np.float32)


def _noise(seconds=30.0, seed=0):
    """White noise at about -20 dBFS."""
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_the_light_silence_gate_gives_no_text_for_silence_and_noise(deaf_folder, light_ctc, torch_ctc, kind):
    audio = _silence() if kind == "silence" else _noise()
    assert deaf_folder.transcribe(audio, vad=True).text == ""  # the VAD finds no speech
    gated = deaf_folder.transcribe(audio, silence_gate=True, max_new_tokens=8)  # decoded whole, gated by ctc.onnx
    assert gated.text == "" and gated.segments == ()
    assert deaf_folder.transcribe(audio, max_new_tokens=8).text != ""  # ungated: the LLM writes into it
    # it is the CTC head that gates (silero would keep speech): on by default for VAD segments
    assert deaf_folder.transcribe(_wave("zh_binhai"), vad=True, max_new_tokens=8).segments == ()
    # a head that hears tokens keeps speech; its no_speech_prob is the torch model's
    wave = _wave("zh_binhai")
    speech = light_ctc.transcribe(wave, silence_gate=True, max_new_tokens=8)
    assert speech.text != "" and speech.segments[0].no_speech_prob < 0.5
    for clip in (audio, wave):
        assert light_ctc.family.ctc_analysis(clip).no_speech_prob == pytest.approx(
            torch_ctc.family.ctc_analysis(clip).no_speech_prob, abs=1e-5)


def test_hotwords_file_is_narrowed_on_the_light_runtime(light_ctc, torch_ctc, tmp_path, monkeypatch):
    wave = _wave("zh_binhai")
    heard = light_ctc.family.ctc_analysis(wave).greedy_text
    planted = "".join(c for c in heard if "\u4e00" <= c <= "\u9fff")[:2]
    assert len(planted) == 2, heard
    path = tmp_path / "hotwords.txt"
    path.write_text("\n".join(["达摩院", "通义实验室", "杭州西湖", planted]), encoding="utf-8")
    results = {}
    for name, model in (("light", light_ctc), ("torch", torch_ctc)):
        seen = []
        original = model.family.transcription_prompt

        def spy(language, hotwords, itn, seen=seen, original=original):
            seen.append(tuple(hotwords))
            return original(language, hotwords, itn)

        monkeypatch.setattr(model.family, "transcription_prompt", spy)
        results[name] = model.transcribe(wave, hotwords_file=str(path), max_new_tokens=8)
        assert any(planted in hotwords for hotwords in seen), (name, seen)
        results[name + "_seen"] = seen
    assert results["light_seen"] == results["torch_seen"] and results["light"].text == results["torch"].text


def test_server_word_timestamps_on_a_gguf_folder(light_ctc):
    openai = pytest.importorskip("openai")
    from funasr_nano.server import ServerOptions

    from .server_util import running_server

    clip = shared_file("audio/zh_binhai.wav")
    expected = light_ctc.transcribe(clip, word_timestamps=True, max_new_tokens=STEPS)
    words = [(w.word.strip(), w.start, w.end) for s in expected.segments for w in s.words if w.word.strip()]
    assert words
    with running_server(light_ctc, ServerOptions()) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        verbose = client.audio.transcriptions.create(file=clip, model="m", response_format="verbose_json",
                                                     timestamp_granularities=["word"],
                                                     extra_body={"max_new_tokens": STEPS})
    assert verbose.text == expected.text
    assert [(w.word, w.start, w.end) for w in verbose.words] == words


def _count_calls(monkeypatch, obj, name):
    calls = []
    original = getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


@pytest.mark.parametrize("runtime", ["torch", "light"])
def test_the_encoder_runs_once_per_segment(torch_ctc, light_ctc, runtime, monkeypatch):
    """Word timestamps (CTC head) and decoding (adaptor) share one encoder pass per segment; without the
    CTC head's work the plain path runs it once too."""
    model = torch_ctc if runtime == "torch" else light_ctc
    if runtime == "torch":
        calls = []
        hook = model.family.model.model.audio_tower.register_forward_hook(lambda *_: calls.append(1))
    else:
        calls = _count_calls(monkeypatch, model.family.encoder, "run")
    try:
        first, second = _wave("zh_binhai"), _wave("zh_welcome")
        model.transcribe(first, word_timestamps=True, max_new_tokens=4)
        assert len(calls) == 1
        long = np.concatenate([first, np.zeros(3 * 16000, np.float32), second])  # two VAD segments
        result = model.transcribe(long, vad=True, word_timestamps=True, max_new_tokens=4, silence_gate=False)
        assert len(result.segments) == 2 and len(calls) == 3
        model.transcribe(first, max_new_tokens=4)  # no CTC work: the adaptor's pass only
        assert len(calls) == 4
    finally:
        if runtime == "torch":
            hook.remove()


def _op_types(file) -> list[str]:
    import onnx

    return [node.op_type for node in onnx.load(str(file), load_external_data=False).graph.node]


def test_a_folder_without_ctc_is_unchanged_and_refused_clearly(tiny_official, ctc_folder, tmp_path):
    import shutil

    import onnxruntime

    folder = tmp_path / "plain"
    shutil.copytree(ctc_folder, folder)  # an earlier export with the CTC head: its files must not outlive it
    export_gguf(tiny_official, folder, "f32", n_threads=1)
    assert "ctc" not in json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert not list(folder.glob("ctc*")) and not (folder / "multilingual.tiktoken").exists()
    audio = onnxruntime.InferenceSession(str(folder / "audio.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in audio.get_outputs()] == ["embeddings"]
    # the CTC folder's audio graph computes the same operations; encoder_out only names one of its tensors
    # (onnxruntime runs every node whatever is asked for, so this is what keeps the plain path as fast)
    assert _op_types(folder / "audio.onnx") == _op_types(ctc_folder / "audio.onnx")
    light = load_model(folder, n_threads=1)
    assert type(light.family).__name__ == "LightFunAsrNanoModel" and not light.family.has_ctc
    with pytest.raises(CheckpointError, match=r"CTC branch \(ctc_decoder"):
        light.transcribe(shared_file("audio/zh_binhai.wav"), word_timestamps=True)
    light.close()


def test_a_ctc_record_without_its_files_is_refused(ctc_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ctc_folder, broken)
    (broken / "ctc.onnx").unlink()
    with pytest.raises(CheckpointError, match="no ONNX file for encoder_precision='fp32'"):
        load_model(broken, n_threads=1)
    shutil.copyfile(ctc_folder / "ctc.onnx", broken / "ctc.onnx")
    (broken / "multilingual.tiktoken").unlink()
    with pytest.raises(CheckpointError, match="multilingual.tiktoken"):
        load_model(broken, n_threads=1)
