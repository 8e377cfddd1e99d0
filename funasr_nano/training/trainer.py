"""Training: the adaptor, the encoder, the LLM or LoRA adapters on it, on a mix of tasks.

The training example is the one FunASR builds (``FunASRNano.data_load_speech``, funasr 1.4.16): the
prompt of :mod:`funasr_nano.models.fun_asr_nano.prompt` with the audio slot, then the target followed by
the end-of-turn token, tokenized separately; the loss is the cross-entropy on the target tokens only (the
prompt and audio positions carry label -100).

Batches and the loss are in :mod:`.batching`. One run: :class:`.config.TrainConfig` (a YAML file
for ``funasr-nano train --config``) -> :class:`Trainer` -> :meth:`Trainer.train` -> ``OUTPUT/model``
(a checkpoint :func:`funasr_nano.load_model` loads) and, with LoRA, ``OUTPUT/lora`` (load with
``load_model(OUTPUT/model, lora=OUTPUT/lora)``).

Data order is a pure function of the seed and the position in the stream (:class:`BatchSampler`);
checkpoints (``OUTPUT/checkpoints/step-N``) hold the trainable weights, optimizer, scheduler, sampler
position and RNG state, so a resumed run continues exactly as an uninterrupted one would.

HF ``accelerate`` runs the same code on one CPU, one GPU or several (``accelerate launch -m
funasr_nano.cli train ...``): each process takes its share of every step's batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import random
import shutil
import time
from typing import Iterator, Sequence

import numpy as np
import torch

from .batching import BatchSampler, Collator, SpeechLLMLoss
from .config import EvalResult, StepLog, TrainConfig, TrainResult
from .data import Example, audio_duration, read_manifest, text_translation_examples
from ..errors import AudioDecodeError, AudioTooShortError, MissingDependencyError, TrainingError
from ..models.lora import add_lora, save_adapter, strip_lora
from ..models.fun_asr_nano.prompt import TASKS, num_audio_tokens

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# the trainer


def lr_lambda(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): linear warmup from
    ``1 / warmup_steps`` to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output_dir: str) -> str | None:
    """The newest ``OUTPUT/checkpoints/step-N`` folder, or None."""
    folder = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(folder):
        return None
    steps = [n for n in os.listdir(folder) if n.startswith("step-") and os.path.isfile(os.path.join(folder, n, "state.json"))]
    return os.path.join(folder, max(steps, key=lambda n: int(n[5:]))) if steps else None


class Trainer:
    """Runs one :class:`TrainConfig`.

    Build it, optionally :meth:`resume`, then :meth:`train`. The Python API and ``funasr-nano train``
    run the same code.

    Raises (constructor):
        TrainingError: no usable examples, or tasks in ``task_weights`` the data does not have.
        CheckpointError: the base model does not load. ManifestError: a bad manifest line.
    """

    def __init__(self, config: TrainConfig, accelerator=None):
        try:
            from accelerate import Accelerator, DistributedDataParallelKwargs
        except ImportError as error:
            raise MissingDependencyError("training needs the train extra: pip install 'funasr-nano[train]'") from error

        from ..models.chat import AUDIO_PLACEHOLDER_TOKEN
        from ..models.fun_asr_nano.prompt import chat_format_for
        from ..models.fun_asr_nano.checkpoint import load_checkpoint
        from ..models.fun_asr_nano.frontend import Frontend

        self.config = config
        # find_unused_parameters: a batch of text-only examples gives the encoder/adaptor no gradient.
        # bf16 autocast is applied here (see _autocast), not through accelerate's mixed_precision, whose
        # process-wide state cannot change between runs in one Python process.
        self.accelerator = accelerator or Accelerator(
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)

        self.loaded = load_checkpoint(config.model)  # fp32 weights; autocast handles bf16
        model = self.loaded.model
        if config.lora is not None:
            add_lora(model, config.lora)
        self._set_trainable(model)
        tokenizer = self.loaded.tokenizer
        chat = chat_format_for(tokenizer, model.config)
        audio_token = tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER_TOKEN)
        if audio_token is None or audio_token == tokenizer.unk_token_id:  # another LLM family (swapped)
            audio_token = int(model.config.audio_token_id)
        pad = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
               else tokenizer.convert_tokens_to_ids(chat.end_of_turn))
        self.frontend = Frontend(self.loaded.frontend)
        self.collator = Collator(tokenizer, self.frontend, self.loaded.use_low_frame_rate, audio_token, pad,
                                 config.feature_cache_size, int(config.feature_cache_mb * 2**20), chat=chat)

        self.examples = self._training_examples()
        self.sampler = BatchSampler([e.task for e in self.examples], [self._length(e) for e in self.examples],
                                    config.batch_size, config.bucket_batches, config.seed, config.task_weights)
        self.dev_examples = read_manifest(config.dev_manifest)[: config.eval_max_examples] if config.dev_manifest else []

        params = [p for p in model.parameters() if p.requires_grad]
        self.num_trainable = sum(p.numel() for p in params)
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(lr_lambda, warmup_steps=config.warmup_steps, max_steps=config.max_steps,
                                         min_lr_ratio=config.min_lr_ratio))
        loss = SpeechLLMLoss(model, config.ctc_weight, pad if config.ctc_weight > 0 else None)
        self.module, self.optimizer = self.accelerator.prepare(loss, optimizer)
        self.step = 0  # optimizer steps done
        self.position = 0  # batches of the sampler stream consumed (all processes)
        self.history: list[StepLog] = []
        self.evaluations: list[EvalResult] = []
        logger.info("%d training examples (%s), %d trainable parameters, %d batches per epoch",
                    len(self.examples), ", ".join(f"{t} {len(g)}" for t, g in self.sampler.groups.items()),
                    self.num_trainable, self.sampler.batches_per_epoch)

    # -- setup --------------------------------------------------------------------------------------

    @property
    def model(self):
        """The ``FunAsrNanoForConditionalGeneration`` being trained (unwrapped)."""
        return self.accelerator.unwrap_model(self.module).model

    def _set_trainable(self, model) -> None:
        config = self.config
        inner = model.model
        model.requires_grad_(False)
        inner.audio_tower.requires_grad_(config.train_encoder)
        inner.multi_modal_projector.requires_grad_(config.train_adaptor)
        if config.train_llm:
            inner.language_model.requires_grad_(True)
            model.lm_head.requires_grad_(True)
        if config.lora is not None:
            for name, parameter in inner.language_model.named_parameters():
                if "lora_" in name:
                    parameter.requires_grad_(True)
        self._train_modes(model)

    def _train_modes(self, model) -> None:
        """Frozen modules in eval mode (no dropout), learning ones in train mode."""
        config = self.config
        inner = model.model
        model.eval()
        inner.audio_tower.train(config.train_encoder)
        inner.multi_modal_projector.train(config.train_adaptor)
        inner.language_model.train(config.train_llm or config.lora is not None)

    def _training_examples(self) -> list[Example]:
        config = self.config
        examples: list[Example] = []
        for manifest in config.train_manifests:
            examples.extend(read_manifest(manifest))
        if config.text_translation_from_translate:
            examples.extend(text_translation_examples(examples))
        kept, dropped = [], 0
        for example in examples:
            if example.audio is not None:
                try:
                    duration = example.duration or audio_duration(example.audio)
                except (AudioDecodeError, AudioTooShortError) as error:
                    raise TrainingError(f"{example.source}: {error} (run `funasr-nano data check`)") from error
                if duration > config.max_duration:
                    dropped += 1
                    continue
                example = dataclasses.replace(example, duration=duration)
            if self._length(example) > config.max_tokens:
                dropped += 1
                continue
            kept.append(example)
        if dropped:
            logger.warning("dropped %d examples longer than %s s or %d tokens", dropped, config.max_duration,
                           config.max_tokens)
        if not kept:
            raise TrainingError(f"no usable training examples in {list(config.train_manifests)}")
        return kept

    def _length(self, example: Example) -> int:
        """Approximate LLM positions of an example, for bucketing and the length limit: audio positions
        from the duration, UTF-8 bytes of the texts (an upper bound on tokens)."""
        num_audio = 0
        if example.audio is not None and example.duration:
            frames = self.frontend.num_frames(int(example.duration * self.frontend.config.sample_rate))
            num_audio = num_audio_tokens(max(frames, 1), self.loaded.use_low_frame_rate)
        return num_audio + len(example.instruction.encode()) + len(example.target.encode()) + 32

    # -- checkpoints --------------------------------------------------------------------------------

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def save(self, path: str | None = None) -> str:
        """Write a resumable checkpoint (default ``OUTPUT/checkpoints/step-N``); returns its folder."""
        path = path or os.path.join(self.config.output_dir, "checkpoints", f"step-{self.step:06d}")
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            os.makedirs(path, exist_ok=True)
            torch.save(self._trainable_state(), os.path.join(path, "trainable.pt"))
            torch.save(self.optimizer.state_dict(), os.path.join(path, "optimizer.pt"))
            torch.save(self.scheduler.state_dict(), os.path.join(path, "scheduler.pt"))
            state = {"step": self.step, "position": self.position, "config": self.config.to_dict(),
                     "num_processes": accelerator.num_processes,
                     "history": [dataclasses.asdict(s) for s in self.history],
                     "evaluations": [dataclasses.asdict(e) for e in self.evaluations]}
            with open(os.path.join(path, "state.json.tmp"), "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1, ensure_ascii=False)
        accelerator.wait_for_everyone()
        os.makedirs(path, exist_ok=True)
        torch.save(_rng_state(), os.path.join(path, f"rng-{accelerator.process_index}.pt"))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:  # state.json last: its presence marks a complete checkpoint
            os.replace(os.path.join(path, "state.json.tmp"), os.path.join(path, "state.json"))
            self._prune_checkpoints()
        accelerator.wait_for_everyone()
        logger.info("saved checkpoint %s", path)
        return path

    def _prune_checkpoints(self) -> None:
        keep = self.config.keep_checkpoints
        folder = os.path.join(self.config.output_dir, "checkpoints")
        if not keep or not os.path.isdir(folder):
            return
        steps = sorted((n for n in os.listdir(folder) if n.startswith("step-")), key=lambda n: int(n[5:]))
        for name in steps[:-keep]:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)

    def resume(self, path: str | None = None) -> int:
        """Continue from a checkpoint folder (default: the newest in ``OUTPUT/checkpoints``). Restores
        the trainable weights, optimizer, scheduler, sampler position, step logs and RNG state.
        Returns the step resumed at.

        Raises:
            TrainingError: no checkpoint, or one whose trainable tensors or process count differ.
        """
        path = path or latest_checkpoint(self.config.output_dir)
        if path is None or not os.path.isfile(os.path.join(path, "state.json")):
            raise TrainingError(f"no checkpoint to resume from ({path or self.config.output_dir + '/checkpoints'})")
        with open(os.path.join(path, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
        if state["num_processes"] != self.accelerator.num_processes:
            raise TrainingError(f"{path} was written by {state['num_processes']} processes; this run has "
                                f"{self.accelerator.num_processes} (the data order would differ)")
        current = json.loads(json.dumps(self.config.to_dict()))  # as stored: tuples become lists
        changed = sorted(k for k, v in current.items() if state["config"].get(k) != v)
        if changed:
            logger.warning("resuming %s with changed settings %s; the run will differ from an uninterrupted one",
                           path, changed)
        stored = torch.load(os.path.join(path, "trainable.pt"), map_location="cpu", weights_only=True)
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if set(stored) != set(params):
            missing, extra = sorted(set(params) - set(stored)), sorted(set(stored) - set(params))
            raise TrainingError(f"{path} does not match this run's trainable parameters "
                                f"(missing {missing[:5]}, unexpected {extra[:5]}); was the config changed?")
        with torch.no_grad():
            for name, parameter in params.items():
                if stored[name].shape != parameter.shape:
                    raise TrainingError(f"{path}: {name} has shape {tuple(stored[name].shape)}, "
                                        f"the model {tuple(parameter.shape)}")
                parameter.copy_(stored[name])
        self.optimizer.load_state_dict(torch.load(os.path.join(path, "optimizer.pt"), map_location="cpu",
                                                  weights_only=False))
        self.scheduler.load_state_dict(torch.load(os.path.join(path, "scheduler.pt"), weights_only=False))
        self.step, self.position = int(state["step"]), int(state["position"])
        self.history = [StepLog(**s) for s in state["history"]]
        self.evaluations = [EvalResult(**e) for e in state["evaluations"]]
        _set_rng_state(torch.load(os.path.join(path, f"rng-{self.accelerator.process_index}.pt"), weights_only=False))
        logger.info("resumed from %s at step %d", path, self.step)
        return self.step

    # -- the loop -----------------------------------------------------------------------------------

    def _micro_batches(self) -> Iterator[list[Example]]:
        """This process's micro-batches of the next optimizer step (advances the position)."""
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_step = self.config.grad_accum_steps * processes
        for i in range(self.config.grad_accum_steps):
            indices = self.sampler.batch(self.position + i * processes + rank)
            yield [self.examples[j] for j in indices]
        self.position += per_step

    def _autocast(self):
        """bf16 autocast for ``precision: bf16`` (weights, gradients and optimizer stay fp32)."""
        device_type = self.accelerator.device.type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def train_step(self) -> StepLog:
        """One optimizer step over ``grad_accum_steps`` micro-batches per process."""
        accelerator = self.accelerator
        device = accelerator.device
        learning_rate = self.scheduler.get_last_lr()[0]
        batches = [self.collator(examples).to(device) for examples in self._micro_batches()]
        tokens = torch.tensor(sum(b.target_tokens for b in batches), device=device)
        total_tokens = accelerator.reduce(tokens, reduction="sum") if accelerator.num_processes > 1 else tokens
        loss_sum = torch.zeros((), device=device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            context = (accelerator.no_sync(self.module) if not last and accelerator.num_processes > 1
                       else contextlib.nullcontext())
            with context:
                with self._autocast():
                    loss, count = self.module(batch)
                # token-weighted mean over the whole step (all micro-batches, all processes); DDP
                # averages gradients over processes, hence the factor num_processes
                scaled = loss * count * accelerator.num_processes / total_tokens
                if not scaled.requires_grad:
                    # a text-only batch while only the encoder/adaptor learn (e.g. a swapped LLM's new adaptor
                    # with text_translate examples): no gradient reaches them; a zero term keeps backward
                    # (and DDP's reduction) valid
                    scaled = scaled + sum(p.sum() for p in self.optimizer.param_groups[0]["params"]) * 0.0
                accelerator.backward(scaled)
            loss_sum += loss.detach() * count
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(params, self.config.max_grad_norm)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if accelerator.num_processes > 1:
            loss_sum = accelerator.reduce(loss_sum, reduction="sum")
        self.step += 1
        log = StepLog(step=self.step, loss=float(loss_sum / total_tokens), learning_rate=float(learning_rate),
                      grad_norm=float(grad_norm), tokens=int(total_tokens))
        self.history.append(log)
        return log

    def train(self, until_step: int | None = None, export: bool = True) -> TrainResult:
        """Train up to ``until_step`` (default ``max_steps``); evaluate, save and log on schedule; at
        ``max_steps`` evaluate and export ``OUTPUT/model`` (and ``OUTPUT/lora``) unless ``export`` is
        False."""
        from tqdm.auto import tqdm

        config = self.config
        until = min(until_step or config.max_steps, config.max_steps)
        bar = tqdm(total=until, initial=self.step, desc="train", unit="step",
                   disable=not self.accelerator.is_main_process)
        started, first_step = time.perf_counter(), self.step
        while self.step < until:
            log = self.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{log.loss:.4f}", lr=f"{log.learning_rate:.2e}")
            if config.log_every and self.step % config.log_every == 0:
                rate = (time.perf_counter() - started) / max(1, self.step - first_step)
                logger.info("step %d/%d loss %.4f lr %.3e grad_norm %.3f (%.3f s/step)", self.step, config.max_steps,
                            log.loss, log.learning_rate, log.grad_norm, rate)
            if config.eval_every and self.step % config.eval_every == 0 and self.dev_examples:
                self.evaluate()
            if config.save_every and self.step % config.save_every == 0:
                self.save()
        bar.close()
        model_dir = lora_dir = None
        if self.step >= config.max_steps:
            if self.dev_examples and not (self.evaluations and self.evaluations[-1].step == self.step):
                self.evaluate()
            if export:
                model_dir, lora_dir = self.export()
        return TrainResult(tuple(self.history), tuple(self.evaluations), model_dir, lora_dir)

    # -- evaluation and export ----------------------------------------------------------------------

    def inference_model(self):
        """A :class:`funasr_nano.SpeechModel` over the weights being trained (LoRA active)."""
        from ..load import from_checkpoint

        return from_checkpoint(dataclasses.replace(self.loaded, model=self.model))

    @torch.no_grad()
    def evaluate(self, examples: Sequence[Example] | None = None) -> EvalResult:
        """Dev loss (token-weighted), CER of ``transcribe`` examples (whitespace ignored, jiwer) and
        corpus BLEU (sacrebleu) of ``translate``/``text_translate`` examples. Runs on the main process."""
        import jiwer
        import sacrebleu

        from ..pipeline.decoding import DecodingOptions

        examples = list(self.dev_examples if examples is None else examples)
        if not examples:
            raise TrainingError("no dev examples to evaluate (set dev_manifest)")
        result = None
        if self.accelerator.is_main_process:
            model = self.model
            model.eval()
            module = self.accelerator.unwrap_model(self.module)
            loss_sum, tokens = 0.0, 0
            for start in range(0, len(examples), self.config.batch_size):
                batch = self.collator(examples[start : start + self.config.batch_size]).to(self.accelerator.device)
                with self._autocast():
                    loss, count = module(batch)
                loss_sum += float(loss) * int(count)
                tokens += int(count)
            runner = self.inference_model()
            options = DecodingOptions(max_new_tokens=self.config.eval_max_new_tokens)
            hypotheses: dict[str, list[tuple[str, str]]] = {}
            for example in examples:
                if example.task not in TASKS:
                    continue
                output = runner.run(example.task, audio=example.audio,
                                    text=None if example.audio else example.source_text, options=options)
                hypotheses.setdefault(example.task, []).append((example.target, output.text))
            cer = None
            if "transcribe" in hypotheses:
                refs = ["".join(r.split()) or " " for r, _ in hypotheses["transcribe"]]
                hyps = ["".join(h.split()) for _, h in hypotheses["transcribe"]]
                cer = float(jiwer.cer(refs, hyps))
            bleu = {task: float(sacrebleu.corpus_bleu([h for _, h in pairs], [[r for r, _ in pairs]]).score)
                    for task, pairs in hypotheses.items() if task != "transcribe"}
            self._train_modes(model)
            result = EvalResult(step=self.step, loss=loss_sum / max(1, tokens), examples=len(examples), cer=cer,
                                bleu=bleu)
            self.evaluations.append(result)
            logger.info("eval step %d: loss %.4f%s%s", self.step, result.loss,
                        f" CER {cer:.4f}" if cer is not None else "",
                        "".join(f" BLEU[{t}] {b:.2f}" for t, b in bleu.items()))
        self.accelerator.wait_for_everyone()
        return result

    def export(self, path: str | None = None) -> tuple[str, str | None]:
        """Write the trained model: ``OUTPUT/model`` (checkpoint, LoRA not merged) and, with LoRA,
        ``OUTPUT/lora`` (peft adapter folder). Returns ``(model_dir, lora_dir or None)``."""
        import copy

        from ..export.checkpoint import write_checkpoint

        path = path or os.path.join(self.config.output_dir, "model")
        lora_dir = os.path.join(os.path.dirname(os.path.abspath(path)), "lora") if self.config.lora else None
        if self.accelerator.is_main_process:
            model = self.model
            if lora_dir:
                save_adapter(model, lora_dir)
                model = copy.deepcopy(model)
                strip_lora(model)
            # the exported model can do what its base could, plus every named task it was trained on;
            # with LoRA the new abilities live in the adapter, and the written base claims none of them
            weights = self.config.task_weights
            trained = {e.task for e in self.examples if weights is None or weights.get(e.task, 0) > 0} & set(TASKS)
            trained = set() if lora_dir else trained
            tasks = tuple(sorted(set(self.loaded.tasks) | trained, key=list(TASKS).index))
            write_checkpoint(path, dataclasses.replace(self.loaded, model=model.eval(), tasks=tasks),
                             layout=self.config.export_layout)
            self._train_modes(self.model)
            logger.info("exported %s%s", path, f" and LoRA adapter {lora_dir}" if lora_dir else "")
        self.accelerator.wait_for_everyone()
        return path, lora_dir


def train(config: TrainConfig | str | os.PathLike, resume: str | bool | None = None) -> TrainResult:
    """Run a training config (a :class:`TrainConfig` or a YAML path) to the end.

    Args:
        resume: a checkpoint folder, or True for the newest one in ``OUTPUT/checkpoints``.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_yaml(config)
    trainer = Trainer(config)
    if resume:
        trainer.resume(None if resume is True else os.fspath(resume))
    return trainer.train()
