"""The whole pipeline on the llama.cpp engine: ``export_gguf`` writes a GGUF-layout folder, ``load_model``
picks llama.cpp for it, and transcription (the parity cases, both audio-length rules), batching, long audio,
streaming and unified translation give the transformers engine's tokens."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'funasr-nano[llama]')")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'funasr-nano[llama]')")

from funasr_nano import CheckpointError, DecodingOptions, InvalidOptionError, load_model  # noqa: E402
from funasr_nano.export.gguf_folder import export_gguf  # noqa: E402

from .conftest import shared_file  # noqa: E402
from .test_parity import CASES  # noqa: E402

OPTIONS = DecodingOptions(max_new_tokens=24, repetition_guard=False)


@pytest.fixture(scope="module", params=["low_frame_rate", "all_frames"])
def pair(request, tiny_official, tiny_official_all_frames, tmp_path_factory):
    """``(transformers model, llama.cpp model)`` of the same tiny checkpoint (f32 GGUF)."""
    source = tiny_official if request.param == "low_frame_rate" else tiny_official_all_frames
    folder = tmp_path_factory.mktemp(f"gguf-{request.param}")
    export_gguf(source, folder, "f32")
    # one thread: with all cores, a core busy elsewhere stalls ggml's thread barrier
    gguf = load_model(folder, n_threads=1)
    yield load_model(source), gguf
    gguf.close()


def test_the_folder_loads_on_llama_cpp(pair):
    reference, gguf = pair
    assert gguf.engine.name == "llama.cpp" and reference.engine.name == "transformers"
    assert gguf.family.use_low_frame_rate == reference.family.use_low_frame_rate
    assert gguf.tasks == reference.tasks


@pytest.mark.parametrize("case", list(CASES))
def test_parity_cases_give_the_transformers_tokens(pair, binhai, case):
    reference, gguf = pair
    expected = reference.transcribe(binhai, options=OPTIONS, **CASES[case])
    assert len(expected.tokens) > 5
    assert gguf.transcribe(binhai, options=OPTIONS, **CASES[case]) == expected


def test_batches_long_audio_and_streaming(pair, binhai):
    reference, gguf = pair
    clips = [binhai, shared_file("audio/zh_mid.wav"), shared_file("audio/zh_welcome.wav")]
    one_by_one = [gguf.transcribe(c, options=OPTIONS) for c in clips]
    assert list(gguf.transcribe_batch(clips, options=OPTIONS, batch_size=3)) == one_by_one
    assert one_by_one == [reference.transcribe(c, options=OPTIONS) for c in clips]
    # long audio: two recordings with a pause, cut by the VAD; streamed finals equal offline
    from funasr_nano.audio.io import load_audio

    samples = np.concatenate([load_audio(binhai), np.zeros(48000, np.float32), load_audio(clips[2])])
    offline = gguf.transcribe(samples, options=OPTIONS, vad=True)
    assert len(offline.segments) == 2 and offline == reference.transcribe(samples, options=OPTIONS, vad=True)
    session = gguf.stream(options=OPTIONS)
    finals = [e for start in range(0, samples.size, 11520) for e in session.feed(samples[start:start + 11520])]
    finals = [e.to_segment() for e in finals + session.finish() if e.final]
    assert finals == list(offline.segments)


def test_demo_model_translates_on_llama_cpp(tmp_path):
    reference = load_model(engine="transformers")
    export_gguf(None, tmp_path / "demo", "f32")
    gguf = load_model(tmp_path / "demo", n_threads=1)
    example = "examples/demo_zh.wav"
    assert gguf.transcribe(example).tokens == reference.transcribe(example).tokens
    assert gguf.translate(example, mode="unified").text == reference.translate(example, mode="unified").text
    assert gguf.run("text_translate", text="你好。").tokens == reference.run("text_translate", text="你好。").tokens


def test_engine_and_layout_mismatches_are_clear(tiny_official, tmp_path):
    with pytest.raises(InvalidOptionError, match="export gguf"):
        load_model(tiny_official, engine="llama.cpp")
    export_gguf(tiny_official, tmp_path / "q8", "q8_0")
    with pytest.raises(InvalidOptionError, match="llama.cpp engine"):
        load_model(tmp_path / "q8", engine="transformers")
    with pytest.raises(CheckpointError, match="not a LoRA adapter folder"):
        load_model(tmp_path / "q8", lora=tmp_path)
    with pytest.raises(InvalidOptionError, match="unknown GGUF type"):
        export_gguf(tiny_official, tmp_path / "x", "q9_9")
    (tmp_path / "q8" / "llm-q8_0.gguf").write_bytes(b"GGUF\x03\x00")  # truncated
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "q8")


def test_cli_export_and_engine(tiny_official, binhai, tmp_path):
    import json
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "funasr_nano.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=300)

    folder = tmp_path / "exported"
    proc = cli("export", "gguf", tiny_official, folder, "--type", "f32")
    assert proc.returncode == 0, proc.stderr
    assert (folder / "llm-f32.gguf").exists() and (folder / "audio.safetensors").exists()
    common = (binhai, "--max-new-tokens", "6", "--format", "json")
    on_llama = cli("transcribe", *common, "--model", folder, "--threads", "1")
    reference = cli("transcribe", *common, "--model", tiny_official)
    assert on_llama.returncode == reference.returncode == 0, on_llama.stderr
    assert json.loads(on_llama.stdout)["tokens"] == json.loads(reference.stdout)["tokens"]
    wrong = cli("transcribe", *common, "--model", tiny_official, "--engine", "llama.cpp")
    assert wrong.returncode == 2 and "funasr-nano export gguf" in wrong.stderr and "Traceback" not in wrong.stderr
    assert cli("export", "gguf", tiny_official, tmp_path / "bad", "--type", "q9").returncode == 2
