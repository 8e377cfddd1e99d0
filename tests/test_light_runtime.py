"""The light runtime: a GGUF-layout folder (``funasr-nano export gguf``) runs on onnxruntime (encoder +
adaptor, silero VAD) and llama.cpp (LLM) with `tokenizers` + jinja2, never importing torch or transformers;
its ONNX audio embeddings equal the torch encoder's on the real recordings.

The parity cases on the light runtime (llama.cpp fed from ONNX fp32 = the transformers engine's tokens) are
tests/test_llamacpp_pipeline.py: a GGUF-layout folder loads on the light runtime by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'funasr-nano[llama]')")

from funasr_nano import load_model  # noqa: E402
from funasr_nano.audio.io import load_audio  # noqa: E402
from funasr_nano.export.gguf_folder import export_gguf  # noqa: E402

from .conftest import ROOT, shared_file  # noqa: E402

RECORDINGS = ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")


@pytest.fixture(scope="module")
def demo_q8(tmp_path_factory):
    """The embedded demo model exported to a q8_0 GGUF folder (ONNX fp32 + int8 audio files)."""
    folder = tmp_path_factory.mktemp("light-demo") / "demo-q8"
    export_gguf(None, folder, "q8_0", n_threads=1)
    return folder


@pytest.fixture(scope="module")
def tiny_f32(tiny_official, tmp_path_factory):
    folder = tmp_path_factory.mktemp("light-tiny") / "tiny-f32"
    export_gguf(tiny_official, folder, "f32", n_threads=1)
    return folder


def _torch_family(source, dtype=None):
    from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
    from funasr_nano.models.fun_asr_nano.model import FunAsrNanoModel

    family = FunAsrNanoModel(load_checkpoint(os.fspath(source)))
    if dtype is not None:
        family.model.to(dtype)
    return family


def _float64_embeddings(family, wave):
    import torch

    features = family.features(wave)[None].double()
    inner = family.model.model
    mask = torch.ones(features.shape[:2], dtype=torch.bool)
    with torch.inference_mode():
        hidden = inner.audio_tower(input_features=features, input_features_mask=mask).last_hidden_state
        out = inner.multi_modal_projector(hidden, mask)[0].numpy()
    return out[: family.audio_positions(wave.size)]


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_onnx_fp32_embeddings_equal_torch_on_the_recordings(which, tiny_official, tiny_f32, demo_q8):
    """ONNX fp32 vs torch fp32 within 2e-4 max-abs (2e-5 of the largest value), and at least as close as
    torch fp32 to the exact (float64) embeddings: 1e-4 is float32's own noise floor here (torch fp32 is
    1.0e-4 from float64 on zh_binhai with the demo model, onnxruntime 4.8e-5; docs/light-runtime.md)."""
    import torch

    source, folder = (tiny_official, tiny_f32) if which == "tiny" else (ROOT / "funasr_nano" / "assets" / "demo", demo_q8)
    reference, exact = _torch_family(source), _torch_family(source, torch.float64)
    light = load_model(folder, n_threads=1)
    assert type(light.family).__name__ == "LightFunAsrNanoModel"
    for name in RECORDINGS:
        wave = load_audio(shared_file(f"audio/{name}.wav"))
        expected = reference.audio_embeddings(wave).numpy()
        got = light.audio_embeddings(wave)
        assert isinstance(got, np.ndarray) and got.shape == expected.shape
        error = np.abs(got - expected).max()
        assert error <= 2e-4 and error <= 2e-5 * np.abs(expected).max(), (name, error)
        truth = _float64_embeddings(exact, wave)
        assert np.abs(got - truth).max() <= 1.5 * np.abs(expected - truth).max() + 1e-6, name
    light.close()


def test_int8_encoder_is_close_and_runs(demo_q8):
    fp32 = load_model(demo_q8, n_threads=1)
    int8 = load_model(demo_q8, n_threads=1, encoder_precision="int8")
    assert os.path.basename(int8.family.encoder.file) == "audio-int8.onnx"
    wave = load_audio(ROOT / "examples" / "demo_zh.wav")
    a, b = fp32.audio_embeddings(wave), int8.audio_embeddings(wave)
    relative = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < relative < 0.2  # quantized, yet close (docs/light-runtime.md gives the measured error)
    assert int8.transcribe(wave).text == fp32.transcribe(wave).text  # the demo clip's transcript survives int8
    fp32.close()
    int8.close()


# Run in a fresh interpreter: everything a user of a GGUF folder does, then the modules it imported.
NO_TORCH_SCRIPT = textwrap.dedent("""
    import json, sys, threading
    import numpy as np
    import funasr_nano
    from funasr_nano.audio.io import load_audio

    folder, clip, other = sys.argv[1:4]
    model = funasr_nano.load_model(folder, n_threads=1)
    report = {"family": type(model.family).__name__, "engine": model.engine.name}
    report["text"] = model.transcribe(clip).text
    report["batch"] = [r.text for r in model.transcribe_batch([clip, other], batch_size=2)]
    wave = np.concatenate([load_audio(clip), np.zeros(48000, np.float32), load_audio(other)])
    long = model.transcribe(wave, vad=True)
    report["vad_segments"] = len(long.segments)
    session = model.stream()
    events = [e for b in range(0, wave.size, 8000) for e in session.feed(wave[b:b + 8000])] + session.finish()
    report["stream_finals"] = [e.text for e in events if e.final]
    report["offline_segments"] = [s.text for s in long.segments]
    report["translation"] = model.translate(clip, mode="unified").text

    import uvicorn, openai
    from funasr_nano.server import create_app
    import socket
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(model), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    import time
    while not server.started:
        time.sleep(0.02)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key="unused")
    with open(clip, "rb") as f:
        report["server_text"] = client.audio.transcriptions.create(model="funasr-nano", file=f).text
    server.should_exit = True
    thread.join(timeout=30)
    report["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})
    print(json.dumps(report, ensure_ascii=False))
""")


def test_a_gguf_folder_runs_without_torch_or_transformers(demo_q8):
    clip, other = ROOT / "examples" / "demo_zh.wav", shared_file("audio/zh_welcome.wav")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(demo_q8), str(clip), str(other)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == [], report["imported"]
    assert report["family"] == "LightFunAsrNanoModel" and report["engine"] == "llama.cpp"
    # what it computed is the light runtime's in this process too (and not empty)
    light = load_model(demo_q8, n_threads=1)
    assert report["text"] and report["text"] == light.transcribe(clip).text
    assert report["batch"][0] == report["text"]
    assert report["vad_segments"] == 2 and report["stream_finals"] == report["offline_segments"]
    assert report["translation"] and report["translation"] == light.translate(clip, mode="unified").text
    assert report["server_text"] == report["text"]
    light.close()


# Word timestamps, the CTC silence gate and hotwords_file on a GGUF folder with the CTC branch, in a fresh
# interpreter: then the modules it imported.
NO_TORCH_CTC_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import funasr_nano

    folder, clip, hotwords = sys.argv[1:4]
    model = funasr_nano.load_model(folder, n_threads=1)
    report = {"has_ctc": model.family.has_ctc}
    result = model.transcribe(clip, word_timestamps=True, max_new_tokens=16)
    report["text"] = result.text
    report["words"] = [[w.word, w.start, w.end] for s in result.segments for w in s.words]
    report["no_speech_prob"] = model.transcribe(clip, silence_gate=True, max_new_tokens=4).segments[0].no_speech_prob
    report["hotwords_text"] = model.transcribe(clip, hotwords_file=hotwords, max_new_tokens=4).text
    report["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})
    print(json.dumps(report, ensure_ascii=False))
""")


def test_word_timestamps_of_a_gguf_folder_with_ctc_run_without_torch(tmp_path_factory, tmp_path):
    from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

    source = write_tiny_checkpoint(str(tmp_path_factory.mktemp("ctc-source")), "official", TinyConfig(ctc=True), seed=5)
    folder = tmp_path / "ctc-gguf"
    export_gguf(source, folder, "f32", n_threads=1)
    clip = shared_file("audio/zh_binhai.wav")
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("滨海新区\n达摩院\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", NO_TORCH_CTC_SCRIPT, str(folder), str(clip), str(hotwords)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == [], report["imported"]
    assert report["has_ctc"] and report["words"] and report["no_speech_prob"] is not None
    # the words are the light runtime's in this process too (test_light_ctc.py: equal to the torch model's)
    light = load_model(folder, n_threads=1)
    expected = light.transcribe(clip, word_timestamps=True, max_new_tokens=16)
    assert report["text"] == expected.text
    assert report["words"] == [[w.word, w.start, w.end] for s in expected.segments for w in s.words]
    assert report["hotwords_text"] == light.transcribe(clip, hotwords_file=str(hotwords), max_new_tokens=4).text
    light.close()


BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"  # import -> ImportError


def _without_torch(code: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code, *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=ROOT)


def test_torch_only_requests_without_torch_name_the_extra(tiny_official, tmp_path):
    done = _without_torch(textwrap.dedent("""
        import sys
        import funasr_nano
        print(funasr_nano.load_model(n_threads=1).transcribe("examples/demo_zh.wav").text)  # the light demo
        for kwargs in ({"path": sys.argv[1]}, {"encoder_precision": "bf16"}):
            try:
                funasr_nano.load_model(**kwargs)
            except funasr_nano.FunASRNanoError as error:
                print(type(error).__name__, error)
        from funasr_nano.cli import main
        sys.exit(main(["export", "gguf", "demo", sys.argv[2]]))
    """), tiny_official, tmp_path / "out")
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0], done.stderr[-2000:]
    for line in lines[1:]:
        assert line.startswith("MissingDependencyError") and "pip install 'funasr-nano[torch]'" in line, line
    assert done.returncode != 0 and "funasr-nano[export]" in done.stderr
