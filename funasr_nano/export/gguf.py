"""GGUF export of the speech model's LLM, for llama.cpp.

Writes the causal LLM of a loaded Fun-ASR-Nano checkpoint (``model.model.language_model`` +
``model.lm_head``, a Qwen3) as a standard GGUF file that stock llama.cpp runs on its own
(``llama-cli``, ``llama-server``, llama-cpp-python): the architecture and its hyper-parameters, every
tensor under llama.cpp's name, and the tokenizer (byte-level BPE vocabulary, merges, token types,
special token ids, pre-tokenizer, chat template).

The layout follows llama.cpp's ``convert_hf_to_gguf.py`` (``Qwen3Model`` / ``TextModel``): one small
class per architecture (:mod:`funasr_nano.export.gguf_architectures`) says which hyper-parameters
become which GGUF keys and how each transformers tensor name maps to a llama.cpp tensor name; names
come from the ``gguf`` package's constants (``gguf.Keys``, ``gguf.MODEL_TENSOR``,
``gguf.TENSOR_NAMES``). Differences, on purpose:

* the map is explicit and checked both ways: every transformers tensor must be mapped (an unexpected
  one is an error, not a warning) and have the shape the config implies;
* ``f32``, ``f16`` and ``bf16`` are written here (1-D tensors, the RMS norms, stay f32 as llama.cpp
  expects); quantized types (``q8_0``, ``q4_k_m``, ...) are made from a temporary f32 file by
  llama.cpp's own quantizer (``llama_model_quantize``, through llama-cpp-python), so they are exactly
  what ``llama-quantize`` would produce.

Only the LLM goes into the GGUF: the audio encoder and adaptor stay in torch, and the audio positions
enter llama.cpp as embeddings (``llama_batch.embd``), as in FunAudioLLM/Fun-ASR ``runtime/llama.cpp``.
A LoRA adapter must be merged into the weights first (``funasr-nano lora merge``).

Requires the ``gguf`` package (``pip install 'funasr-nano[llama]'``); the quantized types also need
llama-cpp-python.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import mmap
import os
import struct
import tempfile
from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import CheckpointError
from .gguf_architectures import ARCHITECTURES, GgufArchitecture, architecture_for
from .native import NATIVE_LOGGER, import_gguf, import_llama_cpp

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES", "FLOAT_TYPES", "NATIVE_LOGGER", "OUT_TYPES", "QUANTIZED_TYPES", "architecture_for",
    "check_gguf_file", "gguf_writer", "import_gguf", "import_llama_cpp", "llm_state_dict", "map_tensors",
    "quantize_gguf", "tokenizer_metadata", "write_causal_lm_gguf", "write_llm_gguf",
]


# Types written directly (name -> (llama file type name, GGML type of 2-D tensors)).
FLOAT_TYPES = {
    "f32": ("ALL_F32", "F32"),
    "f16": ("MOSTLY_F16", "F16"),
    "bf16": ("MOSTLY_BF16", "BF16"),
}
# Types made by llama.cpp's quantizer from an f32 file (name -> gguf.LlamaFileType member). The
# k-quant mixes (``_s``/``_m``/``_l``) are llama.cpp's: e.g. q4_k_m keeps half of the attention V
# and FFN down tensors in q6_k. Tensors whose rows do not fit a type's block (256 values for the
# k-quants) fall back to a legacy type, as llama-quantize does.
QUANTIZED_TYPES = {
    "q8_0": "MOSTLY_Q8_0",
    "q6_k": "MOSTLY_Q6_K",
    "q5_k_m": "MOSTLY_Q5_K_M",
    "q5_k_s": "MOSTLY_Q5_K_S",
    "q5_0": "MOSTLY_Q5_0",
    "q5_1": "MOSTLY_Q5_1",
    "q4_k_m": "MOSTLY_Q4_K_M",
    "q4_k_s": "MOSTLY_Q4_K_S",
    "q4_0": "MOSTLY_Q4_0",
    "q4_1": "MOSTLY_Q4_1",
    "q3_k_l": "MOSTLY_Q3_K_L",
    "q3_k_m": "MOSTLY_Q3_K_M",
    "q3_k_s": "MOSTLY_Q3_K_S",
    "q2_k": "MOSTLY_Q2_K",
}
OUT_TYPES = tuple(FLOAT_TYPES) + tuple(QUANTIZED_TYPES)

# The split pattern of Qwen2/Qwen3's pre-tokenizer, which llama.cpp implements as the ``qwen2``
# pre-tokenizer (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_QWEN2); from tokenizer.json of Qwen/Qwen3-0.6B.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


# Llama 3's split pattern (tokenizer.json of meta-llama/Llama-3.2-1B-Instruct: numbers in runs of up to
# three digits), llama.cpp's ``llama-bpe`` pre-tokenizer (LLAMA_VOCAB_PRE_TYPE_LLAMA3).
LLAMA3_SPLIT_PATTERN = QWEN2_SPLIT_PATTERN.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
# one split pattern -> llama.cpp's pre-tokenizer name (tokenizer.ggml.pre)
PRE_TOKENIZERS = {QWEN2_SPLIT_PATTERN: "qwen2", LLAMA3_SPLIT_PATTERN: "llama-bpe"}


# ----------------------------------------------------------------------------------------------------
# tensors


def llm_state_dict(model):
    """:func:`funasr_nano.export.llm_checkpoint.llm_state_dict` (imported on use: it needs torch, which the
    light runtime's use of this module, reading GGUF files, does not)."""
    from .llm_checkpoint import llm_state_dict as state_dict

    return state_dict(model)


def _check_tied(config, state: Mapping[str, "torch.Tensor"]) -> None:
    import torch

    if getattr(config, "tie_word_embeddings", False) and not torch.equal(
        state["lm_head.weight"], state["model.embed_tokens.weight"]
    ):
        raise CheckpointError("tie_word_embeddings is set but lm_head.weight differs from embed_tokens.weight")


def map_tensors(architecture: GgufArchitecture, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """llama.cpp name -> tensor, by ``architecture``'s key map, every shape checked.

    Raises:
        CheckpointError: listing missing tensors, unexpected tensors and shape mismatches by name.
    """
    mapping = architecture.tensor_map()
    tied_head = {"lm_head.weight"} if "lm_head.weight" not in mapping else set()
    missing = [name for name in mapping if name not in state]
    unexpected = [name for name in state if name not in mapping and name not in tied_head
                  and not name.endswith("rotary_emb.inv_freq")]
    mismatched = [f"{name}: checkpoint {tuple(state[name].shape)}, expected {shape}"
                  for name, (_, shape) in mapping.items() if name in state and tuple(state[name].shape) != shape]
    if missing or unexpected or mismatched:
        parts = [f"{title}: {', '.join(names[:20])}" + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
                 for title, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
                 if names]
        raise CheckpointError("the LLM does not match its config; " + "; ".join(parts))
    _check_tied(architecture.config, state)
    tensors = {gguf_name: architecture.convert_tensor(name, state[name]) for name, (gguf_name, _) in mapping.items()}
    tensors.update(architecture.extra_tensors())
    return tensors


def _tensor_data(gguf, tensor: torch.Tensor, out_type: str):
    """``(numpy data, raw GGML type or None)`` of one tensor in ``out_type``. 1-D tensors (norms) stay
    f32, as in ``convert_hf_to_gguf.py``; 2-D ones take the file's type."""
    import torch

    data = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    if data.ndim == 1 or out_type == "f32":
        return data, None
    qtype = getattr(gguf.GGMLQuantizationType, FLOAT_TYPES[out_type][1])
    if out_type == "f16":
        return data.astype(np.float16), None
    return gguf.quants.quantize(data, qtype), qtype  # bf16: uint8 bytes, round-to-nearest-even


# ----------------------------------------------------------------------------------------------------
# tokenizer


def _backend_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise CheckpointError(f"GGUF export needs a fast (tokenizers) tokenizer, got {type(tokenizer).__name__}")
    return json.loads(backend.to_str())


def _split_patterns(node: Mapping[str, Any] | None) -> list[str]:
    """Regex patterns of the ``Split`` steps of a tokenizer.json pre-tokenizer, in order."""
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for step in node.get("pretokenizers", []) for p in _split_patterns(step)]
    if node.get("type") == "Split":
        pattern = node.get("pattern", {})
        return [pattern.get("Regex", pattern.get("String", ""))]
    return []


def _is_byte_level(node: Mapping[str, Any] | None) -> bool:
    if not node:
        return False
    if node.get("type") == "Sequence":
        return any(_is_byte_level(step) for step in node.get("pretokenizers", []))
    return node.get("type") == "ByteLevel"


def tokenizer_metadata(tokenizer, vocab_size: int, text_config=None) -> dict[str, Any]:
    """The tokenizer as llama.cpp's ``gpt2`` (byte-level BPE) vocabulary.

    Returns a dict with ``tokens`` (``vocab_size`` strings, in id order; ids the tokenizer does not
    use, up to the embedding's rows, are ``[PAD{id}]`` of type UNUSED, as convert_hf_to_gguf.py
    writes them), ``token_types`` (gguf.TokenType: NORMAL, CONTROL for special added tokens,
    USER_DEFINED for other added tokens), ``merges`` (``"a b"`` strings, rank order), ``pre``
    (``qwen2``, or ``llama-bpe`` for Llama 3's split pattern), ``bos_id``, ``eos_id``, ``pad_id`` (None when unset), ``add_bos`` and
    ``chat_template``.

    Raises:
        CheckpointError: not a byte-level BPE tokenizer, or more tokens than the embedding has rows.
    """
    gguf = import_gguf()
    spec = _backend_json(tokenizer)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(spec.get("pre_tokenizer")):
        raise CheckpointError("GGUF export supports byte-level BPE tokenizers (as Qwen's) only; "
                              f"this one is {model.get('type')!r}")
    vocab = tokenizer.get_vocab()  # base vocabulary and added tokens
    by_id = {index: token for token, index in vocab.items()}
    if max(by_id) >= vocab_size:
        raise CheckpointError(f"the tokenizer has token id {max(by_id)} but the LLM's vocabulary has {vocab_size} rows")
    added = {index: token for index, token in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    patterns = _split_patterns(spec.get("pre_tokenizer"))
    pre = PRE_TOKENIZERS.get(patterns[0], "qwen2") if len(patterns) == 1 else "qwen2"
    if len(patterns) != 1 or patterns[0] not in PRE_TOKENIZERS:
        # e.g. the demo model's tokenizer isolates every CJK character first: llama.cpp's own text
        # tokenization then merges across characters where ours does not. Prompts our engine sends
        # are token ids, so only text typed into llama.cpp tools is affected.
        logger.warning("the tokenizer's pre-tokenizer splits (%s) differ from llama.cpp's qwen2 "
                       "pre-tokenizer; llama.cpp tools will tokenize text slightly differently",
                       "; ".join(p[:40] for p in patterns) or "none")

    def token_id(attribute: str) -> int | None:
        value = getattr(tokenizer, attribute, None)
        return int(value) if value is not None else None

    bos = token_id("bos_token_id")
    if bos is None and text_config is not None and getattr(text_config, "bos_token_id", None) is not None:
        bos = int(text_config.bos_token_id)  # Qwen's tokenizer has no BOS; config.json names <|endoftext|>
    eos = token_id("eos_token_id")
    if eos is None and text_config is not None:
        config_eos = getattr(text_config, "eos_token_id", None)
        eos = int(config_eos[0] if isinstance(config_eos, (list, tuple)) else config_eos) if config_eos is not None else None
    template = getattr(tokenizer, "chat_template", None)
    return {
        "tokens": tokens, "token_types": [int(t) for t in types], "merges": merges, "pre": pre,
        "bos_id": bos, "eos_id": eos, "pad_id": token_id("pad_token_id"),
        "add_bos": bool(getattr(tokenizer, "add_bos_token", False)),
        "chat_template": template if isinstance(template, str) else None,
    }


def _add_tokenizer(writer, gguf, metadata: Mapping[str, Any]) -> None:
    Keys, T = gguf.Keys.Tokenizer, gguf.GGUFValueType
    writer.add_key_value(Keys.MODEL, "gpt2", T.STRING)
    writer.add_key_value(Keys.PRE, metadata["pre"], T.STRING)
    writer.add_key_value(Keys.LIST, metadata["tokens"], T.ARRAY, sub_type=T.STRING)
    writer.add_key_value(Keys.TOKEN_TYPE, metadata["token_types"], T.ARRAY, sub_type=T.INT32)
    # llama.cpp requires the merges key for a BPE vocabulary even when there are none
    writer.add_key_value(Keys.MERGES, metadata["merges"], T.ARRAY, sub_type=T.STRING)
    for key, name in ((Keys.BOS_ID, "bos_id"), (Keys.EOS_ID, "eos_id"), (Keys.PAD_ID, "pad_id")):
        if metadata[name] is not None:
            writer.add_key_value(key, metadata[name], T.UINT32)
    writer.add_key_value(Keys.ADD_BOS, metadata["add_bos"], T.BOOL)
    if metadata["chat_template"]:
        writer.add_key_value(Keys.CHAT_TEMPLATE, metadata["chat_template"], T.STRING)


def _writer_class(gguf):
    class Writer(gguf.GGUFWriter):
        """A ``GGUFWriter`` that can write an empty typed array, which the GGUF format allows and llama.cpp
        needs (a BPE vocabulary without merges, e.g. the tiny test models', still needs the
        ``tokenizer.ggml.merges`` key: llama-vocab.cpp fails with "cannot find tokenizer merges").

        gguf-py has no public way: ``GGUFWriter._pack_val`` refuses empty arrays on purpose since
        ggml-org/llama.cpp#8774, and #22189, which would have allowed an empty array with a given
        sub-type, was closed unmerged. This override of that one private method is the whole
        workaround; ``tests/test_gguf.py::test_empty_array_writer_is_still_needed`` fails once gguf-py
        writes empty arrays itself (then drop it) and checks the bytes against ``GGUFReader``.
        """

        def _pack_val(self, val, vtype, add_vtype, sub_type=None):
            if vtype == gguf.GGUFValueType.ARRAY and sub_type is not None and len(val) == 0:
                head = self._pack("I", vtype) if add_vtype else b""
                return head + self._pack("I", sub_type) + self._pack("Q", 0)
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer


@contextlib.contextmanager
def gguf_writer(path: str | os.PathLike, arch: str) -> Iterator[Any]:
    """A ``gguf.GGUFWriter`` for ``arch`` whose file appears at ``path`` only when complete.

    The caller adds metadata and tensors inside the ``with`` block; on leaving it the header, the
    metadata and the tensors are written to ``path + ".partial"``, which then replaces ``path``
    (``os.replace``, atomic). On an error (in the block or while writing) the partial file is closed
    and removed and the error propagates; ``path`` is left as it was. Empty typed arrays can be
    written (see ``_writer_class``).

    Raises:
        ImportError: ``gguf`` is not installed.
    """
    gguf = import_gguf()
    path = os.fspath(path)
    tmp_path = path + ".partial"
    writer = _writer_class(gguf)(tmp_path, arch)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    writer.close()
    os.replace(tmp_path, path)


# ----------------------------------------------------------------------------------------------------
# public functions


def _check_out_type(out_type: str) -> str:
    if not isinstance(out_type, str) or out_type.lower() not in OUT_TYPES:
        raise ValueError(f"unknown GGUF type {out_type!r}; use one of {', '.join(OUT_TYPES)}")
    return out_type.lower()


def write_llm_gguf(model, tokenizer, path: str | os.PathLike, out_type: str = "f32", *,
                   name: str | None = None, n_threads: int | None = None) -> str:
    """Write the LLM of a Fun-ASR-Nano model as a standalone GGUF file.

    Args:
        model: ``FunAsrNanoForConditionalGeneration`` (e.g. ``load_checkpoint(path).model``), any LLM
            dtype; tensors are converted from their values as float32.
        tokenizer: its tokenizer (a transformers fast tokenizer, byte-level BPE).
        path: the ``.gguf`` file to write (replaced atomically).
        out_type: ``f32``, ``f16``, ``bf16`` (written here), or a quantized type of
            :data:`QUANTIZED_TYPES` (``q8_0``, ``q4_k_m``, ...; llama.cpp's quantizer, needs
            llama-cpp-python).
        name: ``general.name`` (default: ``Fun-ASR-Nano LLM``).
        n_threads: quantizer threads (default: all cores).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: an unknown ``out_type``, or a model that still holds LoRA layers.
        CheckpointError: an LLM architecture with no exporter, a setting llama.cpp cannot express,
            tensors that do not match the config, or an unsupported tokenizer.
        ImportError: ``gguf`` (or, for quantized types, llama-cpp-python) is not installed.
    """
    text_config = model.config.text_config
    return write_causal_lm_gguf(architecture_for(text_config), llm_state_dict(model), tokenizer, path, out_type,
                                name=name or "Fun-ASR-Nano LLM", n_threads=n_threads)


def write_causal_lm_gguf(architecture: GgufArchitecture, state: Mapping[str, torch.Tensor], tokenizer,
                         path: str | os.PathLike, out_type: str = "f32", *, name: str = "LLM",
                         n_threads: int | None = None) -> str:
    """Write a causal LLM given by its tensors as a standalone GGUF file (the work of
    :func:`write_llm_gguf`, for any LLM whose exporter is known).

    Args:
        architecture: the exporter (:mod:`funasr_nano.export.gguf_architectures`), holding the LLM's
            config; it decides the GGUF architecture, its keys and its tensor names.
        state: the tensors under transformers' causal-LM names (``model.layers.0...``,
            ``lm_head.weight``), checked by :func:`map_tensors`.
        tokenizer, path, out_type, n_threads: as :func:`write_llm_gguf`.
        name: ``general.name``.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: an unknown ``out_type``.
        CheckpointError: tensors that do not match the config, or an unsupported tokenizer.
        ImportError: ``gguf`` (or, for quantized types, llama-cpp-python) is not installed.
    """
    out_type = _check_out_type(out_type)
    path = os.fspath(path)
    if out_type in QUANTIZED_TYPES:
        import_llama_cpp()  # fail before the f32 file is written
        folder = os.path.dirname(os.path.abspath(path))
        with tempfile.TemporaryDirectory(dir=folder, prefix=".gguf-f32-") as tmp:
            source = write_causal_lm_gguf(architecture, state, tokenizer, os.path.join(tmp, "f32.gguf"), "f32",
                                          name=name)
            return quantize_gguf(source, path, out_type, n_threads=n_threads)
    gguf = import_gguf()
    text_config = architecture.config
    tensors = map_tensors(architecture, state)
    vocab = tokenizer_metadata(tokenizer, int(text_config.vocab_size), text_config)
    with gguf_writer(path, architecture.arch_string) as writer:
        writer.add_name(name)
        for key, value, value_type in architecture.hyperparameters():
            if value_type == gguf.GGUFValueType.ARRAY:  # e.g. qwen3vl.rope.dimension_sections
                writer.add_array(key, value)
            else:
                writer.add_key_value(key, value, value_type)
        writer.add_file_type(int(getattr(gguf.LlamaFileType, FLOAT_TYPES[out_type][0])))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, gguf, vocab)
        for gguf_name, tensor in tensors.items():
            data, raw_type = _tensor_data(gguf, tensor, out_type)
            writer.add_tensor(gguf_name, data, raw_dtype=raw_type)
    logger.info("wrote %s GGUF %s (%s, %d tensors)", out_type, path, architecture.arch_string, len(tensors))
    return path


def quantize_gguf(src: str | os.PathLike, dst: str | os.PathLike, out_type: str, *,
                  n_threads: int | None = None) -> str:
    """Quantize a GGUF file with llama.cpp's quantizer (``llama_model_quantize``, the code behind
    ``llama-quantize``).

    Args:
        src: an f32 (best), bf16 or f16 GGUF, e.g. from :func:`write_llm_gguf`.
        dst: the file to write (replaced atomically).
        out_type: a key of :data:`QUANTIZED_TYPES` (``q8_0``, ``q4_k_m``, ``q5_k_m``, ``q4_0``, ...) or
            ``f16``/``bf16``/``f32``.
        n_threads: threads (default: all cores).

    Returns:
        ``dst`` as a string.

    Raises:
        ValueError: an unknown ``out_type``.
        CheckpointError: llama.cpp could not read ``src`` or quantize it (the reason is in the log).
        ImportError: llama-cpp-python is not installed.
    """
    out_type = _check_out_type(out_type)
    gguf = import_gguf()
    llama_cpp = import_llama_cpp()
    src, dst = os.fspath(src), os.fspath(dst)
    check_gguf_file(src)
    file_type = QUANTIZED_TYPES.get(out_type) or FLOAT_TYPES[out_type][0]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(getattr(gguf.LlamaFileType, file_type))
    params.nthread = int(n_threads or os.cpu_count() or 1)
    tmp_path = dst + ".partial"
    status = llama_cpp.llama_model_quantize(src.encode(), tmp_path.encode(), ctypes.byref(params))
    if status != 0:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise CheckpointError(f"llama.cpp could not quantize {src} to {out_type} (status {status}; see the log)")
    os.replace(tmp_path, dst)
    logger.info("quantized %s -> %s (%s)", src, dst, out_type)
    return dst


# GGUF header: magic, uint32 version, uint64 tensor count, uint64 key-value count (ggml/src/gguf.cpp).
GGUF_MAGIC = b"GGUF"
GGUF_HEADER_BYTES = 4 + 4 + 8 + 8
# numeric metadata arrays up to this length are returned by check_gguf_file (longer ones are skipped)
SHORT_ARRAY_LENGTH = 64


class _Truncated(Exception):
    pass


class _Cursor:
    """Little-endian reads from a memory-mapped file that fail with :class:`_Truncated` at its end."""

    def __init__(self, buffer, offset: int = 0):
        self.buffer, self.offset = buffer, offset

    def read(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.buffer):
            raise _Truncated(f"the file ends inside the header (at byte {len(self.buffer)})")
        values = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += size
        return values[0] if len(values) == 1 else values

    def string(self) -> bytes:
        length = self.read("Q")
        if self.offset + length > len(self.buffer):
            raise _Truncated(f"a string of {length} bytes runs past the end of the file")
        value = self.buffer[self.offset : self.offset + length]
        self.offset += length
        return value

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            length = self.read("Q")
            self.offset += length
            if self.offset > len(self.buffer):
                raise _Truncated("a string array runs past the end of the file")


def check_gguf_file(path: str | os.PathLike) -> dict[str, Any]:
    """Check that ``path`` is a complete GGUF file before llama.cpp opens it: the magic, the version,
    the metadata and tensor index, and that every tensor's data lies inside the file.

    Why not ``gguf.GGUFReader``: it builds a numpy view per array element, so opening a Qwen3 GGUF
    (151,936 vocabulary strings) takes 25 s on our 2-core test machine against 0.25 s here, on every
    llama.cpp engine load; its faster read-only mode (ggml-org/llama.cpp#10159) was closed unmerged.
    This reader walks the same layout (ggml/src/gguf.cpp) with gguf-py's own type constants and
    block sizes, skipping the long arrays; ``tests/test_gguf.py::test_header_reader_agrees_with_gguf_reader``
    pins it to ``GGUFReader`` on every exported file type.

    Returns:
        the scalar metadata (``{"general.architecture": "qwen3", "general.file_type": 7, ...}``) and
        short numeric arrays as lists (``qwen3vl.rope.dimension_sections``); long arrays such as the
        vocabulary are skipped.

    Raises:
        CheckpointError: a missing file, a file that is not GGUF, or a truncated/corrupt one.
    """
    gguf = import_gguf()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such GGUF file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(GGUF_HEADER_BYTES)
        if len(head) < GGUF_HEADER_BYTES or head[:4] != GGUF_MAGIC:
            raise CheckpointError(f"{path}: not a GGUF file ({size} bytes, magic {head[:4]!r})")
        version = int.from_bytes(head[4:8], "little")
        if version not in (2, 3):
            raise CheckpointError(f"{path}: GGUF version {version} is not supported (2 or 3)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            try:
                return _check_index(gguf, buffer, size)
            except _Truncated as error:
                raise CheckpointError(f"{path}: truncated GGUF file ({size} bytes): {error}") from None
            except (ValueError, KeyError, OverflowError, struct.error) as error:
                raise CheckpointError(f"{path}: corrupt GGUF file: {error}") from None


def _check_index(gguf, buffer, size: int) -> dict[str, Any]:
    T = gguf.GGUFValueType
    scalar_formats = {T.UINT8: "B", T.INT8: "b", T.UINT16: "H", T.INT16: "h", T.UINT32: "I", T.INT32: "i",
                      T.FLOAT32: "f", T.BOOL: "?", T.UINT64: "Q", T.INT64: "q", T.FLOAT64: "d"}
    cursor = _Cursor(buffer, 8)
    n_tensors, n_kv = cursor.read("QQ")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cursor.string().decode("utf-8", errors="replace")
        value_type = T(cursor.read("I"))  # ValueError for an unknown type
        if value_type == T.STRING:
            metadata[key] = cursor.string().decode("utf-8", errors="replace")
        elif value_type == T.ARRAY:
            item_type, count = T(cursor.read("I")), cursor.read("Q")
            if item_type == T.STRING:
                cursor.skip_strings(count)
            elif item_type in scalar_formats and count <= SHORT_ARRAY_LENGTH:  # e.g. rope.dimension_sections
                metadata[key] = [cursor.read(scalar_formats[item_type]) for _ in range(count)]
            elif item_type in scalar_formats:
                cursor.offset += count * struct.calcsize(scalar_formats[item_type])
            else:
                raise ValueError(f"metadata {key}: arrays of {item_type.name} are not supported")
        else:
            metadata[key] = cursor.read(scalar_formats[value_type])
    tensors = []
    for _ in range(n_tensors):
        name = cursor.string().decode("utf-8", errors="replace")
        n_dims = cursor.read("I")
        if not 1 <= n_dims <= 4:
            raise ValueError(f"tensor {name} has {n_dims} dimensions")
        dims = [cursor.read("Q") for _ in range(n_dims)]
        tensor_type, offset = gguf.GGMLQuantizationType(cursor.read("I")), cursor.read("Q")
        block, block_bytes = gguf.GGML_QUANT_SIZES[tensor_type]
        tensors.append((name, offset, math.prod(dims) // block * block_bytes))
    alignment = int(metadata.get(gguf.Keys.General.ALIGNMENT, gguf.GGUF_DEFAULT_ALIGNMENT))
    data_start = -(-cursor.offset // alignment) * alignment
    for name, offset, n_bytes in tensors:
        end = data_start + offset + n_bytes
        if end > size:
            raise _Truncated(f"tensor {name} ends at byte {end}")
    return metadata
