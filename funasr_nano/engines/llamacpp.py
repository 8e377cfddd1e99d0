"""The llama.cpp engine: the LLM of a GGUF file (:mod:`funasr_nano.export.gguf`) through llama-cpp-python's
low-level API.

Token-id parts of an :class:`~funasr_nano.engines.base.LLMInput` go in as token batches, embedding
parts (the audio positions) through ``llama_batch.embd``, as FunAudioLLM/Fun-ASR ``runtime/llama.cpp``
feeds its encoder output. Rows decode as parallel sequences of one context (one sequence id per row, a
unified KV cache).

**Continuous batching** (policy and bookkeeping in :mod:`funasr_nano.engines.continuous`, as llama.cpp's
server schedules its slots). Rows of every ``generate`` call, from any thread, wait in one queue; the
caller that finds the context free drives it: at every decoding step it admits waiting rows (up to
``n_seq_max`` and the KV cells they need), decodes their prompts, then decodes one token of every
running row in one ``llama_decode``; a finished row leaves at once. When the driver's rows are done it
returns and a waiting caller takes over. Each row has its own sequence, positions and sampling, so it
decodes as it would alone (the engine's contract).

**Prompt-prefix cache.** The leading token run of a row that continues with other parts (the system
turn and the instruction up to the audio slot) is decoded once into a sequence kept for it (one of
``prefix_cache`` extra sequence ids) and copied to each row that starts with it by
``llama_memory_seq_cp`` (in a unified KV cache the copy shares the cells). Keyed by the exact token ids
and the LoRA adapter (an adapter changes the keys and values); ``prefix_cache=0`` turns it off.

**KV cache size.** Allocated for what the rows need (from :data:`KV_CELLS_MIN` cells, grown at least
twice as large when rows do not fit, up to ``n_ctx``), not for ``n_ctx``; every row is checked against
``n_ctx`` and the model's context window first.

LLMs with multimodal RoPE (llama.cpp ``qwen3vl``, e.g. Qwen3-ASR's thinker exported by
:mod:`funasr_nano.export.thinker_gguf`) read four position entries per embedding input instead of one;
they are filled as llama.cpp's multimodal helper fills them for audio (``tools/mtmd/mtmd-helper.cpp``,
``set_position_mrope_1d``): the position on the t, h and w axes, and 0 on the fourth. Token inputs take
one position, which llama.cpp spreads over the axes itself.

Decoding is greedy (the first arg-max, as ``torch.argmax``) or, with ``temperature > 0``, sampling
from ``softmax(logits / temperature)``. Beam search is not supported.

LoRA adapters (GGUF LoRA files, :mod:`funasr_nano.export.gguf_lora`) are loaded once beside the model
(``llama_adapter_lora_init``: their tensors are copied into llama.cpp's buffers; the base weights are
shared, never merged) and applied at run time. llama.cpp sets adapters per context
(``llama_set_adapters_lora``), so rows of different adapters cannot share a ``llama_decode``: the
running batch has one adapter; when the oldest waiting row needs another, the batch drains and the
driver sets that adapter (setting the same again is free: llama.cpp compares first) before admitting
it. Concurrent calls for different adapters give the results they give alone: a row reads only its own
sequence and the prefix entries of its own adapter.

Install: ``pip install 'funasr-nano[llama]'`` (llama-cpp-python compiles llama.cpp, a few minutes).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from typing import Mapping, Sequence

import numpy as np

from ..errors import CheckpointError
from ..export.gguf import NATIVE_LOGGER, check_gguf_file, import_gguf, import_llama_cpp
from ..options import DecodingOptions
from .base import Engine, LLMInput, OnToken, is_embedding
from .continuous import KV_CELLS_MIN, ContinuousScheduler, GenerationCall, ScheduledRow

logger = logging.getLogger(__name__)

# KV cache element types by name
KV_CACHE_TYPES = ("f32", "f16")
# Position entries per embedding input of an M-RoPE model (llama.cpp: llama_hparams::n_pos_per_embd)
MROPE_POSITIONS = 4
# Prompt prefixes kept by default (one extra sequence id each): languages x hotword lists in use.
PREFIX_CACHE_DEFAULT = 8


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


# llama.cpp architectures whose graph scales embd input rows by sqrt(n_embd) (llama.cpp's gemma and gemma2
# models; gemma3 scales token rows only). Checked against transformers in tests/test_swap.py (gemma2).
EMBD_SCALED_ARCHITECTURES = ("gemma", "gemma2")


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LlamaCppEngine(Engine):
    """Runs a GGUF LLM with llama.cpp (CPU).

    Args:
        model_path: the ``.gguf`` file (:func:`funasr_nano.export.gguf.write_llm_gguf`).
        stop_token_ids: tokens that end a row; ``None``: the file's end-of-sequence and end-of-turn
            tokens (``tokenizer.ggml.eos_token_id``, and ``<|im_end|>`` which llama.cpp detects).
        n_threads: CPU threads for prompt and generation (default: all cores of this process).
        n_ctx: the most KV cache cells (shared by the rows decoded together; a row needs its prompt
            length plus ``max_new_tokens``); ``None``: the model's context window (``n_ctx_train``).
            The cache is allocated for what the rows need and grown up to this (module docstring);
            rows that do not fit beside the running ones wait for cells.
        n_seq_max: most rows decoded together (each decoding step decodes one token of each).
        n_batch: most positions in one ``llama_decode`` (long prompts are decoded in chunks).
        prefix_cache: prompt prefixes whose KV is kept and shared between rows (module docstring);
            0 turns the cache off.
        kv_cache_type: ``"f32"`` or ``"f16"`` K/V cache; default ``f32`` for an f32 file (so that its
            output matches the transformers model token for token) and ``f16`` otherwise.
        seed: seed of the sampler (``temperature > 0``); ``None``: a fresh one per call.
        lora_adapters: ``{name: GGUF LoRA file}`` loaded beside the model; an input's ``adapter``
            names one of them.

    Attributes:
        n_pos_per_embd: position entries llama.cpp reads per embedding input: 4 for an M-RoPE model
            (``qwen3vl``; filled by :func:`mrope_1d_positions`), else 1.
        kv_cells: cells of the KV cache allocated now (``llama_n_ctx``; at most ``n_ctx`` rounded up).
        steps: decoding steps so far (``llama_decode`` calls that decode one token of every running
            row); step_sizes: ``{running rows: steps}``.
        prefix_hits, prefix_misses: rows whose prompt prefix was found in the cache / decoded for it.

    Raises:
        ImportError: llama-cpp-python is not installed (the message names the ``llama`` extra).
        CheckpointError: a missing, truncated or corrupt GGUF file, or one llama.cpp cannot load; a
            LoRA file that is not a GGUF LoRA adapter, or one made for another base model.
        ValueError: bad sizes.
    """

    name = "llama.cpp"
    continuous_batching = True

    def __init__(self, model_path: str | os.PathLike, stop_token_ids: Sequence[int] | None = None, *,
                 n_threads: int | None = None, n_ctx: int | None = None, n_seq_max: int = 4, n_batch: int = 512,
                 kv_cache_type: str | None = None, seed: int | None = None,
                 lora_adapters: Mapping[str, str | os.PathLike] | None = None,
                 prefix_cache: int = PREFIX_CACHE_DEFAULT):
        self._llama = llama_cpp = import_llama_cpp()
        self._model = self._ctx = None
        self._closed = False
        self._adapters: dict[str, object] = {}
        self._active_adapter: str | None = None
        self._token_batch = self._embd_batch = self._embd_batch_owner = None
        self._lock = threading.Lock()  # held by the driver while it uses the context
        self._scheduler = None
        self.steps, self.step_sizes, self.prefix_hits, self.prefix_misses = 0, {}, 0, 0
        for label, value in (("n_ctx", 1 if n_ctx is None else n_ctx), ("n_seq_max", n_seq_max),
                             ("n_batch", n_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if isinstance(prefix_cache, bool) or not isinstance(prefix_cache, int) or prefix_cache < 0:
            raise ValueError(f"prefix_cache must be an integer >= 0, got {prefix_cache!r}")
        if n_seq_max > n_batch:
            raise ValueError(f"n_seq_max ({n_seq_max}) must not exceed n_batch ({n_batch}): a generation step "
                             "decodes one token of every row in one batch")
        most = int(llama_cpp.llama_max_parallel_sequences())
        if n_seq_max + prefix_cache > most:
            raise ValueError(f"n_seq_max + prefix_cache ({n_seq_max} + {prefix_cache}) must not exceed llama.cpp's "
                             f"{most} sequences per context")
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
        if kv_cache_type not in (None, *KV_CACHE_TYPES):
            raise ValueError(f"kv_cache_type must be one of {KV_CACHE_TYPES} or None, got {kv_cache_type!r}")
        self.model_path = os.fspath(model_path)
        metadata = check_gguf_file(self.model_path)
        if kv_cache_type is None:
            gguf = import_gguf()
            all_f32 = metadata.get(gguf.Keys.General.FILE_TYPE) == int(gguf.LlamaFileType.ALL_F32)
            kv_cache_type = "f32" if all_f32 else "f16"

        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model = llama_cpp.llama_model_load_from_file(self.model_path.encode(), model_params)
        if not self._model:
            raise CheckpointError(f"{self.model_path}: llama.cpp cannot load this GGUF file "
                                  f"(see the {NATIVE_LOGGER} log for its reason)")
        try:
            for name, file in dict(lora_adapters or {}).items():
                self._adapters[str(name)] = self._load_adapter(os.fspath(file), metadata)
        except BaseException:
            self.close()
            raise
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._n_embd = int(llama_cpp.llama_model_n_embd(self._model))
        self._n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
        # embedding parts follow transformers' inputs_embeds convention (what the embedding module returns);
        # llama.cpp's graphs for these architectures multiply every input row by sqrt(n_embd), embd rows
        # included, where transformers scales inside the embedding module: divide them first
        self._embd_divisor = (float(np.sqrt(self._n_embd))
                              if metadata.get("general.architecture") in EMBD_SCALED_ARCHITECTURES else 1.0)
        if stop_token_ids is None:
            stop_token_ids = [t for t in (llama_cpp.llama_vocab_eos(self._vocab), llama_cpp.llama_vocab_eot(self._vocab))
                              if t >= 0]
        super().__init__(stop_token_ids)

        self.n_threads = n_threads or _default_threads()
        self.n_seq_max, self.n_batch, self.kv_cache_type, self.seed = n_seq_max, n_batch, kv_cache_type, seed
        self.prefix_cache = prefix_cache
        self.n_ctx = self._n_ctx_train if n_ctx is None else n_ctx
        self.kv_cells = 0
        try:
            self._new_context(min(KV_CELLS_MIN, self.n_ctx))
        except BaseException:
            self.close()
            raise
        self._scheduler = ContinuousScheduler(n_seq_max, prefix_cache, self.n_ctx, self._clear_sequence,
                                              self._new_context)
        self._scheduler.reset(self.kv_cells)
        self._token_batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        rope_type = int(llama_cpp.llama_model_rope_type(self._model))
        mrope = rope_type in (llama_cpp.LLAMA_ROPE_TYPE_MROPE, llama_cpp.LLAMA_ROPE_TYPE_IMROPE)
        self.n_pos_per_embd = MROPE_POSITIONS if mrope else 1
        if mrope:  # four position entries per embedding input (llama_batch_init allocates one)
            self._embd_batch_owner = _EmbdBatch(llama_cpp, n_batch, self._n_embd, self.n_pos_per_embd)
            self._embd_batch = self._embd_batch_owner.batch
        else:
            self._embd_batch = llama_cpp.llama_batch_init(n_batch, self._n_embd, 1)
        logger.info("llama.cpp engine: %s (hidden %d, vocab %d, %d threads, n_ctx up to %d, %s KV cache, "
                    "prefix cache %d)", self.model_path, self._n_embd, self._n_vocab, self.n_threads, self.n_ctx,
                    kv_cache_type, prefix_cache)

    # -- Engine interface ---------------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        return self._n_embd

    @property
    def max_positions(self) -> int:
        """The longest row (prompt + generation) one call takes: ``n_ctx`` (at most the model's
        training context, :attr:`n_ctx_train`)."""
        return min(self.n_ctx, self._n_ctx_train)

    @property
    def n_ctx_train(self) -> int:
        """The context length the LLM was trained with (``<arch>.context_length``)."""
        return self._n_ctx_train

    @property
    def adapter_names(self) -> tuple[str, ...]:
        """Names of the LoRA adapters loaded beside the model."""
        return tuple(sorted(self._adapters))

    @property
    def vocab_size(self) -> int:
        """Rows of the output layer (logits per position)."""
        return self._n_vocab

    @property
    def eos_token_id(self) -> int:
        """The vocabulary's end-of-sequence token (``tokenizer.ggml.eos_token_id``; -1: none)."""
        return int(self._llama.llama_vocab_eos(self._vocab))

    @property
    def bos_token_id(self) -> int:
        """The vocabulary's beginning-of-sequence token (-1: none)."""
        return int(self._llama.llama_vocab_bos(self._vocab))

    def token_text(self, token_id: int) -> str:
        """A token's text as stored in the vocabulary (``""`` for -1)."""
        if token_id < 0:
            return ""
        return self._llama.llama_vocab_get_text(self._vocab, token_id).decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        """``text`` as token ids of the GGUF's vocabulary (``llama_tokenize``; no BOS is added: chat
        templates write their own); ``parse_special``: special-token texts (``<|im_start|>``) become
        their ids."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        for _ in range(2):
            tokens = (self._llama.llama_token * capacity)()
            n = self._llama.llama_tokenize(self._vocab, data, len(data), tokens, capacity, False, parse_special)
            if n >= 0:
                return list(tokens[:n])
            capacity = -n
        raise RuntimeError(f"llama_tokenize failed for {len(data)} bytes")

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """Token ids -> text, control (special) tokens left out, as transformers' ``decode(...,
        skip_special_tokens=True)``; bytes that do not form UTF-8 become U+FFFD."""
        pieces = bytearray()
        buffer = ctypes.create_string_buffer(256)
        for token in token_ids:
            n = self._llama.llama_token_to_piece(self._vocab, int(token), buffer, len(buffer), 0, False)
            if n < 0:
                buffer = ctypes.create_string_buffer(-n)
                n = self._llama.llama_token_to_piece(self._vocab, int(token), buffer, len(buffer), 0, False)
            pieces += buffer.raw[:n]
        return pieces.decode("utf-8", errors="replace")

    def set_n_seq_max(self, n_seq_max: int) -> None:
        """Change the most rows decoded together (the context is re-created; its cached prefixes are
        lost).

        Raises:
            ValueError: not a positive integer, more than ``n_batch``, or more sequences than llama.cpp has.
            RuntimeError: rows are waiting or running.
        """
        if isinstance(n_seq_max, bool) or not isinstance(n_seq_max, int) or n_seq_max < 1:
            raise ValueError(f"n_seq_max must be a positive integer, got {n_seq_max!r}")
        if n_seq_max > self.n_batch:
            raise ValueError(f"n_seq_max ({n_seq_max}) must not exceed n_batch ({self.n_batch})")
        most = int(self._llama.llama_max_parallel_sequences())
        if n_seq_max + self.prefix_cache > most:
            raise ValueError(f"n_seq_max + prefix_cache ({n_seq_max} + {self.prefix_cache}) must not exceed "
                             f"llama.cpp's {most} sequences per context")
        with self._lock:
            if self._scheduler.waiting or self._scheduler.running:
                raise RuntimeError("set_n_seq_max while rows are decoding")
            self.n_seq_max = n_seq_max
            self._new_context(self.kv_cells)
            self._scheduler = ContinuousScheduler(n_seq_max, self.prefix_cache, self.n_ctx, self._clear_sequence,
                                                  self._new_context)
            self._scheduler.reset(self.kv_cells)

    def set_threads(self, n_threads: int) -> None:
        """Change the CPU threads used from the next call on."""
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
            raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
        with self._lock:
            self._llama.llama_set_n_threads(self._ctx, n_threads, n_threads)
            self.n_threads = n_threads

    def generate(self, inputs: Sequence[LLMInput], options: DecodingOptions, *, on_token: OnToken | None = None,
                 cancel: threading.Event | None = None) -> list[list[int]]:
        """See :meth:`Engine.generate`. The rows join the running batch at the next decoding step
        (continuous batching, module docstring); calls from several threads share the steps.

        ``cancel``: anything with ``is_set()`` (a :class:`threading.Event`); checked at every step.

        Raises:
            ValueError: ``num_beams > 1``, a LoRA adapter that is not loaded, an empty input, token ids outside the
                vocabulary, embeddings of the wrong width, or a row longer than ``n_ctx`` (or than the model's
                context window).
            RuntimeError: the engine is closed, or llama.cpp failed to decode (its reason is in the log).
        """
        if options.num_beams > 1:
            raise ValueError("the llama.cpp engine decodes greedily or by sampling; beam search (num_beams="
                             f"{options.num_beams}) needs the transformers engine")
        call = GenerationCall(options, on_token, cancel, np.random.default_rng(self.seed), len(inputs))
        rows = []
        for index, item in enumerate(inputs):
            runs = self._prepare(index, item)
            length = sum(len(data) for _, data in runs)
            need = length + options.max_new_tokens
            if need > self.max_positions:
                limit = (f"n_ctx={self.n_ctx}; create the engine with a larger n_ctx" if self.n_ctx < self._n_ctx_train
                         else f"the model's context window (n_ctx_train={self._n_ctx_train})")
                raise ValueError(f"input {index} needs {need} positions (prompt + max_new_tokens), more than {limit}")
            row = ScheduledRow(call, index, runs, item.adapter, length, need)
            if self.prefix_cache and len(runs) > 1 and runs[0][0] == "tokens":
                row.prefix = (item.adapter, runs[0][1].tobytes())  # the exact token ids, under the adapter
                row.prefix_length = len(runs[0][1])
            rows.append(row)
        if not rows:
            return []
        if self._closed:
            raise RuntimeError("the llama.cpp engine is closed")
        self._scheduler.submit(rows)
        while self._scheduler.wait_to_drive(call):
            try:
                with self._lock:
                    while call.remaining and not self._closed:
                        self._step()
            finally:
                self._scheduler.stop_driving()
        if call.error is not None:
            raise call.error
        return call.results

    @property
    def waiting_rows(self) -> int:
        """Rows queued for the running batch (not yet admitted)."""
        return len(self._scheduler.waiting)

    @property
    def running_rows(self) -> int:
        """Rows in the running batch."""
        return len(self._scheduler.running)

    def close(self) -> None:
        """Free the context, the batches and the model (idempotent)."""
        llama_cpp = getattr(self, "_llama", None)
        if llama_cpp is None:
            return
        self._closed = True
        if getattr(self, "_scheduler", None) is not None:
            self._scheduler.fail_waiting(RuntimeError("the llama.cpp engine is closed"))
        lock = getattr(self, "_lock", None)
        with lock if lock is not None else contextlib.nullcontext():
            if getattr(self, "_scheduler", None) is not None:  # rows left running by a driver that returned
                self._scheduler.fail_running(RuntimeError("the llama.cpp engine is closed"))
                self._scheduler.fail_waiting(RuntimeError("the llama.cpp engine is closed"))
            for attribute in ("_token_batch", "_embd_batch"):
                batch = getattr(self, attribute, None)
                if batch is not None:
                    if attribute != "_embd_batch" or getattr(self, "_embd_batch_owner", None) is None:
                        llama_cpp.llama_batch_free(batch)
                    setattr(self, attribute, None)
            self._embd_batch_owner = None
            if getattr(self, "_ctx", None):
                llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
                llama_cpp.llama_free(self._ctx)
            self._ctx = None
            for adapter in getattr(self, "_adapters", {}).values():
                llama_cpp.llama_adapter_lora_free(adapter)
            self._adapters = {}
            if getattr(self, "_model", None):
                llama_cpp.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the ctypes library may be gone already
            pass

    def __enter__(self) -> "LlamaCppEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------

    def _load_adapter(self, file: str, model_metadata: Mapping) -> object:
        """``llama_adapter_lora_init`` of one GGUF LoRA file, checked first by
        :func:`funasr_nano.export.gguf_lora.check_lora_gguf`."""
        from ..export.gguf_lora import check_lora_gguf

        check_lora_gguf(file, model_metadata.get("general.architecture"))
        adapter = self._llama.llama_adapter_lora_init(self._model, file.encode())
        if not adapter:
            raise CheckpointError(f"{file}: llama.cpp cannot apply this LoRA adapter to {self.model_path}: its "
                                  "tensors do not fit the model's (an adapter for another base model?), see the "
                                  f"{NATIVE_LOGGER} log for the tensor")
        return adapter

    def _use_adapter(self, name: str | None) -> None:
        """Set adapter ``name`` (``None``: none) on the context, scale 1 (llama.cpp applies alpha / r)."""
        if name == self._active_adapter:
            return
        llama_cpp = self._llama
        if name is None:
            status = llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[name])
            scales = (ctypes.c_float * 1)(1.0)
            status = llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, scales)
        if status != 0:
            raise RuntimeError(f"llama_set_adapters_lora failed with status {status} (adapter {name!r})")
        self._active_adapter = name

    def _prepare(self, index: int, item: LLMInput) -> list[tuple[str, np.ndarray]]:
        """An input as ``("tokens", (n,) int32)`` and ``("embd", (n, hidden) float32)`` runs."""
        if item.adapter is not None and item.adapter not in self._adapters:
            loaded = f"the engine has {sorted(self._adapters)}" if self._adapters else "the engine has none loaded"
            raise ValueError(f"input {index}: no LoRA adapter named {item.adapter!r}; {loaded} (give GGUF LoRA files "
                             "to load_model(..., lora=...); funasr-nano export gguf-lora writes them)")
        runs = []
        for part in item.parts:
            if is_embedding(part):  # a torch tensor, or a numpy array (the light runtime)
                if part.ndim != 2 or part.shape[1] != self._n_embd:
                    raise ValueError(f"input {index}: an embedding part must be (n, {self._n_embd}), "
                                     f"got {tuple(part.shape)}")
                if part.shape[0]:
                    if not isinstance(part, np.ndarray):
                        part = part.detach().to("cpu").float().numpy()
                    data = np.ascontiguousarray(part, dtype=np.float32)
                    if self._embd_divisor != 1.0:
                        data = data / np.float32(self._embd_divisor)
                    runs.append(("embd", data))
            else:
                ids = np.asarray(list(part), dtype=np.int64)
                if ids.size and (ids.min() < 0 or ids.max() >= self._n_vocab):
                    raise ValueError(f"input {index}: token ids must be in [0, {self._n_vocab}), "
                                     f"got {int(ids.min())}..{int(ids.max())}")
                if ids.size:
                    runs.append(("tokens", ids.astype(np.int32)))
        if not runs:
            raise ValueError(f"input {index} is empty")
        return runs

    def _decode(self, batch, n_tokens: int) -> None:
        batch.n_tokens = n_tokens
        status = self._llama.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} (1: no KV cache slot, -1: invalid batch; "
                               f"see the {NATIVE_LOGGER} log)")

    def _logits(self, output_index: int) -> np.ndarray:
        pointer = self._llama.llama_get_logits_ith(self._ctx, output_index)
        if not pointer:
            raise RuntimeError(f"llama.cpp returned no logits for output {output_index}")
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()

    def _prefill(self, seq: int, runs, cancel, position: int = 0, logits: bool = True) -> np.ndarray | None:
        """Decode prompt ``runs`` as sequence ``seq`` from ``position`` on; returns the logits after the
        last position (``None`` when cancelled, or without ``logits``)."""
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
        return self._logits(n - 1) if logits else None

    def _pick(self, logits: np.ndarray, generated: int, options: DecodingOptions, rng) -> int:
        if generated < options.min_new_tokens:
            logits[list(self.stop_token_ids)] = -np.inf
        if options.temperature <= 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / options.temperature
        scaled -= scaled.max()
        probs = np.exp(scaled)
        probs /= probs.sum()
        return int(rng.choice(len(probs), p=probs))

    # -- continuous batching (the policy is in funasr_nano.engines.continuous) ---------------------------

    def _step(self) -> None:
        """One decoding step (the driver holds ``_lock``): start the rows the scheduler admits, then
        pick the next token of every running row and decode those tokens in one ``llama_decode``."""
        try:
            admitted = self._scheduler.admit()
            adapters = {row.adapter for row in self._scheduler.running}
            if admitted:
                assert len(adapters) == 1, adapters  # the scheduler keeps one adapter per running batch
                self._use_adapter(admitted[0].adapter)
            for row in admitted:
                self._start(row)
            self._pick_and_decode()
        except BaseException as error:  # the KV cache is in an unknown state: every running row fails
            self._scheduler.fail_running(error)
            self._llama.llama_memory_clear(self._llama.llama_get_memory(self._ctx), True)
            self._scheduler.reset(self.kv_cells)
            if not isinstance(error, Exception):
                raise

    def _start(self, row: ScheduledRow) -> None:
        """Decode an admitted row's prompt into its sequence (its cached prefix copied first)."""
        llama = self._llama
        runs, position = row.runs, 0
        if row.entry is not None:
            if not row.entry.decoded:
                self.prefix_misses += 1
                self._prefill(row.entry.seq, runs[:1], None, logits=False)
                row.entry.decoded = True
            else:
                self.prefix_hits += 1
            llama.llama_memory_seq_cp(llama.llama_get_memory(self._ctx), row.entry.seq, row.seq, -1, -1)
            runs, position = runs[1:], row.entry.length
        row.logits = self._prefill(row.seq, runs, row.call.cancel, position)
        row.position = row.length
        if row.logits is None:  # cancelled
            self._scheduler.finish(row)

    def _pick_and_decode(self) -> None:
        """Pick the next token of every running row (finished rows leave at once), then decode the
        tokens of the rows still running in one ``llama_decode``."""
        scheduler = self._scheduler
        for row in [row for row in scheduler.running if row.call.cancelled]:
            scheduler.finish(row)
        for row in list(scheduler.running):
            call = row.call
            if row not in scheduler.running:  # its call failed in an earlier row's on_token
                continue
            token = self._pick(row.logits, len(row.tokens), call.options, call.rng)
            if token in self.stop_token_ids:
                scheduler.finish(row)
                continue
            row.tokens.append(token)
            try:
                stop = call.on_token is not None and call.on_token(row.index, list(row.tokens))
            except Exception as error:  # the caller's bug ends its call only
                for other in [r for r in scheduler.running if r.call is call]:
                    scheduler.finish(other, error)
                continue
            if stop or len(row.tokens) >= call.options.max_new_tokens:
                scheduler.finish(row)
        for row in [row for row in scheduler.running if row.call.cancelled]:
            scheduler.finish(row)
        running = list(scheduler.running)
        if not running:
            return
        batch = self._token_batch
        for i, row in enumerate(running):
            batch.token[i] = row.tokens[-1]
            batch.pos[i] = row.position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = row.seq
            batch.logits[i] = 1
            row.position += 1
        self._decode(batch, len(running))
        self.steps += 1
        self.step_sizes[len(running)] = self.step_sizes.get(len(running), 0) + 1
        for i, row in enumerate(running):
            row.logits = self._logits(i)

    def _clear_sequence(self, seq: int) -> None:
        self._llama.llama_memory_seq_rm(self._llama.llama_get_memory(self._ctx), seq, -1, -1)

    def _new_context(self, n_cells: int) -> int:
        """(Re-)create the context with ``n_cells`` KV cells (the old one is freed with its cache);
        returns the cells llama.cpp allocated."""
        llama_cpp = self._llama
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_cells
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_seq_max + self.prefix_cache  # rows, then cached prefixes
        params.n_threads = params.n_threads_batch = self.n_threads
        params.kv_unified = True  # any row may use any cell; a shared prefix's cells are one copy
        kv_type = llama_cpp.GGML_TYPE_F32 if self.kv_cache_type == "f32" else llama_cpp.GGML_TYPE_F16
        params.type_k = params.type_v = kv_type
        if self.kv_cache_type == "f32":  # the CPU flash-attention kernel rounds K/V to f16
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        context = llama_cpp.llama_init_from_model(self._model, params)
        if not context:  # the old context (if any) stays
            raise CheckpointError(f"{self.model_path}: llama.cpp cannot create a context "
                                  f"(n_ctx={n_cells}, n_seq_max={params.n_seq_max}; see the log)")
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
        self._ctx, self._active_adapter = context, None
        self.kv_cells = int(llama_cpp.llama_n_ctx(self._ctx))
        return self.kv_cells
