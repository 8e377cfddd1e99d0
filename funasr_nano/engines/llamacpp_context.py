"""The native side of the llama.cpp engine: one GGUF model, its LoRA adapters and one context (the KV
cache, its sequences and the batches that feed it), through llama-cpp-python's low-level API.

:class:`LlamaContext` owns every llama.cpp object and does the calls; what to decode and when (the
rows, continuous batching, the prompt-prefix cache, sampling) is the engine's
(:class:`funasr_nano.engines.llamacpp.LlamaCppEngine`) and the scheduler's
(:mod:`funasr_nano.engines.continuous`). It is not thread-safe: the engine's driver holds a lock while it
uses it.

Inputs go in as token batches or, for embedding runs (the audio positions), through
``llama_batch.embd``, as FunAudioLLM/Fun-ASR ``runtime/llama.cpp`` feeds its encoder output. LLMs with
multimodal RoPE (llama.cpp ``qwen3vl``, e.g. Qwen3-ASR's thinker exported by
:mod:`funasr_nano.export.thinker_gguf`) read four position entries per embedding input instead of one;
they are filled as llama.cpp's multimodal helper fills them for audio (``tools/mtmd/mtmd-helper.cpp``,
``set_position_mrope_1d``): the position on the t, h and w axes, and 0 on the fourth. Token inputs take
one position, which llama.cpp spreads over the axes itself.
"""

from __future__ import annotations

import ctypes
import os
from typing import Mapping, Sequence

import numpy as np

from ..errors import CheckpointError
from ..export.gguf import NATIVE_LOGGER, check_gguf_file, import_gguf, import_llama_cpp

# KV cache element types by name
KV_CACHE_TYPES = ("f32", "f16")
# Position entries per embedding input of an M-RoPE model (llama.cpp: llama_hparams::n_pos_per_embd)
MROPE_POSITIONS = 4
# llama.cpp architectures whose graph scales embd input rows by sqrt(n_embd) (llama.cpp's gemma and gemma2
# models; gemma3 scales token rows only). Checked against transformers in tests/test_swap.py (gemma2).
EMBD_SCALED_ARCHITECTURES = ("gemma", "gemma2")


def mrope_1d_positions(positions: np.ndarray) -> np.ndarray:
    """``(n,)`` positions of 1-D input (audio) -> the ``(4 * n,)`` entries an M-RoPE model reads, axis
    by axis (``[t_0..t_n, h_0..h_n, w_0..w_n, e_0..e_n]``): the position on t, h and w, 0 on the fourth
    axis, as ``mtmd-helper.cpp`` ``decode_embd_batch::set_position_mrope_1d`` fills them."""
    positions = np.asarray(positions, dtype=np.int32)
    return np.concatenate([positions, positions, positions, np.zeros_like(positions)])


class _EmbdBatch:
    """A ``llama_batch`` of embedding inputs with room for ``n_pos`` position entries per input
    (``llama_batch_init`` allocates one); its arrays belong to this object (never
    ``llama_batch_free`` it)."""

    def __init__(self, llama_cpp, n_batch: int, n_embd: int, n_pos: int):
        self._embd = (ctypes.c_float * (n_batch * n_embd))()
        self._pos = (llama_cpp.llama_pos * (n_batch * n_pos))()
        self._n_seq_id = (ctypes.c_int32 * n_batch)()
        self._seq_ids = [(llama_cpp.llama_seq_id * 1)() for _ in range(n_batch)]
        self._seq_id = (ctypes.POINTER(llama_cpp.llama_seq_id) * (n_batch + 1))(
            *[ctypes.cast(item, ctypes.POINTER(llama_cpp.llama_seq_id)) for item in self._seq_ids])
        self._logits = (ctypes.c_int8 * n_batch)()
        self.batch = llama_cpp.llama_batch(
            n_tokens=0, token=None, embd=ctypes.cast(self._embd, ctypes.POINTER(ctypes.c_float)),
            pos=ctypes.cast(self._pos, ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=ctypes.cast(self._n_seq_id, ctypes.POINTER(ctypes.c_int32)),
            seq_id=ctypes.cast(self._seq_id, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id))),
            logits=ctypes.cast(self._logits, ctypes.POINTER(ctypes.c_int8)))


class LlamaContext:
    """A GGUF model loaded on the CPU, its LoRA adapters, one context and its two batches.

    Args:
        model_path: the ``.gguf`` file (checked by :func:`funasr_nano.export.gguf.check_gguf_file` first).
        n_threads: CPU threads for prompt and generation.
        n_sequences: sequence ids of the context (rows plus cached prefixes).
        n_batch: most positions in one ``llama_decode`` (longer prompts are decoded in chunks).
        kv_cache_type: ``"f32"``, ``"f16"``, or ``None``: f32 for an all-f32 file, else f16.
        lora_adapters: ``{name: GGUF LoRA file}`` loaded beside the model.

    Attributes:
        n_vocab, n_embd, n_ctx_train: the model's vocabulary, embedding width and training context.
        n_pos_per_embd: position entries per embedding input (4 for M-RoPE, else 1).
        embd_divisor: what embedding rows are divided by before llama.cpp scales them (``sqrt(n_embd)``
            for :data:`EMBD_SCALED_ARCHITECTURES`, else 1).
        kv_cells: cells of the KV cache allocated now (``llama_n_ctx``; 0 until :meth:`new_context`
            creates the context, which the owner calls first).

    Raises:
        CheckpointError: a missing, truncated or corrupt GGUF file, one llama.cpp cannot load, or a LoRA
            file that is not a GGUF LoRA adapter for this model.
    """

    def __init__(self, model_path: str, *, n_threads: int, n_sequences: int, n_batch: int,
                 kv_cache_type: str | None, lora_adapters: Mapping[str, str | os.PathLike]):
        self.llama = llama_cpp = import_llama_cpp()
        self.model = self.ctx = None
        self.adapters: dict[str, object] = {}
        self.active_adapter: str | None = None
        self._token_batch = self._embd_batch = self._embd_batch_owner = None
        self.model_path = model_path
        metadata = check_gguf_file(model_path)
        if kv_cache_type is None:
            gguf = import_gguf()
            all_f32 = metadata.get(gguf.Keys.General.FILE_TYPE) == int(gguf.LlamaFileType.ALL_F32)
            kv_cache_type = "f32" if all_f32 else "f16"
        self.kv_cache_type, self.n_threads, self.n_sequences, self.n_batch = kv_cache_type, n_threads, n_sequences, n_batch
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self.model = llama_cpp.llama_model_load_from_file(model_path.encode(), model_params)
        if not self.model:
            raise CheckpointError(f"{model_path}: llama.cpp cannot load this GGUF file "
                                  f"(see the {NATIVE_LOGGER} log for its reason)")
        try:
            for name, file in dict(lora_adapters).items():
                self.adapters[str(name)] = self._load_adapter(os.fspath(file), metadata)
            self.vocab = llama_cpp.llama_model_get_vocab(self.model)
            self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
            self.n_embd = int(llama_cpp.llama_model_n_embd(self.model))
            self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self.model))
            # embedding parts follow transformers' inputs_embeds convention (what the embedding module
            # returns); llama.cpp's graphs for these architectures multiply every input row by sqrt(n_embd),
            # embd rows included, where transformers scales inside the embedding module: divide them first
            self.embd_divisor = (float(np.sqrt(self.n_embd))
                                 if metadata.get("general.architecture") in EMBD_SCALED_ARCHITECTURES else 1.0)
            self.kv_cells = 0
            self._token_batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
            rope_type = int(llama_cpp.llama_model_rope_type(self.model))
            mrope = rope_type in (llama_cpp.LLAMA_ROPE_TYPE_MROPE, llama_cpp.LLAMA_ROPE_TYPE_IMROPE)
            self.n_pos_per_embd = MROPE_POSITIONS if mrope else 1
            if mrope:  # four position entries per embedding input (llama_batch_init allocates one)
                self._embd_batch_owner = _EmbdBatch(llama_cpp, n_batch, self.n_embd, self.n_pos_per_embd)
                self._embd_batch = self._embd_batch_owner.batch
            else:
                self._embd_batch = llama_cpp.llama_batch_init(n_batch, self.n_embd, 1)
        except BaseException:
            self.close()
            raise

    # -- the context and its KV cache -------------------------------------------------------------------

    def new_context(self, n_cells: int, n_sequences: int | None = None) -> int:
        """(Re-)create the context with ``n_cells`` KV cells (and ``n_sequences`` sequence ids, default
        unchanged); the old one is freed with its cache. Returns the cells llama.cpp allocated.

        Raises:
            CheckpointError: llama.cpp cannot create it (the old context, if any, stays).
        """
        llama_cpp = self.llama
        n_sequences = self.n_sequences if n_sequences is None else n_sequences
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_cells
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = n_sequences
        params.n_threads = params.n_threads_batch = self.n_threads
        params.kv_unified = True  # any row may use any cell; a shared prefix's cells are one copy
        kv_type = llama_cpp.GGML_TYPE_F32 if self.kv_cache_type == "f32" else llama_cpp.GGML_TYPE_F16
        params.type_k = params.type_v = kv_type
        if self.kv_cache_type == "f32":  # the CPU flash-attention kernel rounds K/V to f16
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        context = llama_cpp.llama_init_from_model(self.model, params)
        if not context:
            raise CheckpointError(f"{self.model_path}: llama.cpp cannot create a context "
                                  f"(n_ctx={n_cells}, n_seq_max={n_sequences}; see the log)")
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
        self.ctx, self.active_adapter, self.n_sequences = context, None, n_sequences
        self.kv_cells = int(llama_cpp.llama_n_ctx(self.ctx))
        return self.kv_cells

    def set_threads(self, n_threads: int) -> None:
        self.llama.llama_set_n_threads(self.ctx, n_threads, n_threads)
        self.n_threads = n_threads

    def clear_sequence(self, seq: int) -> None:
        """Remove sequence ``seq``'s cells from the KV cache."""
        self.llama.llama_memory_seq_rm(self.llama.llama_get_memory(self.ctx), seq, -1, -1)

    def copy_sequence(self, source: int, target: int) -> None:
        """Give ``target`` the cells of ``source`` (shared, not copied, in a unified cache)."""
        self.llama.llama_memory_seq_cp(self.llama.llama_get_memory(self.ctx), source, target, -1, -1)

    def clear(self) -> None:
        """Empty the whole KV cache."""
        self.llama.llama_memory_clear(self.llama.llama_get_memory(self.ctx), True)

    # -- LoRA adapters ------------------------------------------------------------------------------------

    def _load_adapter(self, file: str, model_metadata: Mapping) -> object:
        """``llama_adapter_lora_init`` of one GGUF LoRA file, checked first by
        :func:`funasr_nano.export.gguf_lora.check_lora_gguf`."""
        from ..export.gguf_lora import check_lora_gguf

        check_lora_gguf(file, model_metadata.get("general.architecture"))
        adapter = self.llama.llama_adapter_lora_init(self.model, file.encode())
        if not adapter:
            raise CheckpointError(f"{file}: llama.cpp cannot apply this LoRA adapter to {self.model_path}: its "
                                  "tensors do not fit the model's (an adapter for another base model?), see the "
                                  f"{NATIVE_LOGGER} log for the tensor")
        return adapter

    def use_adapter(self, name: str | None) -> None:
        """Set adapter ``name`` (``None``: none) on the context, scale 1 (llama.cpp applies alpha / r)."""
        if name == self.active_adapter:
            return
        llama_cpp = self.llama
        if name is None:
            status = llama_cpp.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[name])
            scales = (ctypes.c_float * 1)(1.0)
            status = llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales)
        if status != 0:
            raise RuntimeError(f"llama_set_adapters_lora failed with status {status} (adapter {name!r})")
        self.active_adapter = name

    # -- decoding -------------------------------------------------------------------------------------------

    def _decode(self, batch, n_tokens: int) -> None:
        batch.n_tokens = n_tokens
        status = self.llama.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} (1: no KV cache slot, -1: invalid batch; "
                               f"see the {NATIVE_LOGGER} log)")

    def logits(self, output_index: int) -> np.ndarray:
        """``(n_vocab,)`` float32 logits of output ``output_index`` of the last decode (a copy)."""
        pointer = self.llama.llama_get_logits_ith(self.ctx, output_index)
        if not pointer:
            raise RuntimeError(f"llama.cpp returned no logits for output {output_index}")
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def prefill(self, seq: int, runs: Sequence[tuple[str, np.ndarray]], cancel, position: int = 0,
                logits: bool = True) -> np.ndarray | None:
        """Decode prompt ``runs`` (``("tokens", (n,) int32)`` and ``("embd", (n, n_embd) float32)``) as
        sequence ``seq`` from ``position`` on, ``n_batch`` positions per ``llama_decode``; returns the
        logits after the last position (``None`` when ``cancel`` is set between chunks, or without
        ``logits``).

        Raises:
            RuntimeError: llama.cpp failed to decode.
        """
        last_run = len(runs) - 1
        n = 0
        for run_index, (kind, data) in enumerate(runs):
            batch = self._embd_batch if kind == "embd" else self._token_batch
            for begin in range(0, len(data), self.n_batch):
                if cancel is not None and cancel.is_set():
                    return None
                chunk = data[begin : begin + self.n_batch]
                n = len(chunk)
                if kind == "embd":
                    ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
                else:
                    np.ctypeslib.as_array(batch.token, shape=(n,))[:] = chunk
                positions = np.arange(position, position + n, dtype=np.int32)
                if kind == "embd" and self.n_pos_per_embd > 1:
                    entries = np.ctypeslib.as_array(batch.pos, shape=(self.n_pos_per_embd * n,))
                    entries[:] = mrope_1d_positions(positions)
                else:
                    np.ctypeslib.as_array(batch.pos, shape=(n,))[:] = positions
                np.ctypeslib.as_array(batch.n_seq_id, shape=(n,))[:] = 1
                for i in range(n):
                    batch.seq_id[i][0] = seq
                flags = np.ctypeslib.as_array(batch.logits, shape=(n,))
                flags[:] = 0
                if logits and run_index == last_run and begin + n == len(data):
                    flags[n - 1] = 1
                self._decode(batch, n)
                position += n
        return self.logits(n - 1) if logits else None

    def decode_next(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int]) -> list[np.ndarray]:
        """One token of each of several sequences in one ``llama_decode`` (a decoding step): token
        ``tokens[i]`` at ``positions[i]`` of sequence ``seqs[i]``; returns each one's next logits.

        Raises:
            RuntimeError: llama.cpp failed to decode.
        """
        batch = self._token_batch
        for i, (token, position, seq) in enumerate(zip(tokens, positions, seqs)):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1
        self._decode(batch, len(tokens))
        return [self.logits(i) for i in range(len(tokens))]

    # -- the vocabulary -------------------------------------------------------------------------------------

    def token_text(self, token_id: int) -> str:
        """A token's text as stored in the vocabulary (``""`` for -1)."""
        if token_id < 0:
            return ""
        return self.llama.llama_vocab_get_text(self.vocab, token_id).decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        """``text`` as token ids (``llama_tokenize``, no BOS added); ``parse_special``: special-token
        texts become their ids."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        for _ in range(2):
            tokens = (self.llama.llama_token * capacity)()
            n = self.llama.llama_tokenize(self.vocab, data, len(data), tokens, capacity, False, parse_special)
            if n >= 0:
                return list(tokens[:n])
            capacity = -n
        raise RuntimeError(f"llama_tokenize failed for {len(data)} bytes")

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """Token ids -> text, control tokens left out; bytes that do not form UTF-8 become U+FFFD."""
        pieces = bytearray()
        buffer = ctypes.create_string_buffer(256)
        for token in token_ids:
            n = self.llama.llama_token_to_piece(self.vocab, int(token), buffer, len(buffer), 0, False)
            if n < 0:
                buffer = ctypes.create_string_buffer(-n)
                n = self.llama.llama_token_to_piece(self.vocab, int(token), buffer, len(buffer), 0, False)
            pieces += buffer.raw[:n]
        return pieces.decode("utf-8", errors="replace")

    # -- freeing --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context, the batches, the adapters and the model (idempotent)."""
        llama_cpp = self.llama
        for attribute in ("_token_batch", "_embd_batch"):
            batch = getattr(self, attribute, None)
            if batch is not None:
                if attribute != "_embd_batch" or self._embd_batch_owner is None:
                    llama_cpp.llama_batch_free(batch)
                setattr(self, attribute, None)
        self._embd_batch_owner = None
        if self.ctx:
            llama_cpp.llama_set_adapters_lora(self.ctx, None, 0, None)
            llama_cpp.llama_free(self.ctx)
        self.ctx = None
        for adapter in self.adapters.values():
            llama_cpp.llama_adapter_lora_free(adapter)
        self.adapters = {}
        if self.model:
            llama_cpp.llama_model_free(self.model)
        self.model = None
