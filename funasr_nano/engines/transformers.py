"""The reference engine: the LLM in torch through transformers' ``generate`` with ``inputs_embeds``.

Rows are left-padded with zero embeddings that the attention mask hides; transformers derives each row's
position ids from the mask, so a row decodes as it would alone. LoRA adapters are chosen per row
(:func:`funasr_nano.models.lora.row_adapters`, peft's mixed-adapter batches), so concurrent calls with
different adapters never wait for each other.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

import torch

from ..options import DecodingOptions
from .base import Engine, GeneratedTokens, LLMInput, OnToken, embed_parts

logger = logging.getLogger(__name__)


class _StepCriteria:
    """A ``transformers`` stopping criterion that reports every new token of every running row to
    ``on_token`` and stops rows it asks to stop, or all rows on ``cancel``.

    ``stopped_at`` maps a row to its length when it was stopped: ``generate`` fills a stopped row with
    padding until the other rows end, and the caller cuts it there. ``logprobs`` collects, per row, the
    log-probability of each new token under the step's scores (recorded by :class:`_ScoreRecorder`, the
    last logits processor, so after temperature). One instance per ``generate`` call.
    """

    def __init__(self, stop_token_ids: Sequence[int], on_token: OnToken | None, cancel: threading.Event | None,
                 per_row: bool):
        self.stop_token_ids = set(stop_token_ids)
        self.on_token = on_token
        self.cancel = cancel
        self.per_row = per_row  # False for beam search: rows are beams, not inputs
        self.stopped_at: dict[int, int] = {}
        self.finished: set[int] = set()
        self.step_scores: torch.Tensor | None = None  # (rows, vocab) processed scores of this step
        self.logprobs: dict[int, list[float]] = {}

    def _record(self, input_ids: torch.LongTensor) -> None:
        if not self.per_row or self.step_scores is None:
            return
        logprobs = torch.log_softmax(self.step_scores.float(), dim=-1)
        chosen = logprobs.gather(1, input_ids[:, -1:].to(logprobs.device))[:, 0].tolist()
        for row, value in enumerate(chosen):
            if row not in self.stopped_at and row not in self.finished:
                self.logprobs.setdefault(row, []).append(value)
        self.step_scores = None

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        # with inputs_embeds, input_ids holds only the generated tokens
        self._record(input_ids)
        rows = input_ids.shape[0]
        if self.cancel is not None and self.cancel.is_set():
            for row in range(rows):
                self.stopped_at.setdefault(row, input_ids.shape[1])
            return torch.ones(rows, dtype=torch.bool, device=input_ids.device)
        done = []
        for row in range(rows):
            if row in self.stopped_at or row in self.finished:
                done.append(row in self.stopped_at)
                continue
            if int(input_ids[row, -1]) in self.stop_token_ids:
                self.finished.add(row)
                done.append(False)  # generate ends it by its eos_token_id
                continue
            stop = False
            if self.per_row and self.on_token is not None:
                stop = bool(self.on_token(row, input_ids[row].tolist()))
            if stop:
                self.stopped_at[row] = input_ids.shape[1]
            done.append(stop)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _ScoreRecorder:
    """The last logits processor: hands each step's scores to the :class:`_StepCriteria` that turns
    them into the chosen tokens' log-probabilities."""

    def __init__(self, criteria: _StepCriteria):
        self.criteria = criteria

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.criteria.step_scores = scores
        return scores


class TransformersEngine(Engine):
    """Decodes with a transformers model whose ``generate`` accepts ``inputs_embeds``.

    Args:
        model: the generating module (e.g. ``FunAsrNanoForConditionalGeneration`` or any
            ``*ForCausalLM``); its input embeddings embed the token parts.
        stop_token_ids: tokens that end a row.
        pad_token_id: the id ``generate`` pads finished rows with (default: the first stop token).
        max_positions: the LLM's context window (default: its config's ``max_position_embeddings``).
    """

    name = "transformers"

    def __init__(self, model: torch.nn.Module, stop_token_ids: Sequence[int], pad_token_id: int | None = None,
                 max_positions: int | None = None):
        super().__init__(stop_token_ids)
        self.model = model
        self.pad_token_id = pad_token_id if pad_token_id is not None else self.stop_token_ids[0]
        config = getattr(model.config, "text_config", model.config)
        self._max_positions = int(max_positions or getattr(config, "max_position_embeddings", 32768))
        self._hidden_size = int(config.hidden_size)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def max_positions(self) -> int:
        return self._max_positions

    @property
    def supports_beam_search(self) -> bool:
        return True

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @torch.inference_mode()
    def embed(self, llm_input: LLMInput) -> torch.Tensor:
        """``(length, hidden)`` input embeddings of one row, in the LLM's dtype (:func:`.base.embed_parts`)."""
        return embed_parts(llm_input, self.model.get_input_embeddings())

    @torch.inference_mode()
    def generate(self, inputs: Sequence[LLMInput], options: DecodingOptions, *, on_token: OnToken | None = None,
                 cancel: threading.Event | None = None) -> list[list[int]]:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        from ..models.lora import row_adapters

        if not inputs:
            return []
        rows = [self.embed(item) for item in inputs]
        length = max(row.shape[0] for row in rows)
        inputs_embeds = torch.zeros(len(rows), length, self.hidden_size, dtype=self.dtype, device=self.device)
        attention_mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for index, row in enumerate(rows):  # left padding: real positions at the end
            inputs_embeds[index, length - row.shape[0]:] = row
            attention_mask[index, length - row.shape[0]:] = 1
        # An explicit config: a checkpoint's generation_config.json (Qwen3 ships sampling settings) must
        # not change decoding; FunASR builds its LLM from config.json and decodes greedily.
        sampling = (dict(do_sample=True, temperature=options.temperature, top_k=0, top_p=1.0)
                    if options.temperature > 0 else dict(do_sample=False))
        config = GenerationConfig(
            max_new_tokens=options.max_new_tokens, min_new_tokens=options.min_new_tokens or None,
            num_beams=options.num_beams, eos_token_id=list(self.stop_token_ids), pad_token_id=self.pad_token_id,
            **sampling,
        )
        criteria = _StepCriteria(self.stop_token_ids, on_token, cancel, per_row=options.num_beams == 1)
        adapters = [item.adapter for item in inputs]
        adapters = [name for name in adapters for _ in range(options.num_beams)]  # beams are rows too
        with row_adapters(self.model, adapters):
            output = self.model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                         generation_config=config, stopping_criteria=StoppingCriteriaList([criteria]),
                                         logits_processor=LogitsProcessorList([_ScoreRecorder(criteria)]))
        results = []
        for index, row in enumerate(output.tolist()):
            if options.num_beams == 1 and index in criteria.stopped_at:
                row = row[: criteria.stopped_at[index]]
            tokens = []
            for token in row:
                if token in self.stop_token_ids:
                    break
                tokens.append(token)
            logprobs = criteria.logprobs.get(index) if options.num_beams == 1 else None
            if logprobs is not None:  # the tokens, then the stop token if the row ended on one
                logprobs = logprobs[: len(tokens) + (len(tokens) < len(row))]
            results.append(GeneratedTokens(tokens, logprobs))
        return results
