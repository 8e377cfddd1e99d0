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

The llama.cpp objects (model, context, batches, adapters; M-RoPE positions of embedding inputs) and
the calls on them are :class:`~funasr_nano.engines.llamacpp_context.LlamaContext`'s; this module is the
:class:`~funasr_nano.engines.base.Engine` on top: inputs, rows, decoding steps.

Decoding is greedy (the first arg-max, as ``torch.argmax``) or, with ``temperature > 0``, sampling
from ``softmax(logits / temperature)`` (:mod:`funasr_nano.engines.sampling`). Every generated token's
log-probability comes from the logits it was picked from (``log_softmax`` over the vocabulary, after
the temperature), so the rows come back as :class:`~funasr_nano.engines.base.GeneratedTokens` and
``Segment.avg_logprob`` has the transformers engine's definition. Beam search is not supported.

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

import logging
import os
import threading
from typing import Mapping, Sequence

import numpy as np

from ..export.gguf import import_llama_cpp
from ..options import DecodingOptions
from .base import Engine, GeneratedTokens, LLMInput, OnToken, is_embedding
from .continuous import KV_CELLS_MIN, ContinuousScheduler, GenerationCall, ScheduledRow
from .llamacpp_context import (  # noqa: F401  (re-exported: the names callers know from here)
    KV_CACHE_TYPES, LlamaContext, mrope_1d_positions,
)
from .sampling import pick_token

logger = logging.getLogger(__name__)

# Prompt prefixes kept by default (one extra sequence id each): languages x hotword lists in use.
PREFIX_CACHE_DEFAULT = 8


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive(label: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")


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
            (``qwen3vl``; filled by :func:`~funasr_nano.engines.llamacpp_context.mrope_1d_positions`),
            else 1.
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
        self._context: LlamaContext | None = None
        self._closed = False
        self._lock = threading.Lock()  # held by the driver while it uses the context
        self._scheduler = None
        self.steps, self.step_sizes, self.prefix_hits, self.prefix_misses = 0, {}, 0, 0
        for label, value in (("n_ctx", 1 if n_ctx is None else n_ctx), ("n_seq_max", n_seq_max),
                             ("n_batch", n_batch)):
            _positive(label, value)
        if isinstance(prefix_cache, bool) or not isinstance(prefix_cache, int) or prefix_cache < 0:
            raise ValueError(f"prefix_cache must be an integer >= 0, got {prefix_cache!r}")
        if n_seq_max > n_batch:
            raise ValueError(f"n_seq_max ({n_seq_max}) must not exceed n_batch ({n_batch}): a generation step "
                             "decodes one token of every row in one batch")
        most = int(import_llama_cpp().llama_max_parallel_sequences())
        if n_seq_max + prefix_cache > most:
            raise ValueError(f"n_seq_max + prefix_cache ({n_seq_max} + {prefix_cache}) must not exceed llama.cpp's "
                             f"{most} sequences per context")
        if n_threads is not None:
            _positive("n_threads", n_threads)
        if kv_cache_type not in (None, *KV_CACHE_TYPES):
            raise ValueError(f"kv_cache_type must be one of {KV_CACHE_TYPES} or None, got {kv_cache_type!r}")
        self.model_path = os.fspath(model_path)
        self.n_threads = n_threads or _default_threads()
        self._context = context = LlamaContext(
            self.model_path, n_threads=self.n_threads, n_sequences=n_seq_max + prefix_cache, n_batch=n_batch,
            kv_cache_type=kv_cache_type, lora_adapters=lora_adapters or {})
        if stop_token_ids is None:
            stop_token_ids = [t for t in (context.llama.llama_vocab_eos(context.vocab),
                                          context.llama.llama_vocab_eot(context.vocab)) if t >= 0]
        try:
            super().__init__(stop_token_ids)
            self.n_seq_max, self.n_batch, self.seed, self.prefix_cache = n_seq_max, n_batch, seed, prefix_cache
            self.kv_cache_type, self.n_pos_per_embd = context.kv_cache_type, context.n_pos_per_embd
            self.n_ctx = context.n_ctx_train if n_ctx is None else n_ctx
            context.new_context(min(KV_CELLS_MIN, self.n_ctx))
        except BaseException:
            self.close()
            raise
        self._scheduler = self._new_scheduler()
        logger.info("llama.cpp engine: %s (hidden %d, vocab %d, %d threads, n_ctx up to %d, %s KV cache, "
                    "prefix cache %d)", self.model_path, context.n_embd, context.n_vocab, self.n_threads, self.n_ctx,
                    self.kv_cache_type, prefix_cache)

    def _new_scheduler(self) -> ContinuousScheduler:
        scheduler = ContinuousScheduler(self.n_seq_max, self.prefix_cache, self.n_ctx, self._context.clear_sequence,
                                        self._context.new_context)
        scheduler.reset(self._context.kv_cells)
        return scheduler

    # -- Engine interface ---------------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        return self._context.n_embd

    @property
    def max_positions(self) -> int:
        """The longest row (prompt + generation) one call takes: ``n_ctx`` (at most the model's
        training context, :attr:`n_ctx_train`)."""
        return min(self.n_ctx, self._context.n_ctx_train)

    @property
    def n_ctx_train(self) -> int:
        """The context length the LLM was trained with (``<arch>.context_length``)."""
        return self._context.n_ctx_train

    @property
    def kv_cells(self) -> int:
        """Cells of the KV cache allocated now."""
        return self._context.kv_cells

    @property
    def adapter_names(self) -> tuple[str, ...]:
        """Names of the LoRA adapters loaded beside the model."""
        return tuple(sorted(self._context.adapters))

    @property
    def vocab_size(self) -> int:
        """Rows of the output layer (logits per position)."""
        return self._context.n_vocab

    @property
    def eos_token_id(self) -> int:
        """The vocabulary's end-of-sequence token (``tokenizer.ggml.eos_token_id``; -1: none)."""
        return int(self._context.llama.llama_vocab_eos(self._context.vocab))

    @property
    def bos_token_id(self) -> int:
        """The vocabulary's beginning-of-sequence token (-1: none)."""
        return int(self._context.llama.llama_vocab_bos(self._context.vocab))

    def token_text(self, token_id: int) -> str:
        """A token's text as stored in the vocabulary (``""`` for -1)."""
        return self._context.token_text(token_id)

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        """``text`` as token ids of the GGUF's vocabulary (``llama_tokenize``; no BOS is added: chat
        templates write their own); ``parse_special``: special-token texts (``<|im_start|>``) become
        their ids."""
        return self._context.tokenize(text, parse_special=parse_special)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """Token ids -> text, control (special) tokens left out, as transformers' ``decode(...,
        skip_special_tokens=True)``; bytes that do not form UTF-8 become U+FFFD."""
        return self._context.detokenize(token_ids)

    def set_n_seq_max(self, n_seq_max: int) -> None:
        """Change the most rows decoded together (the context is re-created; its cached prefixes are
        lost).

        Raises:
            ValueError: not a positive integer, more than ``n_batch``, or more sequences than llama.cpp has.
            RuntimeError: rows are waiting or running.
        """
        _positive("n_seq_max", n_seq_max)
        if n_seq_max > self.n_batch:
            raise ValueError(f"n_seq_max ({n_seq_max}) must not exceed n_batch ({self.n_batch})")
        most = int(self._context.llama.llama_max_parallel_sequences())
        if n_seq_max + self.prefix_cache > most:
            raise ValueError(f"n_seq_max + prefix_cache ({n_seq_max} + {self.prefix_cache}) must not exceed "
                             f"llama.cpp's {most} sequences per context")
        with self._lock:
            if self._scheduler.waiting or self._scheduler.running:
                raise RuntimeError("set_n_seq_max while rows are decoding")
            self._context.new_context(self._context.kv_cells, n_seq_max + self.prefix_cache)
            self.n_seq_max = n_seq_max
            self._scheduler = self._new_scheduler()

    def set_threads(self, n_threads: int) -> None:
        """Change the CPU threads used from the next call on."""
        _positive("n_threads", n_threads)
        with self._lock:
            self._context.set_threads(n_threads)
            self.n_threads = n_threads

    def generate(self, inputs: Sequence[LLMInput], options: DecodingOptions, *, on_token: OnToken | None = None,
                 cancel: threading.Event | None = None) -> list[list[int]]:
        """See :meth:`Engine.generate`. The rows join the running batch at the next decoding step
        (continuous batching, module docstring); calls from several threads share the steps.

        ``cancel``: anything with ``is_set()`` (a :class:`threading.Event`); checked at every step.

        Returns:
            per input, a :class:`~funasr_nano.engines.base.GeneratedTokens`: the token ids and their
            log-probabilities (the stop token's last when the row ended on one).

        Raises:
            ValueError: ``num_beams > 1``, a LoRA adapter that is not loaded, an empty input, token ids outside the
                vocabulary, embeddings of the wrong width, or a row longer than ``n_ctx`` (or than the model's
                context window).
            RuntimeError: the engine is closed, or llama.cpp failed to decode (its reason is in the log).
        """
        if options.num_beams > 1:
            raise ValueError("the llama.cpp engine decodes greedily or by sampling; beam search (num_beams="
                             f"{options.num_beams}) needs the transformers engine")
        if self._closed:
            raise RuntimeError("the llama.cpp engine is closed")
        call = GenerationCall(options, on_token, cancel, np.random.default_rng(self.seed), len(inputs))
        rows = []
        for index, item in enumerate(inputs):
            runs = self._prepare(index, item)
            length = sum(len(data) for _, data in runs)
            need = length + options.max_new_tokens
            if need > self.max_positions:
                limit = (f"n_ctx={self.n_ctx}; create the engine with a larger n_ctx" if self.n_ctx < self.n_ctx_train
                         else f"the model's context window (n_ctx_train={self.n_ctx_train})")
                raise ValueError(f"input {index} needs {need} positions (prompt + max_new_tokens), more than {limit}")
            row = ScheduledRow(call, index, runs, item.adapter, length, need)
            if self.prefix_cache and len(runs) > 1 and runs[0][0] == "tokens":
                row.prefix = (item.adapter, runs[0][1].tobytes())  # the exact token ids, under the adapter
                row.prefix_length = len(runs[0][1])
            rows.append(row)
        if not rows:
            return []
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
        return [GeneratedTokens(tokens, logprobs) for tokens, logprobs in zip(call.results, call.logprobs)]

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
        if getattr(self, "_context", None) is None:
            return
        self._closed = True
        closed = RuntimeError("the llama.cpp engine is closed")
        if self._scheduler is not None:
            self._scheduler.fail_waiting(closed)
        with self._lock:
            if self._scheduler is not None:  # rows left running by a driver that returned
                self._scheduler.fail_running(closed)
                self._scheduler.fail_waiting(closed)
            self._context.close()
            self._context = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the ctypes library may be gone already
            pass

    def __enter__(self) -> "LlamaCppEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inputs --------------------------------------------------------------------------------------

    def _prepare(self, index: int, item: LLMInput) -> list[tuple[str, np.ndarray]]:
        """An input as ``("tokens", (n,) int32)`` and ``("embd", (n, hidden) float32)`` runs."""
        context = self._context
        if item.adapter is not None and item.adapter not in context.adapters:
            loaded = f"the engine has {sorted(context.adapters)}" if context.adapters else "the engine has none loaded"
            raise ValueError(f"input {index}: no LoRA adapter named {item.adapter!r}; {loaded} (give GGUF LoRA files "
                             "to load_model(..., lora=...); funasr-nano export gguf-lora writes them)")
        runs = []
        for part in item.parts:
            if is_embedding(part):  # a torch tensor, or a numpy array (the light runtime)
                if part.ndim != 2 or part.shape[1] != context.n_embd:
                    raise ValueError(f"input {index}: an embedding part must be (n, {context.n_embd}), "
                                     f"got {tuple(part.shape)}")
                if part.shape[0]:
                    if not isinstance(part, np.ndarray):
                        part = part.detach().to("cpu").float().numpy()
                    data = np.ascontiguousarray(part, dtype=np.float32)
                    if context.embd_divisor != 1.0:
                        data = data / np.float32(context.embd_divisor)
                    runs.append(("embd", data))
            else:
                ids = np.asarray(list(part), dtype=np.int64)
                if ids.size and (ids.min() < 0 or ids.max() >= context.n_vocab):
                    raise ValueError(f"input {index}: token ids must be in [0, {context.n_vocab}), "
                                     f"got {int(ids.min())}..{int(ids.max())}")
                if ids.size:
                    runs.append(("tokens", ids.astype(np.int32)))
        if not runs:
            raise ValueError(f"input {index} is empty")
        return runs

    # -- continuous batching (the policy is in funasr_nano.engines.continuous) ---------------------------

    def _step(self) -> None:
        """One decoding step (the driver holds ``_lock``): start the rows the scheduler admits, then
        pick the next token of every running row and decode those tokens in one ``llama_decode``."""
        try:
            admitted = self._scheduler.admit()
            adapters = {row.adapter for row in self._scheduler.running}
            if admitted:
                assert len(adapters) == 1, adapters  # the scheduler keeps one adapter per running batch
                self._context.use_adapter(admitted[0].adapter)
            for row in admitted:
                self._start(row)
            self._pick_and_decode()
        except BaseException as error:  # the KV cache is in an unknown state: every running row fails
            self._scheduler.fail_running(error)
            self._context.clear()
            self._scheduler.reset(self._context.kv_cells)
            if not isinstance(error, Exception):
                raise

    def _start(self, row: ScheduledRow) -> None:
        """Decode an admitted row's prompt into its sequence (its cached prefix copied first)."""
        runs, position = row.runs, 0
        if row.entry is not None:
            if not row.entry.decoded:
                self.prefix_misses += 1
                self._context.prefill(row.entry.seq, runs[:1], None, logits=False)
                row.entry.decoded = True
            else:
                self.prefix_hits += 1
            self._context.copy_sequence(row.entry.seq, row.seq)
            runs, position = runs[1:], row.entry.length
        row.logits = self._context.prefill(row.seq, runs, row.call.cancel, position)
        row.position = row.length
        if row.logits is None:  # cancelled
            self._scheduler.finish(row)

    def _pick_and_decode(self) -> None:
        """Pick the next token of every running row (finished rows leave at once; each token's
        log-probability is kept beside it), then decode the tokens of the rows still running in one
        ``llama_decode``."""
        scheduler = self._scheduler
        for row in [row for row in scheduler.running if row.call.cancelled]:
            scheduler.finish(row)
        for row in list(scheduler.running):
            call = row.call
            if row not in scheduler.running:  # its call failed in an earlier row's on_token
                continue
            token, logprob = pick_token(row.logits, len(row.tokens), call.options, self.stop_token_ids, call.rng)
            row.logprobs.append(logprob)
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
        logits = self._context.decode_next([row.tokens[-1] for row in running], [row.position for row in running],
                                           [row.seq for row in running])
        self.steps += 1
        self.step_sizes[len(running)] = self.step_sizes.get(len(running), 0) + 1
        for row, row_logits in zip(running, logits):
            row.position += 1
            row.logits = row_logits
