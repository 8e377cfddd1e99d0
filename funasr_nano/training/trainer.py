"""Training: the adaptor, the encoder, the LLM or LoRA adapters on it, on a mix of tasks.

The training example is the one FunASR builds (``FunASRNano.data_load_speech``, funasr 1.4.16): the
prompt of :mod:`funasr_nano.models.fun_asr_nano.prompt` with the audio slot, then the target followed by
the end-of-turn token, tokenized separately; the loss is the cross-entropy on the target tokens only (the
prompt and audio positions carry label -100).

Batches and the loss are in :mod:`.batching`. One run: :class:`.config.TrainConfig` (a YAML file
for ``funasr-nano train --config``) -> :class:`Trainer` -> :meth:`Trainer.train` -> ``OUTPUT/model``
(a checkpoint :func:`funasr_nano.load_model` loads) and, with LoRA, ``OUTPUT/lora`` (load with
``load_model(OUTPUT/model, lora=OUTPUT/lora)``).

Data order is a pure function of the seed and the position in the stream (:class:`BatchSampler`); a
torch ``DataLoader`` reads the audio and computes the features of the coming micro-batches in worker
processes (``num_workers``). Checkpoints (``OUTPUT/checkpoints/step-N``) are accelerate's
``save_state`` folders (trainable weights, optimizer, scheduler, every process's RNG state) plus our
``state.json`` (step, sampler position, logs), so a resumed run continues exactly as an uninterrupted
one would. The learning-rate schedule is transformers' ``cosine_warmup_with_min_lr``
(:func:`lr_schedule`).

HF ``accelerate`` runs the same code on one CPU, one GPU or several (``accelerate launch -m
funasr_nano.cli train ...``): each process takes its share of every step's batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import time
from typing import Sequence

import numpy as np
import torch

from .batching import Batch, BatchSampler, Collator, SpeechLLMLoss, batch_loader
from .config import EvalResult, StepLog, TrainConfig, TrainResult
from .data import audio_duration, text_translation_examples
from ..errors import AudioDecodeError, AudioTooShortError, MissingDependencyError, TrainingDataError, TrainingError
from ..manifests import Example, read_manifest
from ..models.lora import add_lora, save_adapter, strip_lora
from ..models.fun_asr_nano.prompt import TASKS, num_audio_tokens

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# the trainer


def lr_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int, min_lr_ratio: float):
    """transformers' ``get_cosine_with_min_lr_schedule_with_warmup_lr_rate`` (the Trainer's
    ``cosine_warmup_with_min_lr``): at optimizer step ``s`` (0-based) the learning rate is the
    optimizer's times ``(s + 1) / warmup_steps`` during the warmup, then
    ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * p)) / 2`` with
    ``p = (s - warmup_steps + 1) / (max_steps - warmup_steps)``, so the last step (``max_steps - 1``)
    runs at ``min_lr_ratio`` times the peak. Returns a ``torch.optim.lr_scheduler.LambdaLR``."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup_lr_rate

    return get_cosine_with_min_lr_schedule_with_warmup_lr_rate(
        optimizer, num_warmup_steps=warmup_steps, num_training_steps=max_steps, min_lr_rate=min_lr_ratio)


STATE_FILE = "state.json"  # ours, written last: its presence marks a complete checkpoint
SPEED_SETTINGS = ("num_workers", "prefetch_batches")  # change the speed of a run, not its results


def latest_checkpoint(output_dir: str) -> str | None:
    """The newest ``OUTPUT/checkpoints/step-N`` folder, or None."""
    folder = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(folder):
        return None
    steps = [n for n in os.listdir(folder) if n.startswith("step-") and os.path.isfile(os.path.join(folder, n, STATE_FILE))]
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
        workers = max(1, config.num_workers)  # each worker holds its own feature cache
        self.collator = Collator(tokenizer, self.frontend, self.loaded.use_low_frame_rate, audio_token, pad,
                                 config.feature_cache_size // workers, int(config.feature_cache_mb * 2**20) // workers,
                                 chat=chat, on_bad_audio="skip")  # reported to _bad_audio, which decides
        self.skipped: dict[str, None] = {}  # "FILE:LINE: reason" of examples left out, in order

        self.examples = self._training_examples()
        self.sampler = BatchSampler([e.task for e in self.examples], [self._length(e) for e in self.examples],
                                    config.batch_size, config.bucket_batches, config.seed, config.task_weights)
        self.dev_examples = read_manifest(config.dev_manifest)[: config.eval_max_examples] if config.dev_manifest else []

        params = [p for p in model.parameters() if p.requires_grad]
        self.num_trainable = sum(p.numel() for p in params)
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = lr_schedule(optimizer, config.warmup_steps, config.max_steps, config.min_lr_ratio)
        loss = SpeechLLMLoss(model, config.ctc_weight, pad if config.ctc_weight > 0 else None)
        self.module, self.optimizer = self.accelerator.prepare(loss, optimizer)
        # not through prepare: accelerate's scheduler wrapper steps once per process on every step
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.accelerator.register_save_state_pre_hook(self._keep_trainable_weights)
        self.accelerator.register_load_state_pre_hook(self._load_trainable_weights)
        self._loader = None  # iterator over (position, Batch) from batch_loader, made on first use
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
                    self._bad_audio(f"{example.source}: {error} (run `funasr-nano data check`)")
                    continue
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

    def _bad_audio(self, problem: str) -> None:
        """An example whose audio does not decode: skipped and logged once, or the run stops."""
        if self.config.on_bad_audio != "skip":
            raise TrainingDataError(problem)
        if problem not in self.skipped:
            logger.warning("skipping an unreadable training example (on_bad_audio: skip): %s", problem)
            self.skipped[problem] = None

    def _length(self, example: Example) -> int:
        """Approximate LLM positions of an example, for bucketing and the length limit: audio positions
        from the duration, UTF-8 bytes of the texts (an upper bound on tokens)."""
        num_audio = 0
        if example.audio is not None and example.duration:
            frames = self.frontend.num_frames(int(example.duration * self.frontend.config.sample_rate))
            num_audio = num_audio_tokens(max(frames, 1), self.loaded.use_low_frame_rate)
        return num_audio + len(example.instruction.encode()) + len(example.target.encode()) + 32

    # -- checkpoints --------------------------------------------------------------------------------

    def _keep_trainable_weights(self, models, weights, output_dir) -> None:
        """accelerate's save-state hook: each model's file holds its trainable tensors only (the
        frozen ones are the base checkpoint's), under the prepared module's names."""
        for index, model in enumerate(models):
            trainable = {name for name, p in model.named_parameters() if p.requires_grad}
            # clones: safetensors refuses views (the encoder's q/k/v weights share one storage)
            weights[index] = {name: tensor.detach().clone() for name, tensor in weights[index].items()
                              if name in trainable}

    def _load_trainable_weights(self, models, input_dir) -> None:
        """accelerate's load-state hook: copy the stored trainable tensors (checked by
        :meth:`_check_stored_weights`) into the model, and take the model off accelerate's list
        (safetensors' ``load_model`` refuses a model whose own tensors share storage)."""
        from safetensors.torch import load_file

        from accelerate.utils import SAFE_WEIGHTS_NAME

        stored = load_file(os.path.join(input_dir, SAFE_WEIGHTS_NAME))
        with torch.no_grad():
            for name, parameter in self.module.named_parameters():
                if parameter.requires_grad:
                    parameter.copy_(stored[name])
        models.clear()  # accelerate's local list for this load: nothing left for it to load

    def save(self, path: str | None = None) -> str:
        """Write a resumable checkpoint (default ``OUTPUT/checkpoints/step-N``); returns its folder.

        The folder is accelerate's ``save_state`` (``model.safetensors`` with the trainable tensors,
        ``optimizer.bin``, the scheduler as ``custom_checkpoint_0.pkl``, ``random_states_<process>.pkl``)
        and ``state.json`` (step, sampler position, config, logs), written last."""
        path = path or os.path.join(self.config.output_dir, "checkpoints", f"step-{self.step:06d}")
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        accelerator.save_state(path)
        if accelerator.is_main_process:
            state = {"step": self.step, "position": self.position, "config": self.config.to_dict(),
                     "num_processes": accelerator.num_processes,
                     "history": [dataclasses.asdict(s) for s in self.history],
                     "evaluations": [dataclasses.asdict(e) for e in self.evaluations],
                     "skipped": list(self.skipped)}
            with open(os.path.join(path, STATE_FILE + ".tmp"), "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1, ensure_ascii=False)
            os.replace(os.path.join(path, STATE_FILE + ".tmp"), os.path.join(path, STATE_FILE))
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
        if path is None or not os.path.isfile(os.path.join(path, STATE_FILE)):
            raise TrainingError(f"no checkpoint to resume from ({path or self.config.output_dir + '/checkpoints'})")
        with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
        if state["num_processes"] != self.accelerator.num_processes:
            raise TrainingError(f"{path} was written by {state['num_processes']} processes; this run has "
                                f"{self.accelerator.num_processes} (the data order would differ)")
        current = json.loads(json.dumps(self.config.to_dict()))  # as stored: tuples become lists
        changed = sorted(k for k, v in current.items() if state["config"].get(k) != v and k not in SPEED_SETTINGS)
        if changed:
            logger.warning("resuming %s with changed settings %s; the run will differ from an uninterrupted one",
                           path, changed)
        self._check_stored_weights(path)
        # accelerate restores the optimizer, the scheduler and this process's RNG state; the trainable
        # tensors come in through _load_trainable_weights
        self.accelerator.load_state(path)
        self.step, self.position = int(state["step"]), int(state["position"])
        self.history = [StepLog(**s) for s in state["history"]]
        self.evaluations = [EvalResult(**e) for e in state["evaluations"]]
        self.skipped = dict.fromkeys(state.get("skipped", ()))
        self._loader = None
        logger.info("resumed from %s at step %d", path, self.step)
        return self.step

    def _check_stored_weights(self, path: str) -> None:
        """The checkpoint's tensors are exactly this run's trainable parameters, with their shapes."""
        from safetensors import safe_open

        from accelerate.utils import SAFE_WEIGHTS_NAME

        weights_path = os.path.join(path, SAFE_WEIGHTS_NAME)
        if not os.path.isfile(weights_path):
            raise TrainingError(f"{path}: no {SAFE_WEIGHTS_NAME} (not a checkpoint of this version?)")
        with safe_open(weights_path, framework="pt") as f:
            stored = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        params = {n: tuple(p.shape) for n, p in self.module.named_parameters() if p.requires_grad}
        if set(stored) != set(params):
            missing, extra = sorted(set(params) - set(stored)), sorted(set(stored) - set(params))
            raise TrainingError(f"{path} does not match this run's trainable parameters "
                                f"(missing {missing[:5]}, unexpected {extra[:5]}); was the config changed?")
        for name, shape in params.items():
            if stored[name] != shape:
                raise TrainingError(f"{path}: {name} has shape {stored[name]}, the model {shape}")

    # -- the loop -----------------------------------------------------------------------------------

    def _micro_batches(self) -> list[Batch]:
        """This process's micro-batches of the next optimizer step, from the DataLoader (advances the
        position)."""
        config, accelerator = self.config, self.accelerator
        if self._loader is None:
            self._loader = iter(batch_loader(
                self.sampler, self.examples, self.collator, self.position, config.grad_accum_steps,
                accelerator.num_processes, accelerator.process_index, config.num_workers, config.prefetch_batches))
        batches = []
        for i in range(config.grad_accum_steps):
            position, batch = next(self._loader)
            assert position == self.position + i * accelerator.num_processes + accelerator.process_index
            for problem in batch.skipped:
                self._bad_audio(problem)
            batches.append(batch)
        self.position += config.grad_accum_steps * accelerator.num_processes
        return batches

    def close(self) -> None:
        """Stop the DataLoader's worker processes (a later step starts them again)."""
        self._loader = None

    def _autocast(self):
        """bf16 autocast for ``precision: bf16`` (weights, gradients and optimizer stay fp32)."""
        device_type = self.accelerator.device.type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def train_step(self) -> StepLog:
        """One optimizer step over ``grad_accum_steps`` micro-batches per process."""
        accelerator = self.accelerator
        device = accelerator.device
        learning_rate = self.scheduler.get_last_lr()[0]
        batches = [batch.to(device) for batch in self._micro_batches()]
        tokens = torch.tensor(sum(b.target_tokens for b in batches), device=device)
        total_tokens = accelerator.reduce(tokens, reduction="sum") if accelerator.num_processes > 1 else tokens
        if int(total_tokens) == 0:
            raise TrainingDataError(f"no example of step {self.step + 1} could be read: "
                                    + "; ".join(p for b in batches for p in b.skipped))
        loss_sum = torch.zeros((), device=device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            context = (accelerator.no_sync(self.module) if not last and accelerator.num_processes > 1
                       else contextlib.nullcontext())
            with context:
                if batch.rows:
                    with self._autocast():
                        loss, count = self.module(batch)
                else:  # every example of this micro-batch was skipped (unreadable audio)
                    loss, count = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
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
        self.close()
        if self.skipped:
            logger.warning("%d training example(s) skipped: their audio does not decode", len(self.skipped))
        model_dir = lora_dir = None
        if self.step >= config.max_steps:
            if self.dev_examples and not (self.evaluations and self.evaluations[-1].step == self.step):
                self.evaluate()
            if export:
                model_dir, lora_dir = self.export()
        return TrainResult(tuple(self.history), tuple(self.evaluations), model_dir, lora_dir, tuple(self.skipped))

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
                for problem in batch.skipped:
                    self._bad_audio(problem)
                if not batch.rows:
                    continue
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
