"""GGUF export of the LLM: stock llama.cpp (llama-cpp-python's ``Llama``) loads the file on its own and
computes the transformers LLM's logits; metadata, tokenizer, types, quantization and refusals."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'funasr-nano[llama]')")
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'funasr-nano[llama]')")

from funasr_nano.errors import CheckpointError  # noqa: E402
from funasr_nano.export.gguf import (  # noqa: E402
    check_gguf_file, import_llama_cpp, llm_state_dict, map_tensors, architecture_for, quantize_gguf, write_llm_gguf,
)
from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint  # noqa: E402
from funasr_nano.testing.tiny import TinyConfig, build_random_model  # noqa: E402

import_llama_cpp()  # llama.cpp's log goes to logging, not to the test output

PROMPT = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhello, world 123<|im_end|>\n<|im_start|>assistant\n"
LOGIT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def loaded(tiny_official):
    return load_checkpoint(str(tiny_official))


@pytest.fixture(scope="module")
def f32_gguf(loaded, tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("gguf") / "llm-f32.gguf"
    write_llm_gguf(loaded.model, loaded.tokenizer, path, "f32")
    return path


@torch.no_grad()
def transformers_logits(model, ids) -> np.ndarray:
    """``(len(ids), vocab)`` next-token logits of the transformers LLM."""
    hidden = model.model.language_model(input_ids=torch.tensor([ids])).last_hidden_state
    return model.lm_head(hidden)[0].float().numpy()


def llama_logits(path, ids, **kwargs) -> np.ndarray:
    """``(len(ids), vocab)`` logits from stock llama.cpp (high-level ``Llama``), f32 KV cache."""
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, verbose=False, n_ctx=256,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, flash_attn=False, **kwargs)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])
    finally:
        llm.close()


def llama_tokens(path, text: str) -> list[int]:
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return llm.tokenize(text.encode(), add_bos=False, special=True)
    finally:
        llm.close()


def test_f32_gguf_runs_standalone_with_the_transformers_logits(loaded, f32_gguf):
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    assert llama_tokens(f32_gguf, PROMPT) == ids  # the tokenizer travels in the file
    expected = transformers_logits(loaded.model, ids)
    got = llama_logits(f32_gguf, ids)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < LOGIT_TOLERANCE


def test_metadata_and_tensor_names(loaded, f32_gguf):
    reader = gguf.GGUFReader(str(f32_gguf))
    config = loaded.model.config.text_config
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN3]

    def value(key):
        return reader.get_field(key.format(arch=arch)).contents()

    assert value(gguf.Keys.General.ARCHITECTURE) == "qwen3"
    assert value(gguf.Keys.LLM.BLOCK_COUNT) == config.num_hidden_layers
    assert value(gguf.Keys.Attention.KEY_LENGTH) == config.head_dim
    assert value(gguf.Keys.Attention.HEAD_COUNT_KV) == config.num_key_value_heads
    assert value(gguf.Keys.Tokenizer.PRE) == "qwen2"
    tokens = value(gguf.Keys.Tokenizer.LIST)
    types = value(gguf.Keys.Tokenizer.TOKEN_TYPE)
    assert len(tokens) == len(types) == config.vocab_size
    im_end = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokens[im_end] == "<|im_end|>" and types[im_end] == gguf.TokenType.CONTROL
    assert types[loaded.tokenizer.convert_tokens_to_ids("<think>")] == gguf.TokenType.USER_DEFINED
    assert value(gguf.Keys.Tokenizer.EOS_ID) == im_end
    assert value(gguf.Keys.Tokenizer.CHAT_TEMPLATE) == loaded.tokenizer.chat_template
    names = {t.name for t in reader.tensors}
    assert "blk.1.attn_k_norm.weight" in names and "token_embd.weight" in names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd
    assert len(names) == 2 + 11 * config.num_hidden_layers


@pytest.mark.parametrize("out_type, matrix_type, tolerance", [("f16", "F16", 0.05), ("bf16", "BF16", 0.3)])
def test_half_types(loaded, tmp_path, out_type, matrix_type, tolerance):
    path = write_llm_gguf(loaded.model, loaded.tokenizer, tmp_path / f"llm-{out_type}.gguf", out_type)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.ffn_down.weight"] == matrix_type and types["token_embd.weight"] == matrix_type
    assert types["blk.0.attn_q_norm.weight"] == "F32" and types["output_norm.weight"] == "F32"
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    expected = transformers_logits(loaded.model, ids)
    assert np.abs(llama_logits(path, ids) - expected).max() < tolerance


def test_head_dim_other_than_hidden_over_heads_and_untied_output(tmp_path):
    # Qwen3-0.6B has head_dim 128 with 1024 / 16 = 64: attention.key_length must say so
    model, tokenizer, _ = build_random_model(TinyConfig(llm_head_dim=32, llm_heads=4, llm_dim=64), seed=3)
    model.config.text_config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=torch.Generator().manual_seed(4)) * 0.2)
    path = write_llm_gguf(model, tokenizer, tmp_path / "llm.gguf", "f32")
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert "output.weight" in names
    ids = tokenizer.encode(PROMPT, add_special_tokens=False)
    assert np.abs(llama_logits(path, ids) - transformers_logits(model, ids)).max() < LOGIT_TOLERANCE


def test_demo_model_with_merges(tmp_path):
    from funasr_nano.load import DEFAULT_MODEL

    loaded = load_checkpoint(DEFAULT_MODEL)
    path = write_llm_gguf(loaded.model, loaded.tokenizer, tmp_path / "demo.gguf", "f32")
    # Latin text: the demo tokenizer's extra CJK split does not apply, so llama.cpp's qwen2
    # pre-tokenizer and the BPE merges give the same ids as the tokenizer
    text = "<|im_start|>user\nPlease translate: the weather is nice today.<|im_end|>\n<|im_start|>assistant\n"
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    assert llama_tokens(path, text) == ids
    assert len(ids) < len(text.encode()) - 20  # merges were used
    assert np.abs(llama_logits(path, ids) - transformers_logits(loaded.model, ids)).max() < LOGIT_TOLERANCE


@pytest.mark.parametrize("out_type, file_type", [("q8_0", "MOSTLY_Q8_0"), ("q4_k_m", "MOSTLY_Q4_K_M")])
def test_quantized_types_through_llama_cpp(loaded, f32_gguf, tmp_path, out_type, file_type):
    path = quantize_gguf(f32_gguf, tmp_path / f"llm-{out_type}.gguf", out_type, n_threads=1)
    reader = gguf.GGUFReader(path)
    assert reader.get_field(gguf.Keys.General.FILE_TYPE).contents() == int(getattr(gguf.LlamaFileType, file_type))
    assert pathlib.Path(path).stat().st_size < f32_gguf.stat().st_size / 2
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    expected = transformers_logits(loaded.model, ids)
    got = llama_logits(path, ids)
    # quantized, so not equal; but far closer than unrelated logits
    assert np.abs(got - expected).mean() < 0.2 * np.abs(expected).mean()


def test_write_quantized_in_one_call(loaded, tmp_path):
    path = write_llm_gguf(loaded.model, loaded.tokenizer, tmp_path / "llm-q8.gguf", "Q8_0")
    assert gguf.GGUFReader(path).get_field(gguf.Keys.General.FILE_TYPE).contents() == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert not [p for p in tmp_path.iterdir() if p.name != "llm-q8.gguf"]  # no temporary file left


def test_unknown_type_is_refused(loaded, tmp_path):
    with pytest.raises(ValueError, match="q3_xyz"):
        write_llm_gguf(loaded.model, loaded.tokenizer, tmp_path / "x.gguf", "q3_xyz")
    assert not list(tmp_path.iterdir())


def test_unsupported_architecture_is_refused(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(loaded.model.config.text_config, "model_type", "gemma3")
    with pytest.raises(CheckpointError, match="gemma3"):
        write_llm_gguf(loaded.model, loaded.tokenizer, tmp_path / "x.gguf")


def test_settings_llama_cpp_cannot_express_are_refused(loaded, monkeypatch):
    monkeypatch.setattr(loaded.model.config.text_config, "attention_bias", True)
    with pytest.raises(CheckpointError, match="attention_bias"):
        architecture_for(loaded.model.config.text_config)


def test_key_map_checks_every_tensor(loaded):
    architecture = architecture_for(loaded.model.config.text_config)
    state = dict(llm_state_dict(loaded.model))
    assert len(map_tensors(architecture, state)) == len(architecture.tensor_map())
    bad = dict(state)
    bad["model.layers.1.self_attn.k_norm.weight"] = torch.ones(7)
    with pytest.raises(CheckpointError, match=r"k_norm.weight: checkpoint \(7,\)"):
        map_tensors(architecture, bad)
    missing = {k: v for k, v in state.items() if k != "model.layers.0.mlp.up_proj.weight"}
    with pytest.raises(CheckpointError, match="missing: model.layers.0.mlp.up_proj.weight"):
        map_tensors(architecture, missing)
    extra = dict(state, **{"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)})
    with pytest.raises(CheckpointError, match="unexpected: model.layers.0.self_attn.q_proj.bias"):
        map_tensors(architecture, extra)


def test_truncated_or_foreign_file_is_a_checkpoint_error(f32_gguf, tmp_path):
    data = f32_gguf.read_bytes()
    for name, content in (("truncated.gguf", data[: len(data) - 1000]), ("header.gguf", data[:100]),
                          ("empty.gguf", b""), ("text.gguf", b"not a gguf file at all" * 10),
                          ("counts.gguf", data[:8] + (2**40).to_bytes(8, "little") + data[16:]),
                          ("version.gguf", data[:4] + (9).to_bytes(4, "little") + data[8:])):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            check_gguf_file(path)
    metadata = check_gguf_file(f32_gguf)
    assert metadata[gguf.Keys.General.ARCHITECTURE] == "qwen3"
    assert metadata[gguf.Keys.General.FILE_TYPE] == int(gguf.LlamaFileType.ALL_F32)


def test_both_checkpoint_layouts_give_the_same_file(loaded, f32_gguf, tiny_hf, tmp_path):
    hf = load_checkpoint(str(tiny_hf))  # the same weights (same seed) in the transformers layout
    path = write_llm_gguf(hf.model, hf.tokenizer, tmp_path / "hf.gguf", "f32")
    official = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(f32_gguf)).tensors}
    converted = {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}
    assert official.keys() == converted.keys()
    assert all(np.array_equal(official[name], converted[name]) for name in official)


def test_embedding_rows_beyond_the_tokenizer_are_unused_tokens(tmp_path):
    # Qwen3-0.6B: 151,936 embedding rows for 151,669 tokens; llama.cpp needs one token per row
    model, tokenizer, _ = build_random_model(TinyConfig(vocab_size=300), seed=5)
    assert len(tokenizer) < 300
    path = write_llm_gguf(model, tokenizer, tmp_path / "padded.gguf", "f32")
    reader = gguf.GGUFReader(path)
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST).contents()
    types = reader.get_field(gguf.Keys.Tokenizer.TOKEN_TYPE).contents()
    assert len(tokens) == 300 and tokens[299] == "[PAD299]" and types[299] == gguf.TokenType.UNUSED
    assert types[len(tokenizer) - 1] != gguf.TokenType.UNUSED
    ids = tokenizer.encode(PROMPT, add_special_tokens=False)
    assert llama_tokens(path, PROMPT) == ids
    assert np.abs(llama_logits(path, ids) - transformers_logits(model, ids)).max() < LOGIT_TOLERANCE


def test_empty_array_writer_is_still_needed(tmp_path):
    # gguf-py refuses empty arrays (ggml-org/llama.cpp#8774); when this stops raising, gguf_writer's
    # _pack_val override (funasr_nano/export/gguf.py) can go
    from funasr_nano.export.gguf import gguf_writer

    T = gguf.GGUFValueType
    plain = gguf.GGUFWriter(str(tmp_path / "plain.gguf"), "qwen3")
    plain.add_key_value(gguf.Keys.Tokenizer.MERGES, [], T.ARRAY, sub_type=T.STRING)
    plain.write_header_to_file()
    with pytest.raises(ValueError, match="Empty array"):
        plain.write_kv_data_to_file()
    plain.close()
    path = tmp_path / "empty.gguf"
    with gguf_writer(path, "qwen3") as writer:
        writer.add_key_value(gguf.Keys.Tokenizer.MERGES, [], T.ARRAY, sub_type=T.STRING)
        writer.add_key_value("test.ints", [], T.ARRAY, sub_type=T.INT32)
        writer.add_tensor("t", np.arange(4, dtype=np.float32))
    fields = gguf.GGUFReader(str(path)).fields
    for key, item_type in ((gguf.Keys.Tokenizer.MERGES, T.STRING), ("test.ints", T.INT32)):
        # parts: key length, key, value type, item type, item count
        assert fields[key].contents() == [] and [int(p[0]) for p in fields[key].parts[2:5]] == [T.ARRAY, item_type, 0]
    assert check_gguf_file(path)["test.ints"] == []


def test_gguf_writer_leaves_no_partial_file(tmp_path):
    from funasr_nano.export.gguf import gguf_writer

    path = tmp_path / "model.gguf"
    path.write_bytes(b"the previous file")
    with pytest.raises(RuntimeError, match="stop"):
        with gguf_writer(path, "qwen3") as writer:
            writer.add_tensor("t", np.zeros(4, dtype=np.float32))
            raise RuntimeError("stop")
    with pytest.raises(ValueError, match="Empty array"):  # an error while writing, not in the block
        with gguf_writer(path, "qwen3") as writer:
            writer.add_key_value("test.untyped", [], gguf.GGUFValueType.ARRAY)  # no item type: refused
    assert path.read_bytes() == b"the previous file" and sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
    with gguf_writer(path, "qwen3") as writer:
        writer.add_tensor("t", np.arange(4, dtype=np.float32))
    assert [t.name for t in gguf.GGUFReader(str(path)).tensors] == ["t"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]


@pytest.mark.parametrize("out_type", ["f32", "bf16", "q8_0"])
def test_header_reader_agrees_with_gguf_reader(loaded, f32_gguf, tmp_path, out_type):
    path = (f32_gguf if out_type == "f32" else
            write_llm_gguf(loaded.model, loaded.tokenizer, tmp_path / f"llm-{out_type}.gguf", out_type))
    ours = check_gguf_file(path)
    reader = gguf.GGUFReader(str(path))
    expected = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):  # the reader's pseudo-fields: version, counts
            continue
        value = field.contents()
        if not isinstance(value, list):
            expected[key] = value
        elif int(field.parts[3][0]) != gguf.GGUFValueType.STRING and len(value) <= 64:  # parts[3]: item type
            expected[key] = value
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value) if isinstance(value, float) else ours[key] == value, key
