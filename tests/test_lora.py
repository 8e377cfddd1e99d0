"""LoRA at inference: an adapter changes the output, merging it gives a standalone checkpoint with the
same tokens, W' = W + (alpha / r) B A exactly, and adapters switch by task."""

from __future__ import annotations

import pytest
import torch

from funasr_nano import CheckpointError, DecodingOptions, load_model
from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
from funasr_nano.cli.main import main
from funasr_nano.export.merge import merge_checkpoint
from funasr_nano.models.lora import LoraSettings, add_lora, lora_layers, save_adapter
from funasr_nano.testing.tiny import write_tiny_checkpoint

from .training_data import make_corpus, one_thread  # noqa: F401 - autouse fixture

OPTIONS = DecodingOptions(max_new_tokens=24, repetition_guard=False)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    manifest = make_corpus(tmp_path_factory.mktemp("lora-audio"), 2)
    return [str(manifest.parent / "wav" / f"{i:06d}.wav") for i in range(2)]


@pytest.fixture(scope="module", params=["official", "hf"])
def base_and_adapter(request, tmp_path_factory):
    """A tiny base checkpoint and a LoRA adapter with random (non-zero) A and B."""
    folder = tmp_path_factory.mktemp(f"lora-{request.param}")
    base = write_tiny_checkpoint(str(folder / "base"), request.param, seed=5)
    model = load_checkpoint(base).model
    add_lora(model, LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=("q_proj", "o_proj", "down_proj")))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in lora_layers(model.model.language_model):
            for weight in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                weight.copy_(0.3 * torch.randn(weight.shape, generator=generator))
    return base, save_adapter(model, str(folder / "adapter"))


def test_merged_checkpoint_gives_the_adapter_tokens(base_and_adapter, audio, tmp_path):
    base, adapter = base_and_adapter
    plain = load_model(base)
    with_adapter = load_model(base, lora=adapter)
    merged_dir = merge_checkpoint(base, adapter, str(tmp_path / "merged"))
    merged = load_model(merged_dir)
    for clip in audio:
        expected = with_adapter.transcribe(clip, options=OPTIONS).tokens
        assert len(expected) > 5
        assert expected != plain.transcribe(clip, options=OPTIONS).tokens, "the adapter should change the output"
        assert merged.transcribe(clip, options=OPTIONS).tokens == expected


def test_merge_formula(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    assert main(["lora", "merge", base, adapter, str(tmp_path / "merged")]) == 0
    before = load_checkpoint(base).model.model.language_model.layers[1].self_attn.q_proj.weight
    after = load_checkpoint(str(tmp_path / "merged")).model.model.language_model.layers[1].self_attn.q_proj.weight
    from safetensors.torch import load_file

    stored = load_file(f"{adapter}/adapter_model.safetensors")
    a = stored["base_model.model.layers.1.self_attn.q_proj.lora_A.weight"]
    b = stored["base_model.model.layers.1.self_attn.q_proj.lora_B.weight"]
    torch.testing.assert_close(after, before + (8 / 4) * b @ a, rtol=0, atol=1e-6)
    untouched = "k_proj"  # not a target module: unchanged
    assert torch.equal(load_checkpoint(str(tmp_path / "merged")).model.model.language_model.layers[0].self_attn.k_proj.weight,
                       load_checkpoint(base).model.model.language_model.layers[0].self_attn.k_proj.weight), untouched


def test_adapters_switch_by_task(base_and_adapter, audio):
    base, adapter = base_and_adapter
    plain = load_model(base)
    everywhere = load_model(base, lora=adapter)
    translate_only = load_model(base, lora={"translate": adapter})
    clip = audio[0]
    assert translate_only.transcribe(clip, options=OPTIONS).tokens == plain.transcribe(clip, options=OPTIONS).tokens
    assert (translate_only.run("translate", clip, options=OPTIONS).tokens
            == everywhere.run("translate", clip, options=OPTIONS).tokens
            != plain.run("translate", clip, options=OPTIONS).tokens)
    # and back: the switch is per call, not sticky
    assert translate_only.transcribe(clip, options=OPTIONS).tokens == plain.transcribe(clip, options=OPTIONS).tokens
    text = translate_only.run("text_translate", text="你好", options=OPTIONS)
    assert text.duration == 0.0 and text.segments == ()


def test_bad_adapter_folder(base_and_adapter, tmp_path):
    base, _ = base_and_adapter
    with pytest.raises(CheckpointError, match="not a LoRA adapter folder"):
        load_model(base, lora=tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        load_model(base, lora={"summarize": base_and_adapter[1]})
