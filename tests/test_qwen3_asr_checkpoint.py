"""Qwen3-ASR checkpoints: the tiny writer's two layouts load into the same transformers model; the
official key map checks shapes and refuses missing tensors and leftovers."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from funasr_nano.errors import CheckpointError
from funasr_nano.models.qwen3_asr.checkpoint import load_checkpoint
from funasr_nano.models.registry import family_for


def test_both_layouts_load_the_same_weights(tiny_qwen3_asr, tiny_qwen3_asr_hf):
    official, hf = load_checkpoint(tiny_qwen3_asr), load_checkpoint(tiny_qwen3_asr_hf)
    assert (official.layout, hf.layout) == ("official", "hf")
    a, b = official.model.state_dict(), hf.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert official.mrope_section == (4, 2, 2) and hf.mrope_section is None
    # tied output layer, as Qwen3-ASR-0.6B
    assert official.model.lm_head.weight.data_ptr() == official.model.model.language_model.embed_tokens.weight.data_ptr()
    for loaded in (official, hf):
        tokenizer = loaded.tokenizer
        assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<|audio_pad|>", "<asr_text>"]) == [
            151643, 151645, 151676, 151704]
        assert loaded.model.config.audio_token_id == 151676
        assert "<|audio_pad|>" in loaded.chat_template
    assert family_for(tiny_qwen3_asr).name == family_for(tiny_qwen3_asr_hf).name == "qwen3-asr"


def test_official_file_stores_the_tied_output_layer_as_a_copy(tiny_qwen3_asr):
    tensors = load_file(str(tiny_qwen3_asr / "model.safetensors"))
    assert torch.equal(tensors["thinker.lm_head.weight"], tensors["thinker.model.embed_tokens.weight"])
    assert "thinker.audio_tower.proj1.weight" in tensors and "thinker.audio_tower.proj2.bias" in tensors
    assert all(key.startswith("thinker.") for key in tensors)


def _edit_copy(source, target, edit):
    shutil.copytree(source, target)
    tensors = load_file(str(target / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(target / "model.safetensors"))
    return target


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("thinker.model.norm.weight"), "missing: model.language_model.norm.weight"),
    (lambda t: t.update({"talker.codec_head.weight": torch.zeros(2, 2)}), "unexpected: talker.codec_head.weight"),
    (lambda t: t.update({"thinker.audio_tower.proj2.bias": torch.zeros(7)}), "shape mismatch: thinker.audio_tower.proj2.bias"),
])
def test_key_map_refuses_bad_tensors(tiny_qwen3_asr, tmp_path, edit, message):
    folder = _edit_copy(tiny_qwen3_asr, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError, match=message.replace(".", r"\.")):
        load_checkpoint(folder)


def test_bad_configs_are_checkpoint_errors(tiny_qwen3_asr, tmp_path):
    folder = tmp_path / "aligner"
    shutil.copytree(tiny_qwen3_asr, folder)
    config = json.loads((folder / "config.json").read_text())
    config["thinker_config"]["classify_num"] = 5000
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="forced aligner"):
        load_checkpoint(folder)
    config["thinker_config"].pop("classify_num")
    config["thinker_config"]["text_config"]["rope_scaling"]["mrope_section"] = [8, 8, 8]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="head_dim/2"):
        load_checkpoint(folder)
