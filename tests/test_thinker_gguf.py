"""``export gguf`` for Qwen3-ASR's thinker: f32 GGUF logits in llama.cpp == the HF thinker's, for text
and for embedding input, in both forms (``qwen3vl`` with the M-RoPE sections, plain ``qwen3``); the
header holds the sections and a file with wrong sections is caught (by the header check and by the
logits at multi-axis positions)."""

from __future__ import annotations

import ctypes
import pathlib

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'funasr-nano[llama]')")
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'funasr-nano[llama]')")

from funasr_nano.engines.llamacpp_context import MROPE_POSITIONS, _EmbdBatch, mrope_1d_positions  # noqa: E402
from funasr_nano.errors import CheckpointError, InvalidOptionError  # noqa: E402
from funasr_nano.export.gguf import import_llama_cpp, write_causal_lm_gguf  # noqa: E402
from funasr_nano.export.gguf_architectures import Qwen3VLArchitecture  # noqa: E402
from funasr_nano.export.thinker import (  # noqa: E402
    export_thinker_hf, load_tokenizer, read_source, read_thinker_state, thinker_config,
)
from funasr_nano.export.thinker_gguf import check_thinker_gguf, gguf_sections, write_thinker_gguf  # noqa: E402

from .test_thinker_export import MROPE_SECTION, prompt_ids, qwen3_vl_text_twin  # noqa: E402

import_llama_cpp()
LOGIT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def tiny(tiny_qwen3_asr, tiny_qwen3_asr_hf, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from funasr_nano.testing.tiny_qwen3_asr import TinyQwen3AsrConfig, write_tiny_checkpoint

    root = tmp_path_factory.mktemp("thinker-gguf")
    official, hf = tiny_qwen3_asr, tiny_qwen3_asr_hf
    exported = AutoModelForCausalLM.from_pretrained(export_thinker_hf(official, root / "llm")).eval()
    files = {arch: pathlib.Path(write_thinker_gguf(official, root / f"{arch}.gguf", "f32", arch=arch))
             for arch in ("qwen3vl", "qwen3")}
    # the same weights with sections that claim all 8 rotary pairs (see test_qwen3vl_unclaimed_pairs)
    claimed = write_tiny_checkpoint(str(root / "claimed"), "official", TinyQwen3AsrConfig(mrope_section=(3, 3, 2)))
    assert thinker_config(read_source(claimed)).mrope_section == [3, 3, 2]
    files["qwen3vl-claimed"] = pathlib.Path(write_thinker_gguf(claimed, root / "qwen3vl-claimed.gguf", "f32"))
    return {"official": official, "hf": hf, "exported": exported, "files": files, "root": root,
            "tokenizer": load_tokenizer(read_source(official))}


class LlamaRun:
    """One llama.cpp model + context (f32 KV cache, no flash attention, one thread) that returns the
    logits of every position of one prompt given as token ids or as embeddings with explicit positions."""

    def __init__(self, path):
        params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        assert self.model, path
        context = llama_cpp.llama_context_default_params()
        context.n_ctx = context.n_batch = context.n_ubatch = 512
        context.n_threads = context.n_threads_batch = 1
        context.type_k = context.type_v = llama_cpp.GGML_TYPE_F32
        context.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(self.model, context)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)
        self.mrope = llama_cpp.llama_model_rope_type(self.model) == llama_cpp.LLAMA_ROPE_TYPE_IMROPE

    def close(self):
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)

    def _run(self, batch, n):
        batch.n_tokens = n
        for i in range(n):
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        assert llama_cpp.llama_decode(self.ctx, batch) == 0
        return np.stack([np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
                         for i in range(n)]).copy()

    def tokens(self, ids) -> np.ndarray:
        batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
        try:
            for i, token in enumerate(ids):
                batch.token[i], batch.pos[i] = token, i
            return self._run(batch, len(ids))
        finally:
            llama_cpp.llama_batch_free(batch)

    def embeddings(self, embeds: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """``embeds`` (n, hidden); ``positions`` (n,) or, for M-RoPE, (4 * n,) axis by axis."""
        n = embeds.shape[0]
        owner = _EmbdBatch(llama_cpp, n, self.n_embd, MROPE_POSITIONS if self.mrope else 1)
        data = np.ascontiguousarray(embeds, dtype=np.float32)
        ctypes.memmove(owner.batch.embd, data.ctypes.data, data.nbytes)
        np.ctypeslib.as_array(owner.batch.pos, shape=(positions.size,))[:] = positions
        return self._run(owner.batch, n)


@pytest.fixture(scope="module")
def runs(tiny):
    opened = {arch: LlamaRun(path) for arch, path in tiny["files"].items()}
    yield opened
    for run in opened.values():
        run.close()


def text_ids(tiny):
    return prompt_ids(tiny["tokenizer"], 6)


def audio_like_embeddings(tiny, ids, seed=0):
    """The prompt's embeddings with random "audio" vectors (the scale of the token embeddings) at the
    audio positions, as the audio tower's output would sit there."""
    exported = tiny["exported"]
    with torch.no_grad():
        embeds = exported.get_input_embeddings()(torch.tensor([ids]))[0].clone()
    audio_id = tiny["tokenizer"].convert_tokens_to_ids("<|audio_pad|>")
    audio = torch.tensor([i for i, t in enumerate(ids) if t == audio_id])
    generator = torch.Generator().manual_seed(seed)
    embeds[audio] = embeds.std() * torch.randn(len(audio), embeds.shape[1], generator=generator)
    return embeds


def test_header_holds_the_sections(tiny):
    assert gguf_sections(tiny["files"]["qwen3vl"]) == MROPE_SECTION + [0]
    assert gguf_sections(tiny["files"]["qwen3"]) is None
    reader = gguf.GGUFReader(str(tiny["files"]["qwen3vl"]))
    assert reader.fields["general.architecture"].contents() == "qwen3vl"
    assert reader.fields["qwen3vl.n_deepstack_layers"].contents() == 0
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q_norm.weight", "blk.1.attn_k_norm.weight", "token_embd.weight"} <= names
    assert check_thinker_gguf(tiny["files"]["qwen3vl"], MROPE_SECTION) == "qwen3vl"
    assert check_thinker_gguf(tiny["files"]["qwen3"], MROPE_SECTION) == "qwen3"


@pytest.mark.parametrize("arch", ["qwen3vl-claimed", "qwen3"])
def test_f32_logits_equal_the_hf_thinker_on_text(tiny, runs, arch):
    ids = text_ids(tiny)
    with torch.no_grad():
        expected = tiny["exported"](input_ids=torch.tensor([ids])).logits[0].numpy()
    got = runs[arch].tokens(ids)
    assert np.abs(got - expected).max() < LOGIT_TOLERANCE


@pytest.mark.parametrize("arch", ["qwen3vl-claimed", "qwen3"])
def test_f32_logits_equal_the_hf_thinker_on_embeddings(tiny, runs, arch):
    """Embedding input: positions as the engine fills them (qwen3vl: t = h = w = position, fourth
    axis 0, as llama.cpp's mtmd helper does for audio)."""
    ids = text_ids(tiny)
    embeds = audio_like_embeddings(tiny, ids)
    with torch.no_grad():
        expected = tiny["exported"](inputs_embeds=embeds[None]).logits[0].numpy()
    positions = np.arange(len(ids), dtype=np.int32)
    if arch.startswith("qwen3vl"):
        positions = mrope_1d_positions(positions)
    got = runs[arch].embeddings(embeds.numpy(), positions)
    assert np.abs(got - expected).max() < LOGIT_TOLERANCE


def test_qwen3vl_unclaimed_pairs(tiny, runs):
    """llama.cpp rotates a rotary pair no section claims (pair 7 of the tiny [4, 2, 2]; pairs 61-62 of
    Qwen3-ASR's [24, 20, 20]) by its fourth position axis, which is 0 for tokens and for audio as the
    engine fills it, where transformers uses the position: the qwen3vl file is then not bit-exact. Given
    the position on the fourth axis too it is; with sections that claim every pair it is anyway."""
    ids = text_ids(tiny)
    embeds = audio_like_embeddings(tiny, ids)
    with torch.no_grad():
        expected = tiny["exported"](inputs_embeds=embeds[None]).logits[0].numpy()
    positions = np.arange(len(ids), dtype=np.int32)
    error = {name: np.abs(runs[arch].embeddings(embeds.numpy(), pos) - expected).max()
             for name, arch, pos in (("mtmd", "qwen3vl", mrope_1d_positions(positions)),
                                     ("fourth = position", "qwen3vl", np.tile(positions, MROPE_POSITIONS)),
                                     ("claimed", "qwen3vl-claimed", mrope_1d_positions(positions)))}
    assert error["fourth = position"] < 1e-5 and error["claimed"] < 1e-5, error
    assert 1e-5 < error["mtmd"] < 1e-2, error  # small: the lowest frequency, a few dozen positions


def test_qwen3vl_with_equal_axes_is_plain_qwen3_in_llama_cpp(tiny, runs):
    """In llama.cpp itself: the qwen3vl file fed the same position on all four axes gives the qwen3
    file's logits (interleaved M-RoPE with equal axes is plain RoPE)."""
    ids = text_ids(tiny)
    embeds = audio_like_embeddings(tiny, ids).numpy()
    positions = np.arange(len(ids), dtype=np.int32)
    plain = runs["qwen3"].embeddings(embeds, positions)
    mrope = runs["qwen3vl"].embeddings(embeds, np.tile(positions, MROPE_POSITIONS))
    assert np.abs(mrope - plain).max() < 1e-5


def test_engine_positions_for_embeddings_are_llama_cpps_own_for_tokens(tiny, runs):
    """The engine fills an embedding's four axes as (p, p, p, 0), as llama.cpp's multimodal helper does:
    exactly what llama.cpp itself uses for a token at position p (fed the token's embedding row, the
    logits are identical), so audio and text positions follow one convention."""
    ids = text_ids(tiny)
    with torch.no_grad():
        embeds = tiny["exported"].get_input_embeddings()(torch.tensor(ids)).numpy()
    positions = np.arange(len(ids), dtype=np.int32)
    tokens = runs["qwen3vl"].tokens(ids)
    assert np.array_equal(runs["qwen3vl"].embeddings(embeds, mrope_1d_positions(positions)), tokens)


def multi_axis_case(tiny):
    """Embeddings with distinct t, h, w positions (as an image would have) and the logits of
    transformers' Qwen3-VL text model with the checkpoint's sections: here the sections matter."""
    exported = tiny["exported"]
    ids = text_ids(tiny)
    embeds = audio_like_embeddings(tiny, ids, seed=3)
    t = np.arange(len(ids), dtype=np.int32)
    axes = np.stack([t, t // 2 + 3 * (t % 2), (t * 7) % 11])  # (3, n)
    twin = qwen3_vl_text_twin(exported, MROPE_SECTION)
    with torch.no_grad():
        hidden = twin(inputs_embeds=embeds[None], position_ids=torch.tensor(axes)[:, None]).last_hidden_state
        expected = exported.lm_head(hidden)[0].numpy()
    # llama.cpp rotates rotary pairs past 3 * section by its fourth axis where transformers uses t:
    # give it t there
    positions = np.concatenate([axes.reshape(-1), t])
    return embeds.numpy(), positions, expected


def assert_thinker_gguf_matches(path, tiny):
    """What a test must check of a qwen3vl thinker file: the header's sections and the logits at
    multi-axis positions. Raises AssertionError on a wrong file."""
    try:
        check_thinker_gguf(path, MROPE_SECTION)
    except CheckpointError as error:
        raise AssertionError(str(error)) from error
    run = LlamaRun(path)
    try:
        embeds, positions, expected = multi_axis_case(tiny)
        got = run.embeddings(embeds, positions)
    finally:
        run.close()
    assert np.abs(got - expected).max() < LOGIT_TOLERANCE, np.abs(got - expected).max()


def wrong_sections_file(tiny, name, section):
    """A qwen3vl file whose sections are not the checkpoint's (as a converter reading the wrong config
    writes it)."""
    source = read_source(tiny["official"])
    config = thinker_config(source)
    config.mrope_section = section
    return write_causal_lm_gguf(Qwen3VLArchitecture(config), read_thinker_state(source, config, torch.float32),
                                load_tokenizer(source), tiny["root"] / name, "f32")


def test_the_right_file_passes_and_a_wrong_sections_file_is_caught(tiny):
    assert_thinker_gguf_matches(tiny["files"]["qwen3vl"], tiny)
    wrong = wrong_sections_file(tiny, "wrong.gguf", [8, 0, 0])  # the sections lost: all on t
    with pytest.raises(AssertionError, match="differ from the LLM's mrope_section"):
        assert_thinker_gguf_matches(wrong, tiny)
    # the logits alone catch it too (the header check aside)
    run = LlamaRun(wrong)
    try:
        embeds, positions, expected = multi_axis_case(tiny)
        assert np.abs(run.embeddings(embeds, positions) - expected).max() > 10 * LOGIT_TOLERANCE
    finally:
        run.close()


def test_sections_are_required_and_checked(tiny):
    with pytest.raises(CheckpointError, match="does not record the LLM's mrope_section"):
        write_thinker_gguf(tiny["hf"], tiny["root"] / "x.gguf", "f32")  # the -hf layout drops them
    path = write_thinker_gguf(tiny["hf"], tiny["root"] / "hf.gguf", "f32", mrope_section=MROPE_SECTION)
    assert gguf_sections(path) == MROPE_SECTION + [0]
    with pytest.raises(InvalidOptionError, match="contradicts"):
        write_thinker_gguf(tiny["official"], tiny["root"] / "x.gguf", "f32", mrope_section=[2, 4, 2])
    with pytest.raises(CheckpointError, match="sums to 6, not head_dim / 2 = 8"):
        write_thinker_gguf(tiny["hf"], tiny["root"] / "x.gguf", "f32", mrope_section=[2, 2, 2])
    with pytest.raises(InvalidOptionError, match="unknown GGUF architecture"):
        write_thinker_gguf(tiny["official"], tiny["root"] / "x.gguf", "f32", arch="llama")


def test_quantized_thinker(tiny, runs):
    path = write_thinker_gguf(tiny["official"], tiny["root"] / "q8.gguf", "q8_0", n_threads=1)
    assert check_thinker_gguf(path, MROPE_SECTION) == "qwen3vl"
    run = LlamaRun(path)
    try:
        ids = text_ids(tiny)
        assert np.abs(run.tokens(ids) - runs["qwen3vl"].tokens(ids)).max() < 0.5
    finally:
        run.close()
