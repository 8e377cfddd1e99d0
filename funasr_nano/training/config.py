"""Training configuration (:class:`TrainConfig`, a YAML file for ``funasr-nano train --config``) and the
records a run produces (:class:`StepLog`, :class:`EvalResult`, :class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import yaml

from ..errors import TrainingError
from ..models.fun_asr_nano.prompt import TASKS
from ..models.lora import LoraSettings
from ..validation import choice_problem, number_problem


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths in a YAML file resolve against the file's folder.

    Attributes:
        model: the checkpoint to start from (official or transformers layout).
        train_manifests: JSONL manifests (see :mod:`funasr_nano.training.data`).
        output_dir: where checkpoints and the final model go.
        dev_manifest: evaluation manifest (loss; CER for transcription; BLEU for translation).
        train_encoder, train_adaptor, train_llm: which modules learn. The official recipe trains the
            adaptor (and optionally the encoder) with the LLM frozen or under LoRA.
        lora: LoRA on the LLM (``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``); None = off.
        task_weights: sampling weight per task, e.g. ``{transcribe: 0.6, translate: 0.3,
            text_translate: 0.1}``; None = every example once per epoch. Tasks left out are not used.
        text_translation_from_translate: add a text-only translation example for every speech
            translation example that carries its transcript (``source_text``).
        batch_size: examples per micro-batch (per process).
        bucket_batches: length bucketing window, in batches: examples are drawn in this many batches'
            worth, sorted by length and cut into batches, so a batch holds similar lengths.
        max_duration: drop training audio longer than this (seconds; the model was trained on <= 30 s).
        max_tokens: drop examples longer than this many LLM positions (FunASR's max_token_length).
        max_steps: optimizer steps in the run.
        grad_accum_steps: micro-batches per optimizer step (per process).
        learning_rate: peak learning rate, reached after ``warmup_steps`` of linear warmup, then a
            cosine decay to ``min_lr_ratio * learning_rate`` at ``max_steps``.
        weight_decay: AdamW weight decay (decoupled).
        max_grad_norm: gradient clipping threshold (total L2 norm); 0 = no clipping.
        precision: ``fp32``, or ``bf16`` autocast (weights and optimizer stay fp32).
        log_every, eval_every, save_every: in optimizer steps; 0 = never (eval also runs at the end
            when a dev manifest is given).
        keep_checkpoints: how many step checkpoints to keep (oldest deleted first); 0 = all.
        eval_max_examples: cap on dev examples evaluated.
        eval_max_new_tokens: generation cap during evaluation.
        export_layout: layout of ``OUTPUT/model``: ``official``, ``hf``, or None = the source's.
        feature_cache_size: LFR features kept in memory (examples); 0 = recompute every time.
        feature_cache_mb: bound on the memory those cached features take, MiB (the least recently
            used are dropped first).
        num_workers: DataLoader worker processes that read the audio and compute the LFR features of
            the coming micro-batches while the model trains on the current one (0 = in the training
            process, between steps). Each worker keeps its own feature cache, so
            ``feature_cache_mb`` is split between them.
        prefetch_batches: micro-batches each worker prepares ahead (torch's ``prefetch_factor``).
        on_bad_audio: what an example whose audio does not decode does: ``skip`` (logged by name once,
            left out of its batch, counted in :attr:`TrainResult.skipped`) or ``error`` (the run stops
            with a :class:`~funasr_nano.errors.TrainingDataError` naming the file and manifest line).
        ctc_weight: weight of an auxiliary CTC loss on the adaptor output through the LLM's output
            layer, blank = the pad token (see :class:`funasr_nano.training.batching.SpeechLLMLoss`); helps a model
            trained from scratch align audio and text. 0 = off (the official recipe has none).
        seed: seeds weights added (LoRA), data order and dropout.
    """

    model: str
    train_manifests: tuple[str, ...]
    output_dir: str
    dev_manifest: str | None = None
    train_encoder: bool = False
    train_adaptor: bool = True
    train_llm: bool = False
    lora: LoraSettings | None = None
    task_weights: Mapping[str, float] | None = None
    text_translation_from_translate: bool = True
    batch_size: int = 8
    bucket_batches: int = 20
    max_duration: float = 30.0
    max_tokens: int = 1500
    max_steps: int = 1000
    grad_accum_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    precision: str = "fp32"
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 0
    keep_checkpoints: int = 3
    eval_max_examples: int = 200
    eval_max_new_tokens: int = 128
    export_layout: str | None = None
    feature_cache_size: int = 4096
    feature_cache_mb: float = 2048.0
    num_workers: int = 2
    prefetch_batches: int = 2
    on_bad_audio: str = "skip"
    ctc_weight: float = 0.0
    seed: int = 0

    def __post_init__(self):
        manifests = (self.train_manifests,) if isinstance(self.train_manifests, str) else tuple(self.train_manifests)
        object.__setattr__(self, "train_manifests", manifests)
        if isinstance(self.lora, Mapping):
            object.__setattr__(self, "lora", LoraSettings(**self.lora))
        if self.task_weights is not None:
            object.__setattr__(self, "task_weights", {str(k): float(v) for k, v in dict(self.task_weights).items()})
        problems = []
        if not manifests:
            problems.append("train_manifests is empty")
        problems += [number_problem(name, getattr(self, name), 1, integer=True)
                     for name in ("batch_size", "bucket_batches", "max_steps", "grad_accum_steps", "max_tokens",
                                  "prefetch_batches")]
        problems += [number_problem(name, getattr(self, name), 0, integer=True)
                     for name in ("log_every", "eval_every", "save_every", "keep_checkpoints", "warmup_steps",
                                  "feature_cache_size", "num_workers")]
        problems += [number_problem("feature_cache_mb", self.feature_cache_mb, 0.0),
                     number_problem("ctc_weight", self.ctc_weight, 0.0),
                     number_problem("learning_rate", self.learning_rate, 0.0, low_open=True),
                     number_problem("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0),
                     choice_problem("on_bad_audio", self.on_bad_audio, ("skip", "error")),
                     choice_problem("precision", self.precision, ("fp32", "bf16"))]
        if self.export_layout is not None:
            problems.append(choice_problem("export_layout", self.export_layout, ("official", "hf")))
        problems = [problem for problem in problems if problem]
        if self.task_weights is not None:
            unknown = sorted(set(self.task_weights) - set(TASKS) - {"custom"})
            if unknown:
                problems.append(f"task_weights names unknown tasks {unknown}; tasks are {sorted(TASKS)} (and custom)")
            if any(w < 0 for w in self.task_weights.values()) or not any(w > 0 for w in self.task_weights.values()):
                problems.append("task_weights must be >= 0 with at least one > 0")
        if not (self.train_encoder or self.train_adaptor or self.train_llm or self.lora):
            problems.append("nothing to train: set train_encoder, train_adaptor, train_llm or lora")
        if problems:
            raise TrainingError("bad training config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base_dir: str = ".") -> "TrainConfig":
        """Build from a mapping (a parsed YAML file); relative paths resolve against ``base_dir``.

        Raises:
            TrainingError: unknown keys, missing required keys or bad values.
        """
        values = dict(values)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise TrainingError(f"unknown training config keys {unknown}; known keys are {sorted(fields)}")
        missing = sorted(f for f in ("model", "train_manifests", "output_dir") if f not in values)
        if missing:
            raise TrainingError(f"training config misses {missing}")

        def resolve(path):
            path = os.path.expanduser(str(path))
            return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))

        manifests = values["train_manifests"]
        manifests = [manifests] if isinstance(manifests, str) else list(manifests)
        values["train_manifests"] = tuple(resolve(m) for m in manifests)
        for key in ("model", "output_dir", "dev_manifest"):
            if values.get(key) is not None:
                values[key] = resolve(values[key])
        lora = values.get("lora")
        if lora is not None:
            if not isinstance(lora, Mapping):
                raise TrainingError("lora must be a mapping with r, lora_alpha, lora_dropout, target_modules")
            try:
                values["lora"] = LoraSettings(**lora)
            except (TypeError, ValueError) as error:
                raise TrainingError(f"bad lora settings: {error}") from error
        try:
            return cls(**values)
        except TypeError as error:
            raise TrainingError(f"bad training config: {error}") from error

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a YAML training config (see the README, *Fine-tuning*)."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        except OSError as error:
            raise TrainingError(f"cannot read training config {path}: {error}") from error
        if not isinstance(values, Mapping):
            raise TrainingError(f"{path}: a training config is a YAML mapping")
        return cls.from_dict(values, base_dir=os.path.dirname(os.path.abspath(path)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StepLog:
    """One optimizer step: mean loss over its target tokens, learning rate used, gradient norm
    before clipping, and target tokens seen (all processes)."""

    step: int
    loss: float
    learning_rate: float
    grad_norm: float
    tokens: int


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Evaluation on the dev manifest at ``step``: teacher-forced loss on target tokens, CER (0..1)
    of the transcription examples, BLEU (0..100, sacrebleu) per translation task."""

    step: int
    loss: float
    examples: int
    cer: float | None
    bleu: dict[str, float]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.train` returns: every step's log since the run began (resumed runs
    include the steps before the resume), the evaluations, the exported folders, and the examples
    left out because their audio does not decode (``"FILE:LINE: reason"``, each once; see
    ``on_bad_audio``)."""

    steps: tuple[StepLog, ...]
    evaluations: tuple[EvalResult, ...]
    model_dir: str | None
    lora_dir: str | None
    skipped: tuple[str, ...] = ()

    @property
    def losses(self) -> list[float]:
        return [s.loss for s in self.steps]
