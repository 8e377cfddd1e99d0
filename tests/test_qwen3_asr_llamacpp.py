"""Qwen3-ASR on the llama.cpp engine: ``export gguf`` writes a GGUF-layout folder (the thinker as GGUF,
the audio tower as ONNX and in torch), ``load_model`` picks llama.cpp for it (on the light runtime: the
ONNX tower, no torch), and the tokens on real recordings equal the transformers engine's (f32), for the
``qwen3vl`` form (four M-RoPE positions per audio embedding) and the plain ``qwen3`` form.

The ``qwen3vl`` case uses a checkpoint whose sections claim every rotary pair ([3, 3, 2] of 8): llama.cpp
rotates an unclaimed pair by its fourth position axis, which is 0 for tokens (and for audio as its
multimodal helper fills it) where transformers uses the position, so with the default tiny sections
[4, 2, 2] (pair 7 unclaimed, as pairs 61-62 of Qwen3-ASR's [24, 20, 20]) the qwen3vl logits differ slightly
(``test_thinker_gguf.py`` bounds it) and the random tiny model's near-ties can flip a token. The plain
``qwen3`` form has no such pair: exact for any sections."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'funasr-nano[llama]')")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'funasr-nano[llama]')")

from funasr_nano import CheckpointError, DecodingOptions, InvalidOptionError, load_model  # noqa: E402
from funasr_nano.export.thinker_gguf import export_gguf_folder  # noqa: E402

from .conftest import shared_file  # noqa: E402

OPTIONS = DecodingOptions(max_new_tokens=24, repetition_guard=False)
RECORDINGS = ("zh_binhai.wav", "zh_welcome.wav", "zh_mid.wav", "zh_long.wav")
CASES = {"plain": {}, "context": {"hotwords": ["滨海新区"]}, "language": {"language": "zh"}}


@pytest.fixture(scope="module")
def claimed_sections(tmp_path_factory):
    """The tiny checkpoint (same weights) with sections that claim all 8 rotary pairs."""
    from funasr_nano.testing.tiny_qwen3_asr import TinyQwen3AsrConfig, write_tiny_checkpoint

    path = tmp_path_factory.mktemp("qwen3-asr-332")
    return write_tiny_checkpoint(str(path), "official", TinyQwen3AsrConfig(mrope_section=(3, 3, 2)), seed=0)


@pytest.fixture(scope="module", params=["qwen3vl", "qwen3"])
def pair(request, tiny_qwen3_asr, claimed_sections, tmp_path_factory):
    """``(form, transformers model, llama.cpp model)`` of one checkpoint (f32 GGUF)."""
    source = claimed_sections if request.param == "qwen3vl" else tiny_qwen3_asr
    folder = tmp_path_factory.mktemp(f"qwen3-asr-{request.param}")
    export_gguf_folder(source, folder, "f32", arch=request.param)
    model = load_model(folder, n_threads=1)  # one thread: a core busy elsewhere stalls ggml's barrier
    yield request.param, load_model(source), model
    model.close()


@pytest.fixture
def gguf(pair):
    return pair[0], pair[2]


@pytest.fixture
def reference(pair):
    return pair[1]


def test_the_folder_loads_on_llama_cpp(gguf, reference):
    arch, model = gguf
    assert model.engine.name == "llama.cpp" and reference.engine.name == "transformers"
    assert type(model.family).__name__ == "LightQwen3AsrModel"
    assert model.engine.n_pos_per_embd == (4 if arch == "qwen3vl" else 1)
    assert model.family.stop_token_ids == reference.family.stop_token_ids


@pytest.mark.parametrize("case", list(CASES))
def test_recordings_give_the_transformers_tokens(gguf, reference, case):
    _, model = gguf
    for name in RECORDINGS:
        clip = shared_file(f"audio/{name}")
        expected = reference.transcribe(clip, options=OPTIONS, **CASES[case])
        assert len(expected.tokens) > 5
        assert model.transcribe(clip, options=OPTIONS, **CASES[case]) == expected, name


def test_batch_equals_one_by_one(gguf, reference):
    _, model = gguf
    clips = [shared_file(f"audio/{name}") for name in RECORDINGS]
    one_by_one = [model.transcribe(c, options=OPTIONS) for c in clips]
    assert list(model.transcribe_batch(clips, options=OPTIONS, batch_size=4)) == one_by_one


def test_engine_choice_and_a_folder_whose_sections_do_not_match(tiny_qwen3_asr, tmp_path):
    folder = tmp_path / "gguf"
    export_gguf_folder(tiny_qwen3_asr, folder, "f32")
    with pytest.raises(InvalidOptionError, match="use the llama.cpp engine"):
        load_model(folder, engine="transformers")
    with pytest.raises(InvalidOptionError, match="export gguf"):
        load_model(tiny_qwen3_asr, engine="llama.cpp")
    with pytest.raises(InvalidOptionError, match="vllm engine runs Fun-ASR-Nano models only"):
        load_model(tiny_qwen3_asr, engine="vllm")
    config = json.loads((folder / "config.json").read_text())
    config["mrope_section"] = [2, 4, 2]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"rope.dimension_sections \[4, 2, 2, 0\] differ"):
        load_model(folder)
    (folder / "llm-f32.gguf").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model(folder)
