"""Qwen3-ASR on the light runtime: the numpy log-mel equals transformers' feature extractor, the ONNX audio
tower (one attention window per call) equals the torch tower on the real recordings in both checkpoint
layouts, a GGUF-layout folder gives the transformers engine's tokens, and it runs without torch or
transformers in a fresh interpreter.

The llama.cpp parity cases of both GGUF forms (qwen3vl, qwen3) on the light runtime are
tests/test_qwen3_asr_llamacpp.py: an exported folder loads light by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'funasr-nano[llama]')")

from funasr_nano import CheckpointError, DecodingOptions, InvalidOptionError, load_model  # noqa: E402
from funasr_nano.audio.io import load_audio  # noqa: E402
from funasr_nano.export.thinker_gguf import export_gguf_folder  # noqa: E402
from funasr_nano.models.qwen3_asr.frontend import Frontend, LogMelFrontend, mel_filter_bank  # noqa: E402

from .conftest import ROOT, shared_file  # noqa: E402

RECORDINGS = ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")
OPTIONS = DecodingOptions(max_new_tokens=24, repetition_guard=False)
CASES = {"plain": {}, "context": {"hotwords": ["滨海新区"]}, "language": {"language": "zh"}}


def _waves() -> dict[str, np.ndarray]:
    """The recordings, their concatenation (19 s: three 8 s attention windows, the last partial) and cuts
    around the chunk (100 frames) and window (800 frames) edges."""
    waves = {name: load_audio(shared_file(f"audio/{name}.wav")) for name in RECORDINGS}
    joined = np.concatenate([waves["zh_binhai"], waves["zh_long"], waves["zh_mid"]])
    waves["joined"] = joined
    for frames in (99, 100, 101, 799, 800, 801, 1613):
        waves[f"cut{frames}"] = joined[: frames * 160 + 37]
    return waves


@pytest.fixture(scope="module")
def waves():
    return _waves()


@pytest.fixture(scope="module", params=["official", "hf"])
def exported(request, tiny_qwen3_asr, tiny_qwen3_asr_hf, tmp_path_factory):
    """``(source, GGUF folder)`` of the tiny checkpoint in each layout: an f32 thinker in the plain qwen3
    form, exact for any sections (the qwen3vl form with the tiny default sections leaves a rotary pair to
    llama.cpp's fourth axis, see tests/test_qwen3_asr_llamacpp.py, which runs that form light too)."""
    source = tiny_qwen3_asr if request.param == "official" else tiny_qwen3_asr_hf
    folder = tmp_path_factory.mktemp(f"qwen3-asr-light-{request.param}")
    export_gguf_folder(source, folder, "f32", arch="qwen3")
    return source, folder


def test_log_mel_equals_the_feature_extractor(waves):
    """Whisper's filters exactly; the features to float32 rounding of torch's STFT (measured 2.1e-5 at
    most, on values of about +-1)."""
    reference, light = Frontend(), LogMelFrontend()
    assert np.array_equal(mel_filter_bank(), reference._extractor.mel_filters)
    loud = 2.5 * waves["zh_mid"] / np.abs(waves["zh_mid"]).max()  # peak 2.5: divided by its peak first
    for name, wave in {**waves, "loud": loud, "short": waves["zh_mid"][:401]}.items():
        features, mask = reference(wave)
        frames = int(mask.sum())
        expected = features[0, :, :frames].numpy()
        got = light(wave)
        assert got.dtype == np.float32 and got.shape == expected.shape == (128, light.num_frames(wave.size)), name
        assert np.abs(got - expected).max() <= 5e-5, (name, np.abs(got - expected).max())


def test_onnx_tower_equals_torch_on_the_recordings(exported, waves):
    """ONNX fp32 vs the torch audio tower (windowed attention) within 1e-4 max-abs: on the same log-mel,
    and end to end (numpy log-mel + ONNX vs transformers' extractor + torch)."""
    source, folder = exported
    reference, light = load_model(source), load_model(folder, n_threads=1)
    assert type(light.family).__name__ == "LightQwen3AsrModel" and light.engine.name == "llama.cpp"
    assert light.family.window_frames == 800 and light.family.chunk_frames == 100
    for name, wave in waves.items():
        features, mask = reference.family.features(wave)
        expected = reference.family.encode(features, mask).numpy()
        same_features = light.family.encode(features[0, :, :int(mask.sum())].numpy())
        end_to_end = light.family.audio_embeddings(wave)
        assert isinstance(end_to_end, np.ndarray) and end_to_end.shape == expected.shape, name
        assert expected.shape[0] == light.family.audio_positions(wave.size)
        assert np.abs(same_features - expected).max() <= 1e-4, (name, np.abs(same_features - expected).max())
        assert np.abs(end_to_end - expected).max() <= 1e-4, (name, np.abs(end_to_end - expected).max())
    # the windows matter: attention across the whole 19 s clip (one window) gives other embeddings
    reference.family.encoder_attention = "full"
    across = reference.family.encode(*reference.family.features(waves["joined"])).numpy()
    assert np.abs(across - light.family.audio_embeddings(waves["joined"])).max() > 1e-2
    light.close()


def test_int8_tower_is_close_and_runs(exported, waves):
    _, folder = exported
    fp32, int8 = load_model(folder, n_threads=1), load_model(folder, n_threads=1, encoder_precision="int8")
    assert os.path.basename(int8.family.encoder.file) == "audio-int8.onnx"
    for name in ("zh_binhai", "joined"):
        a, b = fp32.audio_embeddings(waves[name]), int8.audio_embeddings(waves[name])
        relative = np.abs(a - b).max() / np.abs(a).max()
        assert 0 < relative < 0.2, (name, relative)  # quantized, yet close (docs/light-runtime.md: measured)
    assert int8.transcribe(waves["zh_mid"], options=OPTIONS).tokens
    fp32.close()
    int8.close()


@pytest.mark.parametrize("case", list(CASES))
def test_light_folder_gives_the_transformers_tokens(exported, case, waves):
    source, folder = exported
    reference, light = load_model(source), load_model(folder, n_threads=1)
    for name in (*RECORDINGS, "joined"):
        expected = reference.transcribe(waves[name], options=OPTIONS, **CASES[case])
        assert len(expected.tokens) > 5
        assert light.transcribe(waves[name], options=OPTIONS, **CASES[case]) == expected, name
    light.close()


def test_folder_without_onnx_keeps_the_torch_tower(tiny_qwen3_asr, tmp_path, waves):
    """An export without the ONNX files (or from before them) runs the torch tower, with the same tokens."""
    folder = tmp_path / "no-onnx"
    export_gguf_folder(tiny_qwen3_asr, folder, "f32", arch="qwen3", audio_onnx=False)
    assert not any(name.endswith(".onnx") for name in os.listdir(folder))
    torch_tower = load_model(folder, n_threads=1)
    assert type(torch_tower.family).__name__ == "Qwen3AsrModel" and torch_tower.engine.name == "llama.cpp"
    export_gguf_folder(tiny_qwen3_asr, folder, "f32", arch="qwen3")
    light = load_model(folder, n_threads=1)
    assert type(light.family).__name__ == "LightQwen3AsrModel"
    assert light.transcribe(waves["zh_welcome"], options=OPTIONS) == torch_tower.transcribe(waves["zh_welcome"],
                                                                                            options=OPTIONS)
    with pytest.raises(InvalidOptionError, match="use_low_frame_rate"):
        load_model(folder, use_low_frame_rate=True)
    torch_tower.close()
    light.close()


def test_the_onnx_window_rewrite_refuses_what_it_does_not_know(tmp_path, tiny_qwen3_asr):
    import onnx
    from onnx import TensorProto, helper

    from funasr_nano.export.onnx_audio_qwen3_asr import identity_single_splits

    def graph(outputs: int):
        sizes = helper.make_tensor("sizes", TensorProto.INT64, [outputs], [1] * outputs)
        node = helper.make_node("Split", ["x", "sizes"], [f"y{i}" for i in range(outputs)], axis=0)
        return helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [outputs])],
                                 [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1]) for i in range(outputs)],
                                 [sizes])

    with pytest.raises(CheckpointError, match="splits into 2 pieces"):
        identity_single_splits(graph(2), 1)
    with pytest.raises(CheckpointError, match="expected 3"):
        identity_single_splits(graph(1), 3)
    one = graph(1)
    assert identity_single_splits(one, 1) == 1
    assert [n.op_type for n in one.node] == ["Identity"] and not one.initializer
    onnx.checker.check_graph(one)


# Run in a fresh interpreter: what a user of a Qwen3-ASR GGUF folder does, then the modules it imported.
NO_TORCH_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time, socket
    import numpy as np
    import funasr_nano
    from funasr_nano.audio.io import load_audio

    folder, clip, other = sys.argv[1:4]
    options = funasr_nano.DecodingOptions(max_new_tokens=24, repetition_guard=False)
    model = funasr_nano.load_model(folder, n_threads=1)
    report = {"family": type(model.family).__name__, "engine": model.engine.name}
    result = model.transcribe(clip, options=options)
    report["tokens"], report["language"] = list(result.tokens), result.language
    report["batch"] = [list(r.tokens) for r in model.transcribe_batch([clip, other], batch_size=2, options=options)]
    wave = np.concatenate([load_audio(clip), np.zeros(48000, np.float32), load_audio(other)])
    report["vad_segments"] = len(model.transcribe(wave, vad=True, options=options).segments)
    session = model.stream(options=options)
    events = [e for b in range(0, wave.size, 8000) for e in session.feed(wave[b:b + 8000])] + session.finish()
    report["stream_finals"] = sum(1 for e in events if e.final)

    import uvicorn, openai
    from funasr_nano.server import create_app
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(model), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key="unused")
    with open(clip, "rb") as f:
        report["server_text"] = client.audio.transcriptions.create(model="qwen3-asr", file=f).text
    server.should_exit = True
    thread.join(timeout=30)
    report["text"] = model.transcribe(clip).text  # the server's options: the defaults
    report["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})
    print(json.dumps(report, ensure_ascii=False))
""")


def test_a_qwen3_asr_folder_runs_without_torch_or_transformers(exported, waves):
    source, folder = exported
    clip, other = shared_file("audio/zh_binhai.wav"), shared_file("audio/zh_welcome.wav")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(folder), str(clip), str(other)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == [], report["imported"]
    assert report["family"] == "LightQwen3AsrModel" and report["engine"] == "llama.cpp"
    # what it computed is the torch path's (transformers engine) tokens
    expected = load_model(source).transcribe(clip, options=OPTIONS)
    assert report["tokens"] == list(expected.tokens) and report["language"] == expected.language
    assert report["batch"][0] == report["tokens"]
    assert report["vad_segments"] == 2 and report["stream_finals"] >= 1
    assert report["server_text"] == report["text"]
