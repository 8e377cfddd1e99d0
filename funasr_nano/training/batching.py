"""Batching for training: which examples go together (:class:`BatchSampler`: task mix, length buckets,
resumable by position), how they become tensors (:class:`Collator` -> :class:`Batch`), how a torch
``DataLoader`` prepares them ahead in worker processes (:func:`batch_loader`), and the loss
(:class:`SpeechLLMLoss`).

The tensors follow FunASR's ``FunASRNano.data_load_speech`` (funasr 1.4.16): ChatML prompt with the
audio slot (:mod:`funasr_nano.models.fun_asr_nano.prompt`), then the target + the end-of-turn token tokenized separately; labels
are -100 everywhere but on the target tokens.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AudioDecodeError, AudioTooShortError, TrainingDataError, TrainingError
from ..manifests import Example
from ..models.chat import ChatFormat
from ..models.fun_asr_nano.prompt import build_prompt_ids, num_audio_tokens

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of positions without loss (torch cross_entropy's default ignore_index)


# ----------------------------------------------------------------------------------------------------
# data order


class BatchSampler:
    """Deterministic, resumable stream of batches with a task mix and length bucketing.

    Epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e])``: each task's examples are
    shuffled; as many draws as there are examples (of the used tasks) pick a task by weight and take
    that task's next example (cycling when a small task runs out); each window of ``bucket_batches *
    batch_size`` draws is sorted by length and cut into batches; the epoch's batches are shuffled. The
    stream is the concatenation of epochs, so position ``n`` always gives the same batch.
    """

    def __init__(self, tasks: Sequence[str], lengths: Sequence[int], batch_size: int, bucket_batches: int,
                 seed: int, weights: Mapping[str, float] | None = None):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.window = batch_size * bucket_batches
        self.seed = seed
        groups: dict[str, list[int]] = {}
        for index, task in enumerate(tasks):
            groups.setdefault(task, []).append(index)
        if weights is None:
            weights = {task: float(len(indices)) for task, indices in groups.items()}
        missing = sorted(t for t, w in weights.items() if w > 0 and t not in groups)
        if missing:
            raise TrainingError(f"task_weights asks for tasks {missing} but the training data has none; "
                                f"it has {sorted(groups)}")
        self.tasks = sorted(t for t in groups if weights.get(t, 0) > 0)
        unused = sorted(set(groups) - set(self.tasks))
        if unused:
            logger.warning("tasks %s have no weight and are not trained", unused)
        self.groups = {t: np.asarray(groups[t]) for t in self.tasks}
        total = sum(weights[t] for t in self.tasks)
        self.probabilities = np.asarray([weights[t] / total for t in self.tasks])
        self.draws_per_epoch = sum(len(g) for g in self.groups.values())
        full, rest = divmod(self.draws_per_epoch, self.window)
        self.batches_per_epoch = full * -(-self.window // batch_size) + -(-rest // batch_size)
        self._cached: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        """The batches (lists of example indices) of ``epoch``."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        batches = self._draw_epoch(epoch)
        self._cached = (epoch, batches)
        return batches

    def _draw_epoch(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        orders = {t: rng.permutation(self.groups[t]) for t in self.tasks}
        choices = rng.choice(len(self.tasks), size=self.draws_per_epoch, p=self.probabilities)
        cursors = {t: 0 for t in self.tasks}
        drawn = []
        for choice in choices:
            task = self.tasks[choice]
            drawn.append(int(orders[task][cursors[task] % len(orders[task])]))
            cursors[task] += 1
        batches = []
        for start in range(0, len(drawn), self.window):
            window = drawn[start : start + self.window]
            window = [window[i] for i in np.argsort(self.lengths[window], kind="stable")]
            batches.extend(window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch(self, position: int) -> list[int]:
        """The batch at ``position`` (0-based) of the endless stream."""
        epoch, offset = divmod(position, self.batches_per_epoch)
        return self.epoch(epoch)[offset]


# ----------------------------------------------------------------------------------------------------
# examples -> tensors


@dataclasses.dataclass
class Batch:
    """A padded micro-batch.

    Attributes:
        input_ids: ``(batch, length)`` int64, right-padded; audio positions hold the audio token.
        attention_mask: ``(batch, length)`` int64, 1 = real position.
        labels: ``(batch, length)`` int64, target tokens (end of turn included) and -100 elsewhere.
        audio_mask: ``(batch, length)`` bool, True at audio positions.
        features: ``(audio_rows, frames, 560)`` float32 LFR features of the rows that have audio, in
            row order, right-padded.
        feature_lengths: ``(audio_rows,)`` valid frames per audio row.
        num_audio: ``(audio_rows,)`` audio positions per audio row (<= its frames).
        transcripts: ``(audio_rows, tokens)`` int64 token ids of each audio row's transcript (the
            target of a transcription, the ``source_text`` of a translation), padded with -100; for
            the auxiliary CTC loss. A row without a transcript has length 0.
        transcript_lengths: ``(audio_rows,)`` transcript tokens per audio row.
        skipped: ``"FILE:LINE: reason"`` of the examples left out of this batch because their audio
            does not decode (``on_bad_audio: skip``); the batch may then have no rows at all.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    audio_mask: torch.Tensor
    features: torch.Tensor
    feature_lengths: torch.Tensor
    num_audio: torch.Tensor
    transcripts: torch.Tensor
    transcript_lengths: torch.Tensor
    skipped: tuple[str, ...] = ()

    def to(self, device) -> "Batch":
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                                            if f.name != "skipped"})

    @property
    def rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


class FeatureCache:
    """A least-recently-used cache of feature tensors, bounded in entries and in bytes."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> torch.Tensor | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if self.max_entries < 1 or size > self.max_bytes or key in self._items:
            return
        self._items[key] = value
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= dropped.numel() * dropped.element_size()


class Collator:
    """Examples -> :class:`Batch`: audio -> LFR features -> audio position count (the official
    ``use_low_frame_rate`` rule), prompt tokens, target tokens + the end-of-turn token.

    ``on_bad_audio``: ``"skip"`` leaves an example whose audio does not decode out of its batch
    (named in :attr:`Batch.skipped`); ``"error"`` raises :class:`~funasr_nano.errors.TrainingDataError`."""

    def __init__(self, tokenizer, frontend, use_low_frame_rate: bool, audio_token_id: int, pad_token_id: int,
                 cache_size: int = 0, cache_bytes: int = 2 << 30, chat: ChatFormat | None = None,
                 on_bad_audio: str = "error"):
        self.tokenizer = tokenizer
        self.chat = chat or ChatFormat.from_tokenizer(tokenizer)  # the checkpoint's (chat_format_for)
        self.frontend = frontend
        self.use_low_frame_rate = use_low_frame_rate
        self.audio_token_id = audio_token_id
        self.pad_token_id = pad_token_id
        self.cache = FeatureCache(cache_size, cache_bytes)
        self.on_bad_audio = on_bad_audio

    def features(self, path: str) -> torch.Tensor:
        """LFR features of the audio file ``path`` (cached)."""
        cached = self.cache.get(path)
        if cached is None:
            cached = self._features(path)
            self.cache.put(path, cached)
        return cached

    def _features(self, path: str) -> torch.Tensor:
        from ..audio.io import load_audio

        return self.frontend(load_audio(path))

    def encode(self, example: Example) -> tuple[list[int], list[int], list[int], torch.Tensor | None]:
        """``(input_ids, labels, audio_mask, features or None)`` of one example.

        Raises:
            TrainingDataError: its audio does not decode (whatever ``on_bad_audio`` says).
        """
        try:
            features = self.features(example.audio) if example.audio is not None else None
        except (AudioDecodeError, AudioTooShortError) as error:
            raise TrainingDataError(f"{example.source}: {error} (run `funasr-nano data check`)") from error
        num_audio = num_audio_tokens(features.shape[0], self.use_low_frame_rate) if features is not None else 0
        prompt = build_prompt_ids(self.tokenizer, example.instruction, num_audio, chat=self.chat)
        target = self.tokenizer.encode(example.target + self.chat.end_of_turn, add_special_tokens=False)
        ids = prompt.prefix_ids + [self.audio_token_id] * num_audio + prompt.suffix_ids + target
        labels = [IGNORE_INDEX] * prompt.length + target
        audio_mask = [0] * len(prompt.prefix_ids) + [1] * num_audio + [0] * (len(prompt.suffix_ids) + len(target))
        return ids, labels, audio_mask, features

    def __call__(self, examples: Sequence[Example]) -> Batch:
        rows, kept, skipped = [], [], []
        for example in examples:
            try:
                rows.append(self.encode(example))
            except TrainingDataError as error:
                if self.on_bad_audio != "skip":
                    raise
                skipped.append(str(error))
                continue
            kept.append(example)
        examples = kept
        length = max((len(r[0]) for r in rows), default=0)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        audio_mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, (ids, lab, amask, _) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            attention_mask[i, : len(ids)] = 1
            audio_mask[i, : len(amask)] = torch.tensor(amask, dtype=torch.bool)
        feats = [r[3] for r in rows if r[3] is not None]
        dim = self.frontend.config.feature_dim
        frames = max((f.shape[0] for f in feats), default=0)
        features = torch.zeros((len(feats), frames, dim))
        for i, f in enumerate(feats):
            features[i, : f.shape[0]] = f
        feature_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        num_audio = torch.tensor([sum(r[2]) for r in rows if r[3] is not None], dtype=torch.long)
        spoken = [self.transcript_ids(e) for e, r in zip(examples, rows) if r[3] is not None]
        transcripts = torch.full((len(spoken), max((len(t) for t in spoken), default=0)), IGNORE_INDEX,
                                 dtype=torch.long)
        for i, ids in enumerate(spoken):
            transcripts[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        transcript_lengths = torch.tensor([len(t) for t in spoken], dtype=torch.long)
        return Batch(input_ids, attention_mask, labels, audio_mask, features, feature_lengths, num_audio,
                     transcripts, transcript_lengths, tuple(skipped))

    def transcript_ids(self, example: Example) -> list[int]:
        """Token ids of what ``example``'s audio says: the target of a transcription, the
        ``source_text`` of a translation; ``[]`` when unknown."""
        text = example.target if example.task == "transcribe" else example.source_text
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []


class _StreamBatches(torch.utils.data.Dataset):
    """Position in the :class:`BatchSampler` stream -> ``(position, Batch)``."""

    def __init__(self, sampler: BatchSampler, examples: Sequence[Example], collator: Collator):
        self.sampler, self.examples, self.collator = sampler, examples, collator

    def __getitem__(self, position: int) -> tuple[int, Batch]:
        return position, self.collator([self.examples[i] for i in self.sampler.batch(position)])


class _ProcessPositions(torch.utils.data.Sampler):
    """The stream positions one process trains on from ``start`` on, endlessly: per optimizer step,
    micro-batch ``i`` of process ``rank`` is position ``start + i * processes + rank``, and the step
    consumes ``grad_accum_steps * processes`` positions."""

    def __init__(self, start: int, grad_accum_steps: int, processes: int, rank: int):
        self.start, self.grad_accum_steps, self.processes, self.rank = start, grad_accum_steps, processes, rank

    def __iter__(self) -> Iterator[int]:
        step_start = self.start
        while True:
            for i in range(self.grad_accum_steps):
                yield step_start + i * self.processes + self.rank
            step_start += self.grad_accum_steps * self.processes


def _as_is(item):
    return item


def batch_loader(sampler: BatchSampler, examples: Sequence[Example], collator: Collator, start: int,
                 grad_accum_steps: int, processes: int = 1, rank: int = 0, num_workers: int = 0,
                 prefetch_batches: int = 2) -> torch.utils.data.DataLoader:
    """A torch ``DataLoader`` yielding ``(position, Batch)`` for the micro-batches process ``rank``
    trains on, from stream position ``start`` on (endless). With ``num_workers`` > 0 the audio is
    read and the LFR features computed in worker processes, ``prefetch_batches`` micro-batches ahead
    per worker, while the model trains; the batches are the same either way (a pure function of the
    position), so a resumed run does not depend on the worker count."""
    return torch.utils.data.DataLoader(
        _StreamBatches(sampler, examples, collator), batch_size=None, collate_fn=_as_is,
        sampler=_ProcessPositions(start, grad_accum_steps, processes, rank), num_workers=num_workers,
        prefetch_factor=prefetch_batches if num_workers else None,
        # its own generator: a DataLoader draws its workers' base seed from the global torch RNG
        # otherwise, which would move the dropout masks of a resumed run
        generator=torch.Generator().manual_seed(start))


class SpeechLLMLoss(torch.nn.Module):
    """``FunAsrNanoForConditionalGeneration`` -> mean cross-entropy on the target tokens of a batch.

    The audio path is :meth:`funasr_nano.models.fun_asr_nano.FunAsrNanoModel.encode` (encoder, then adaptor, with the feature
    mask), with gradients; each audio row's first ``num_audio`` adaptor frames replace its audio
    positions, as FunASR splices ``fake_token_len`` frames.

    With ``ctc_weight > 0`` an auxiliary CTC loss (per transcript token, times ``ctc_weight``) is added:
    the adaptor frames that enter the LLM are classified by the LLM's output layer (``lm_head``, tied to
    the input embeddings in small models) against the audio's transcript, with ``blank_id`` as the CTC
    blank. It pulls each audio position towards the embedding of the token spoken there, which makes
    training from scratch find the audio-text alignment much sooner (no parameters are added).
    """

    def __init__(self, model, ctc_weight: float = 0.0, blank_id: int | None = None):
        super().__init__()
        if ctc_weight > 0 and blank_id is None:
            raise ValueError("a CTC loss needs blank_id")
        self.model = model
        self.ctc_weight = ctc_weight
        self.blank_id = blank_id

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss, target token count)``; loss is a scalar float32."""
        inner = self.model.model
        embeds = self.model.get_input_embeddings()(batch.input_ids)  # (B, L, H)
        if batch.features.shape[0]:
            frames = batch.features.shape[1]
            mask = torch.arange(frames, device=batch.features.device)[None, :] < batch.feature_lengths[:, None]
            encoded = inner.audio_tower(input_features=batch.features, input_features_mask=mask).last_hidden_state
            adapted = inner.multi_modal_projector(encoded, mask)  # (A, frames, H)
            audio = torch.cat([adapted[i, :n] for i, n in enumerate(batch.num_audio.tolist())])  # (sum n, H)
            embeds = embeds.masked_scatter(batch.audio_mask[..., None], audio.to(embeds.dtype))
            ctc = self.ctc_loss(adapted, batch) if self.ctc_weight > 0 else None
        else:
            ctc = None
        hidden = inner.language_model(inputs_embeds=embeds, attention_mask=batch.attention_mask).last_hidden_state
        targets = batch.labels[:, 1:]
        keep = targets != IGNORE_INDEX  # (B, L-1): positions whose next token is a target
        logits = self.model.lm_head(hidden[:, :-1][keep])  # (tokens, vocab): only where there is a loss
        loss = F.cross_entropy(logits.float(), targets[keep])
        if ctc is not None:
            loss = loss + self.ctc_weight * ctc
        return loss, keep.sum()

    def ctc_loss(self, adapted: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        """Mean CTC loss per transcript token over the audio rows that have a transcript (None if none).

        ``adapted``: ``(audio_rows, frames, hidden)`` adaptor output; only each row's first
        ``num_audio`` frames (those the LLM sees) are used."""
        rows = (batch.transcript_lengths > 0) & (batch.transcript_lengths <= batch.num_audio)
        if not bool(rows.any()):
            return None
        log_probs = F.log_softmax(self.model.lm_head(adapted[rows]).float(), dim=-1)  # (R, frames, V)
        lengths = batch.transcript_lengths[rows]
        targets = batch.transcripts[rows]
        targets = torch.cat([targets[i, :n] for i, n in enumerate(lengths.tolist())])
        total = F.ctc_loss(log_probs.transpose(0, 1), targets, batch.num_audio[rows], lengths, blank=self.blank_id,
                           reduction="sum", zero_infinity=True)
        return total / lengths.sum()


