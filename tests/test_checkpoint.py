import json
import shutil

import pytest
import torch

from funasr_nano import CheckpointError, load_model
from funasr_nano.models.fun_asr_nano.checkpoint import detect_layout, hf_to_official_state_dict, load_checkpoint


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_state_dict(path, edit):
    checkpoint = torch.load(path / "model.pt", weights_only=True)
    edit(checkpoint["state_dict"])
    torch.save(checkpoint, path / "model.pt")


def test_layouts_are_detected(tiny_official, tiny_hf, tmp_path):
    assert detect_layout(str(tiny_official)) == "official"
    assert detect_layout(str(tiny_hf)) == "hf"
    with pytest.raises(CheckpointError, match="not a Fun-ASR-Nano checkpoint"):
        detect_layout(str(tmp_path))
    with pytest.raises(CheckpointError, match="not a folder"):
        load_model(tmp_path / "nope")


def test_official_config_is_carried_over(tiny_official):
    loaded = load_checkpoint(str(tiny_official))
    config = loaded.model.config
    assert config.adaptor_config.layer_norm_eps == 1e-12  # funasr transformer LayerNorm
    assert config.audio_config.layer_norm_eps == 1e-5
    assert config.audio_config.num_hidden_layers == 6 and config.audio_config.num_timestamp_prediction_layers == 2
    assert loaded.use_low_frame_rate is True and loaded.frontend.lfr_m == 7 and loaded.frontend.lfr_n == 6


def test_every_official_tensor_is_used_and_the_official_loader_agrees(tiny_official):
    """The writer's key map round-trips, and funasr loads our model.pt with every key matched."""
    from .official import official_model

    loaded = load_checkpoint(str(tiny_official))
    ours = hf_to_official_state_dict(loaded.model.state_dict(), num_blocks=4)
    theirs = official_model(str(tiny_official)).model.state_dict()
    assert set(ours) == set(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_missing_tensor_is_named(tiny_official, tmp_path):
    path = _copy(tiny_official, tmp_path / "ckpt")
    _edit_state_dict(path, lambda sd: sd.pop("audio_adaptor.linear1.weight"))
    with pytest.raises(CheckpointError, match=r"missing: model\.multi_modal_projector\.linear_1\.weight"):
        load_model(path)


def test_unexpected_tensor_is_named(tiny_official, tmp_path):
    path = _copy(tiny_official, tmp_path / "ckpt")
    _edit_state_dict(path, lambda sd: sd.__setitem__("audio_encoder.extra.weight", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"unexpected: audio_encoder\.extra\.weight"):
        load_model(path)


def test_shape_mismatch_is_named_not_skipped(tiny_official, tmp_path):
    path = _copy(tiny_official, tmp_path / "ckpt")
    _edit_state_dict(path, lambda sd: sd.__setitem__("audio_adaptor.linear2.bias", torch.zeros(7)))
    with pytest.raises(CheckpointError, match=r"shape mismatch: audio_adaptor\.linear2\.bias"):
        load_model(path)


def test_ctc_branch_is_accepted_and_unused(tiny_official, tmp_path, binhai):
    path = _copy(tiny_official, tmp_path / "ckpt")
    _edit_state_dict(path, lambda sd: sd.update({"ctc_decoder.linear1.weight": torch.zeros(4, 4),
                                                 "ctc.ctc_lo.weight": torch.zeros(5, 4)}))
    assert load_model(path).transcribe(binhai, max_new_tokens=5).tokens == load_model(tiny_official).transcribe(
        binhai, max_new_tokens=5).tokens


def test_bf16_checkpoint_loads(tiny_official, tmp_path, binhai):
    """A checkpoint stored in bf16 loads to fp32 with exactly its values (the same tokens as an fp32 file holding
    the bf16-rounded weights); dtype="bf16" runs the LLM in bf16, the encoder in fp32, and here decodes the
    same 8 tokens as fp32 (a random tiny model: its logits are far apart)."""
    path = _copy(tiny_official, tmp_path / "ckpt")
    rounded = _copy(tiny_official, tmp_path / "rounded")
    _edit_state_dict(path, lambda sd: sd.update({k: v.to(torch.bfloat16) for k, v in sd.items()}))
    _edit_state_dict(rounded, lambda sd: sd.update({k: v.to(torch.bfloat16).float() for k, v in sd.items()}))
    model = load_model(path)
    assert model.engine.dtype == torch.float32
    assert model.transcribe(binhai, max_new_tokens=8).tokens == load_model(rounded).transcribe(
        binhai, max_new_tokens=8).tokens
    bf16 = load_model(tiny_official, dtype="bf16")
    assert bf16.engine.dtype == torch.bfloat16 and bf16.family.model.model.audio_tower.layers[0].mlp.fc1.weight.dtype == torch.float32
    assert bf16.transcribe(binhai, max_new_tokens=8).tokens == load_model(tiny_official).transcribe(
        binhai, max_new_tokens=8).tokens


def test_unsupported_config_is_refused(tiny_official, tmp_path):
    import yaml

    path = _copy(tiny_official, tmp_path / "ckpt")
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    cfg["audio_adaptor_conf"]["downsample_rate"] = 2
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    with pytest.raises(CheckpointError, match="downsample_rate"):
        load_model(path)


def test_missing_llm_folder(tiny_official, tmp_path):
    path = _copy(tiny_official, tmp_path / "ckpt")
    shutil.rmtree(path / "Qwen3-0.6B")
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(path)


def test_hf_layout_missing_tensor(tiny_hf, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _copy(tiny_hf, tmp_path / "ckpt")
    tensors = load_file(path / "model.safetensors")
    tensors.pop("model.multi_modal_projector.linear_1.bias")
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"linear_1\.bias"):
        load_model(path)


def test_hf_low_frame_rate_defaults_to_official(tiny_hf, tmp_path):
    path = _copy(tiny_hf, tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config.pop("use_low_frame_rate", None)
    (path / "config.json").write_text(json.dumps(config))
    assert load_model(path).family.use_low_frame_rate is True
    assert load_model(path, use_low_frame_rate=False).family.use_low_frame_rate is False


def test_tasks_recorded_in_config_are_loaded(tiny_official, tiny_hf, tmp_path):
    import yaml

    assert load_model(tiny_official).tasks == ("transcribe",)  # says none: transcription only
    official = _copy(tiny_official, tmp_path / "official")
    cfg = yaml.safe_load((official / "config.yaml").read_text())
    (official / "config.yaml").write_text(yaml.safe_dump({**cfg, "tasks": ["transcribe", "translate"]}))
    assert load_model(official).tasks == ("transcribe", "translate")
    hf = _copy(tiny_hf, tmp_path / "hf")
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "tasks": ["transcribe"]}))
    assert load_model(hf).tasks == ("transcribe",)
    (hf / "config.json").write_text(json.dumps({**config, "tasks": "transcribe"}))
    with pytest.raises(CheckpointError, match="tasks"):
        load_model(hf)
