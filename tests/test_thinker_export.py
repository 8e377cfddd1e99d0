"""``export hf`` for Qwen3-ASR: the thinker LLM as a standalone transformers causal LM (key map, tied
weights, config, tokenizer), equal to the thinker inside Qwen3-ASR on text and on audio embeddings;
and the proof that interleaved MRoPE with equal axes is plain RoPE."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from funasr_nano.errors import CheckpointError, InvalidOptionError
from funasr_nano.export.thinker import export_thinker_hf, read_source, thinker_config, thinker_key_map

from funasr_nano.models.qwen3_asr.checkpoint import load_checkpoint
from funasr_nano.testing.tiny_qwen3_asr import TinyQwen3AsrConfig

HF_TOLERANCE = 1e-5
MROPE_SECTION = list(TinyQwen3AsrConfig().mrope_section)


@pytest.fixture(scope="module")
def tiny(tiny_qwen3_asr, tiny_qwen3_asr_hf, tmp_path_factory):
    """The same random Qwen3-ASR in both layouts, the model as our loader builds it, and the two exports."""
    root = tmp_path_factory.mktemp("thinker-hf")
    paths = {"official": tiny_qwen3_asr, "hf": tiny_qwen3_asr_hf}
    exports = {layout: pathlib.Path(export_thinker_hf(paths[layout], root / f"{layout}-llm")) for layout in paths}
    loaded = load_checkpoint(str(tiny_qwen3_asr))
    return {"paths": paths, "exports": exports, "model": loaded.model, "tokenizer": loaded.tokenizer, "root": root}


def load_exported(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False).eval()


@torch.no_grad()
def thinker_logits(model, **inputs) -> np.ndarray:
    """Logits of the thinker inside ``Qwen3ASRForConditionalGeneration`` (its text model + head)."""
    hidden = model.model.language_model(**inputs).last_hidden_state
    return model.lm_head(hidden)[0].numpy()


def prompt_ids(tokenizer, num_audio: int) -> list[int]:
    text = ("<|im_start|>system\nhello<|im_end|>\n<|im_start|>user\n<|audio_start|>" + "<|audio_pad|>" * num_audio
            + "<|audio_end|><|im_end|>\n<|im_start|>assistant\nlanguage Chinese<asr_text>")
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("layout", ["official", "hf"])
def test_exported_thinker_is_a_plain_qwen3_with_the_same_text_logits(tiny, layout):
    from transformers import Qwen3ForCausalLM

    exported = load_exported(tiny["exports"][layout])
    assert type(exported) is Qwen3ForCausalLM
    ids = prompt_ids(tiny["tokenizer"], 3)
    expected = thinker_logits(tiny["model"], input_ids=torch.tensor([ids]))
    with torch.no_grad():
        got = exported(input_ids=torch.tensor([ids])).logits[0].numpy()
    assert np.abs(got - expected).max() < HF_TOLERANCE


@pytest.mark.parametrize("layout", ["official", "hf"])
def test_exported_thinker_equals_qwen3_asr_on_audio_embeddings(tiny, layout, binhai):
    """Qwen3-ASR's full forward (audio features of a real recording spliced at its audio tokens) and
    the exported LLM fed the same embeddings give the same logits."""
    import soundfile
    from transformers import Qwen3ASRFeatureExtractor

    model, tokenizer = tiny["model"], tiny["tokenizer"]
    waveform, rate = soundfile.read(str(binhai), dtype="float32")
    features = Qwen3ASRFeatureExtractor()(waveform, sampling_rate=rate, return_tensors="pt",
                                          return_attention_mask=True)
    features["input_features_mask"] = features.pop("attention_mask")
    with torch.no_grad():
        audio = model.get_audio_features(features["input_features"], features["input_features_mask"]).pooler_output
    ids = torch.tensor([prompt_ids(tokenizer, audio.shape[0])])
    with torch.no_grad():
        expected = model(input_ids=ids, input_features=features["input_features"],
                         input_features_mask=features["input_features_mask"]).logits[0].numpy()
        embeds = model.get_input_embeddings()(ids)
        embeds[ids == model.config.audio_token_id] = audio
        got = load_exported(tiny["exports"][layout])(inputs_embeds=embeds).logits[0].numpy()
    assert audio.shape[0] > 50  # 6 s of speech
    assert np.abs(got - expected).max() < HF_TOLERANCE


def test_export_files_config_tied_head_and_tokenizer(tiny):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    out = tiny["exports"]["official"]
    config = json.loads((out / "config.json").read_text())
    text = tiny["model"].config.text_config
    assert config["model_type"] == "qwen3" and config["architectures"] == ["Qwen3ForCausalLM"]
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size"):
        assert config[key] == getattr(text, key), key
    assert config["mrope_section"] == MROPE_SECTION and config["mrope_interleaved"] is True
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 1000000.0}
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        head, embedding = f.get_tensor("lm_head.weight"), f.get_tensor("model.embed_tokens.weight")
    assert "lm_head.weight" in names and all(n.startswith(("model.", "lm_head.")) for n in names)
    assert torch.equal(head, embedding)
    assert not any("audio" in n for n in names)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.get_vocab() == tiny["tokenizer"].get_vocab()
    assert tokenizer.chat_template  # carried over
    # the -hf layout drops the sections (transformers runs plain RoPE): nothing is made up
    assert "mrope_section" not in json.loads((tiny["exports"]["hf"] / "config.json").read_text())


def _rewrite_weights(source: pathlib.Path, target: pathlib.Path, change) -> pathlib.Path:
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    state = load_file(str(source / "model.safetensors"))
    change(state)
    save_file(state, str(target / "model.safetensors"))
    return target


def test_key_map_refuses_leftover_missing_and_misshaped_tensors(tiny):
    official, root = tiny["paths"]["official"], tiny["root"]

    def extra(state):
        state["thinker.model.layers.0.self_attn.q_proj.bias"] = torch.zeros(4)
        state["thinker.speaker_head.weight"] = torch.zeros(2, 2)

    with pytest.raises(CheckpointError, match="unexpected: .*q_proj.bias.*speaker_head"):
        export_thinker_hf(_rewrite_weights(official, root / "extra", extra), root / "extra-out")
    with pytest.raises(CheckpointError, match="missing: thinker.model.norm.weight"):
        export_thinker_hf(_rewrite_weights(official, root / "missing", lambda s: s.pop("thinker.model.norm.weight")),
                          root / "missing-out")

    def reshape(state):
        state["thinker.model.layers.1.mlp.up_proj.weight"] = torch.zeros(3, 3)

    with pytest.raises(CheckpointError, match=r"shape mismatch: thinker.model.layers.1.mlp.up_proj.weight: checkpoint \(3, 3\)"):
        export_thinker_hf(_rewrite_weights(official, root / "shape", reshape), root / "shape-out")

    def untie(state):
        state["thinker.lm_head.weight"] = state["thinker.lm_head.weight"] + 1

    with pytest.raises(CheckpointError, match="tie_word_embeddings is set but thinker.lm_head.weight differs"):
        export_thinker_hf(_rewrite_weights(official, root / "untied", untie), root / "untied-out")
    with pytest.raises(InvalidOptionError):
        export_thinker_hf(official, official)


def test_key_map_names_every_llm_tensor_of_both_layouts(tiny):
    for layout, path in tiny["paths"].items():
        source = read_source(path)
        assert source.layout == layout
        mapping = thinker_key_map(thinker_config(source), layout)
        targets = {target for target, _ in mapping.values()}
        assert targets == set(load_exported(tiny["exports"][layout]).state_dict())


def test_not_a_qwen3_asr_checkpoint(tiny_hf):
    with pytest.raises(CheckpointError, match="not a Qwen3-ASR config"):
        read_source(tiny_hf)  # a Fun-ASR-Nano folder


# ---------------------------------------------------------------------------------------------------
# interleaved MRoPE with positions equal on all axes is plain RoPE


def qwen3_vl_text_twin(exported, section):
    """transformers' Qwen3-VL text model (interleaved MRoPE with ``section``) holding the exported
    Qwen3's weights."""
    from transformers import Qwen3VLTextConfig, Qwen3VLTextModel

    c = exported.config
    config = Qwen3VLTextConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim, rms_norm_eps=c.rms_norm_eps,
        max_position_embeddings=c.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_parameters["rope_theta"],
                         "mrope_section": list(section), "mrope_interleaved": True})
    twin = Qwen3VLTextModel(config).eval()
    missing, unexpected = twin.load_state_dict(exported.model.state_dict(), strict=False)
    assert not unexpected and not [k for k in missing if "rotary" not in k]
    return twin


def test_interleaved_mrope_with_equal_axes_is_plain_rope(tiny):
    exported = load_exported(tiny["exports"]["official"])
    for section in (MROPE_SECTION, [3, 3, 2], [8, 0, 0], [2, 3, 3]):
        twin = qwen3_vl_text_twin(exported, section)
        positions = torch.arange(0, 300, 7)[None]  # (1, n)
        x = torch.zeros(1)
        plain_cos, plain_sin = exported.model.rotary_emb(x, positions)
        cos, sin = twin.rotary_emb(x, positions.expand(3, 1, -1))
        assert torch.equal(cos, plain_cos) and torch.equal(sin, plain_sin), section
        ids = torch.tensor([prompt_ids(tiny["tokenizer"], 5)])
        with torch.no_grad():
            hidden = twin(input_ids=ids, position_ids=torch.arange(ids.shape[1]).expand(3, 1, -1)).last_hidden_state
            expected = exported(input_ids=ids).logits[0]
        assert torch.allclose(exported.lm_head(hidden)[0], expected, atol=1e-6, rtol=0)
        # with distinct axes the sections matter (so the equality above is not vacuous)
        if section != [8, 0, 0]:
            distinct = torch.stack([positions[0], positions[0] // 2, positions[0] % 5])[:, None]
            assert not torch.allclose(twin.rotary_emb(x, distinct)[0], plain_cos)


def test_cli_export_hf_and_gguf(tiny, tmp_path, capsys):
    from funasr_nano.cli.main import main

    official, hf = tiny["paths"]["official"], tiny["paths"]["hf"]
    assert main(["export", "hf", str(official), str(tmp_path / "llm"), "--dtype", "bf16"]) == 0
    assert "AutoModelForCausalLM" in capsys.readouterr().out
    assert load_exported(tmp_path / "llm").dtype == torch.bfloat16
    assert main(["export", "gguf", str(hf), str(tmp_path / "g"), "--type", "f32"]) == 2  # no sections in -hf
    assert "--mrope-section 24 20 20" in capsys.readouterr().err and not (tmp_path / "g").exists()
    assert main(["export", "gguf", str(hf), str(tmp_path / "g"), "--type", "f32", "--arch", "qwen3"]) == 0
    assert (tmp_path / "g" / "llm-f32.gguf").exists() and (tmp_path / "g" / "audio.safetensors").exists()
    capsys.readouterr()
    assert main(["export", "hf", "demo", str(tmp_path / "x")]) == 2
    assert "not one" in capsys.readouterr().err
    assert main(["export", "gguf", "demo", str(tmp_path / "x"), "--arch", "qwen3"]) == 2
    assert "Qwen3-ASR checkpoints only" in capsys.readouterr().err
