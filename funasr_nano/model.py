"""The Fun-ASR-Nano speech LLM: audio -> fbank/LFR -> encoder -> adaptor -> LLM -> text.

:class:`FunASRNano` wraps a loaded checkpoint (model definition from transformers, see
:mod:`funasr_nano.checkpoint`) with the official FunASR inference procedure: the prompt of
:mod:`funasr_nano.prompt`, the audio embeddings spliced into it as ``FunASRNano.inference_prepare``
does, and greedy decoding as ``FunASRNano.inference_llm`` (funasr 1.4.16,
``funasr/models/fun_asr_nano/model.py``).

A model object holds no per-call state: one loaded model can serve concurrent ``transcribe`` calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Mapping, Sequence

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioInput, load_audio
from .checkpoint import LoadedCheckpoint, load_checkpoint
from .decoding import END_OF_TURN, DecodingOptions, RepetitionStoppingCriteria, cut_repetition, postprocess_text
from .errors import CheckpointError
from .frontend import Frontend
from .prompt import (PromptIds, Task, build_prompt_ids, build_text_prompt_ids, get_task, language_name,
                     num_audio_tokens, transcription_instruction)
from .results import Segment, Transcription

logger = logging.getLogger(__name__)

# The embedded demo model (recipes/demo): used when no checkpoint folder is given.
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


class FunASRNano:
    """A loaded Fun-ASR-Nano model. Build it with :func:`load_model`.

    LoRA adapters (``load_model(path, lora=...)``) are chosen per call by task; switching is done
    under a lock, so calls that use adapters run one at a time while calls stay safe to make from
    many threads.
    """

    def __init__(self, checkpoint: LoadedCheckpoint, adapters: Mapping[str, str] | None = None):
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.frontend = Frontend(checkpoint.frontend)
        self.use_low_frame_rate = checkpoint.use_low_frame_rate
        end_of_turn = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if end_of_turn is None or end_of_turn == self.tokenizer.unk_token_id:
            raise CheckpointError(f"{checkpoint.path}: the tokenizer has no {END_OF_TURN} token")
        config_eos = self.model.config.text_config.eos_token_id
        config_eos = [] if config_eos is None else [config_eos] if isinstance(config_eos, int) else list(config_eos)
        # FunASR stops at the LLM config's eos_token_id (<|im_end|> for Qwen3-0.6B).
        self.eos_token_ids = sorted({end_of_turn, *config_eos})
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]
        # adapter name -> folder; "default" applies to every task, a task name to that task only
        self.adapters = dict(adapters or {})
        self._adapter_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The LLM's dtype (the encoder and adaptor are float32)."""
        return self.model.lm_head.weight.dtype

    # -- audio -> embeddings ------------------------------------------------------------------------

    def features(self, waveform: np.ndarray) -> torch.Tensor:
        """``(samples,)`` 16 kHz float32 -> ``(frames, 560)`` LFR fbank, 60 ms per frame."""
        return self.frontend(waveform)

    @torch.inference_mode()
    def encode(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Run the audio encoder and adaptor.

        Args:
            features: ``(batch, frames, 560)`` float32 LFR features (right-padded).
            lengths: ``(batch,)`` valid frames per row (default: all frames).

        Returns:
            ``(batch, frames, llm_hidden)`` float32 adaptor output; padded positions hold garbage.
        """
        batch, frames, _ = features.shape
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long)
        mask = (torch.arange(frames)[None, :] < lengths[:, None]).to(self.device)
        inner = self.model.model
        encoder_out = inner.audio_tower(
            input_features=features.to(self.device, torch.float32), input_features_mask=mask
        ).last_hidden_state
        return inner.multi_modal_projector(encoder_out, mask)

    def audio_embeddings(self, waveform: np.ndarray) -> torch.Tensor:
        """The audio positions spliced into the prompt: ``(num_audio, llm_hidden)`` float32.

        ``num_audio`` follows :func:`funasr_nano.prompt.num_audio_tokens` (the first adaptor frames
        when the checkpoint uses ``use_low_frame_rate``).
        """
        features = self.features(waveform)
        adaptor_out = self.encode(features[None])[0]
        return adaptor_out[: num_audio_tokens(features.shape[0], self.use_low_frame_rate)]

    # -- prompt + audio -> LLM input ----------------------------------------------------------------

    @torch.inference_mode()
    def inputs_embeds(self, prompt: PromptIds, audio: torch.Tensor) -> torch.Tensor:
        """``(1, prompt.length, llm_hidden)`` LLM input: prompt token embeddings with the audio slot
        filled by ``audio`` (``(prompt.num_audio, llm_hidden)``)."""
        if audio.shape[0] != prompt.num_audio:
            raise ValueError(f"prompt has {prompt.num_audio} audio positions, got {audio.shape[0]} embeddings")
        embed = self.model.get_input_embeddings()
        ids = torch.tensor([prompt.prefix_ids + prompt.suffix_ids], device=self.device)
        text = embed(ids)[0]
        cut = len(prompt.prefix_ids)
        return torch.cat([text[:cut], audio.to(text.dtype), text[cut:]])[None]

    @torch.inference_mode()
    def generate(self, inputs_embeds: torch.Tensor, options: DecodingOptions = DecodingOptions(),
                 attention_mask: torch.Tensor | None = None) -> list[list[int]]:
        """Decode from ``(batch, length, llm_hidden)`` input embeddings (left-padded when batched).

        Returns:
            one list of generated token ids per row, end-of-turn token and padding excluded.
        """
        from transformers import GenerationConfig, StoppingCriteriaList

        batch, length, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=self.device)
        # An explicit config: a checkpoint's generation_config.json (Qwen3 ships sampling settings)
        # must not change decoding; FunASR builds its LLM from config.json and decodes greedily.
        config = GenerationConfig(
            max_new_tokens=options.max_new_tokens, min_new_tokens=options.min_new_tokens or None, do_sample=False, num_beams=options.num_beams,
            eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id,
        )
        stopping = StoppingCriteriaList([RepetitionStoppingCriteria(options)] if options.repetition_guard else [])
        output = self.model.generate(
            inputs_embeds=inputs_embeds.to(self.dtype), attention_mask=attention_mask,
            generation_config=config, stopping_criteria=stopping,
        )
        results = []
        for row in output.tolist():
            tokens = []
            for token in row:
                if token in self.eos_token_ids:
                    break
                tokens.append(token)
            results.append(cut_repetition(tokens, options) if options.repetition_guard else tokens)
        return results

    def adapter_for(self, task: str) -> str | None:
        """The LoRA adapter a task runs with: the task's own, else ``default``, else none."""
        if task in self.adapters:
            return task
        return "default" if "default" in self.adapters else None

    @contextlib.contextmanager
    def _adapter(self, task: str):
        if not self.adapters:
            yield
            return
        from .lora import activate_adapter

        with self._adapter_lock:
            activate_adapter(self.model, self.adapter_for(task))
            yield

    def decode_text(self, tokens: Sequence[int]) -> str:
        """Token ids -> text, post-processed as FunASR does."""
        return postprocess_text(self.tokenizer.decode(list(tokens), skip_special_tokens=True))

    # -- public API ---------------------------------------------------------------------------------

    def transcribe(
        self,
        audio: AudioInput,
        language: str | None = None,
        hotwords: Sequence[str] | None = None,
        itn: bool = True,
        max_new_tokens: int = 512,
        *,
        options: DecodingOptions | None = None,
        sample_rate: int | None = None,
    ) -> Transcription:
        """Transcribe one utterance (up to ~30 s; longer input loops, cut it first).

        Args:
            audio: a path, file bytes, or a ``(samples,)`` / ``(samples, channels)`` array
                (see :func:`funasr_nano.audio.load_audio`).
            language: language hint (``zh``, ``en``, ``ja``, their English or Chinese names); ``None``
                lets the model decide.
            hotwords: words to bias recognition towards (FunASR's hotword prompt).
            itn: inverse text normalization (numbers as digits, punctuation); ``False`` asks for
                spoken-form text.
            max_new_tokens: cap on generated tokens (ignored when ``options`` is given).
            options: full decoding options (beam search, repetition guard).
            sample_rate: sample rate of an array ``audio`` (default 16000 Hz).

        Returns:
            :class:`Transcription` with ``text``, ``tokens`` (generated ids, end-of-turn excluded),
            ``language``, ``duration`` (seconds) and one segment spanning the audio.

        Raises:
            AudioDecodeError: unreadable audio. AudioTooShortError: empty or < 0.1 s.
            UnsupportedLanguageError: unknown language hint.
        """
        options = options or DecodingOptions(max_new_tokens=max_new_tokens)
        instruction = transcription_instruction(list(hotwords or ()), language_name(language), itn)
        waveform = load_audio(audio, sample_rate=sample_rate)
        duration = waveform.size / SAMPLE_RATE
        audio_embeds = self.audio_embeddings(waveform)
        prompt = build_prompt_ids(self.tokenizer, instruction, audio_embeds.shape[0])
        with self._adapter("transcribe"):
            tokens = self.generate(self.inputs_embeds(prompt, audio_embeds), options)[0]
        text = self.decode_text(tokens)
        segment = Segment(start=0.0, end=duration, text=text, tokens=tuple(tokens))
        return Transcription(text=text, tokens=tuple(tokens), language=language, duration=duration,
                             segments=(segment,))

    def run(
        self,
        task: str | Task,
        audio: AudioInput | None = None,
        text: str | None = None,
        *,
        options: DecodingOptions | None = None,
        sample_rate: int | None = None,
    ) -> Transcription:
        """Run a task of :data:`funasr_nano.prompt.TASKS` (``transcribe``, ``translate``,
        ``text_translate``) with its prompt and, when loaded, its LoRA adapter.

        Args:
            audio: the speech for tasks with audio (see :meth:`transcribe`).
            text: the source text for text-only tasks.

        Returns:
            :class:`Transcription` (for a text-only task ``duration`` is 0 and there are no segments).

        Raises:
            ValueError: an unknown task, audio given to a text-only task or missing for an audio task.
        """
        task = get_task(task) if isinstance(task, str) else task
        options = options or DecodingOptions()
        if task.uses_audio:
            if audio is None:
                raise ValueError(f"task {task.name!r} needs audio")
            waveform = load_audio(audio, sample_rate=sample_rate)
            duration = waveform.size / SAMPLE_RATE
            audio_embeds = self.audio_embeddings(waveform)
            prompt = build_prompt_ids(self.tokenizer, task.user_text(), audio_embeds.shape[0])
            embeds = self.inputs_embeds(prompt, audio_embeds)
        else:
            if audio is not None:
                raise ValueError(f"task {task.name!r} takes text, not audio")
            duration = 0.0
            prompt = build_text_prompt_ids(self.tokenizer, task.user_text(text))
            embeds = self.inputs_embeds(prompt, torch.zeros(0, self.model.config.text_config.hidden_size, device=self.device))
        with self._adapter(task.name):
            tokens = self.generate(embeds, options)[0]
        result = self.decode_text(tokens)
        segments = (Segment(start=0.0, end=duration, text=result, tokens=tuple(tokens)),) if task.uses_audio else ()
        return Transcription(text=result, tokens=tuple(tokens), language=None, duration=duration, segments=segments)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"fp32"``/``"bf16"``/``"fp16"`` (or a ``torch.dtype``) -> ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of fp32, bf16, fp16") from None


def load_model(
    path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    *,
    use_low_frame_rate: bool | None = None,
    lora: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
) -> FunASRNano:
    """Load a Fun-ASR-Nano checkpoint (official or transformers layout).

    Args:
        path: checkpoint folder. ``None``: the embedded demo model (:data:`DEFAULT_MODEL`), a small
            model trained by ``recipes/demo`` that knows only synthetic espeak-ng Mandarin of everyday
            sentences (see ``docs/demo-model.md``); pass the Fun-ASR-Nano-2512 folder for real speech.
        device: ``"cpu"``, ``"cuda"``, ...
        dtype: LLM dtype (``torch.float32``/``"fp32"`` or ``torch.bfloat16``/``"bf16"``).
        use_low_frame_rate: override the checkpoint's audio-length rule (see
            :func:`funasr_nano.prompt.num_audio_tokens`).
        lora: a LoRA adapter folder (peft format, e.g. written by ``funasr-nano train``) used for every
            task, or ``{task name: folder}`` to switch adapters by task (a task without an entry runs
            on the base model, or on the ``"default"`` entry if there is one).

    Raises:
        CheckpointError: the folder is not a usable checkpoint (the message says what is wrong).
    """
    if path is None:
        path = DEFAULT_MODEL
        if not os.path.isdir(path):
            raise CheckpointError(f"the embedded demo model is missing ({path}); reinstall funasr-nano or pass a "
                                  "checkpoint folder (e.g. Fun-ASR-Nano-2512)")
    checkpoint = load_checkpoint(os.fspath(path), device=device, dtype=resolve_dtype(dtype),
                                 use_low_frame_rate=use_low_frame_rate)
    if lora is None:
        return FunASRNano(checkpoint)
    from .lora import load_adapter, parse_lora_argument

    adapters = parse_lora_argument(lora)
    for name, folder in adapters.items():
        if name != "default":
            get_task(name)  # a mapping's keys are task names
        load_adapter(checkpoint.model, folder, name)
    checkpoint.model.to(device)
    return FunASRNano(checkpoint, adapters)
