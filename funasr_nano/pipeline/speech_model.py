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
import importlib.resources
import logging
import os
import threading
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..audio.io import MAX_DURATION, SAMPLE_RATE, AudioInput, describe_source, iter_audio, load_audio, probe_duration
from ..models.fun_asr_nano.checkpoint import LoadedCheckpoint, load_checkpoint
from .decoding import END_OF_TURN, DecodingOptions, RepetitionStoppingCriteria, cut_repetition, postprocess_text
from ..errors import AudioTooLongError, CheckpointError
from ..models.fun_asr_nano.frontend import Frontend
from ..models.fun_asr_nano.prompt import (PromptIds, Task, build_prompt_ids, build_text_prompt_ids, get_task, language_name,
                     num_audio_tokens, transcription_instruction)
from ..results import Segment, Transcription, join_texts
from ..audio.vad import SpeechChunk, VadOptions, VadSegmenter

if TYPE_CHECKING:
    from .streaming import StreamingOptions, StreamingSession

logger = logging.getLogger(__name__)

# The embedded demo model (recipes/demo): used when no checkpoint folder is given.
DEFAULT_MODEL = str(importlib.resources.files("funasr_nano") / "assets" / "demo")

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
    def tasks(self) -> tuple[str, ...]:
        """Tasks the checkpoint was trained for (see :attr:`LoadedCheckpoint.tasks`)."""
        return self.checkpoint.tasks

    def supports_task(self, task: str) -> bool:
        """Whether ``task`` was trained: in the checkpoint's task list, or with a LoRA adapter loaded
        for it (or a ``default`` adapter, which applies to every task)."""
        return task in self.tasks or self.adapter_for(task) is not None

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
                 attention_mask: torch.Tensor | None = None, *, streamer=None) -> list[list[int]]:
        """Decode from ``(batch, length, llm_hidden)`` input embeddings (left-padded when batched).

        ``streamer``: a ``transformers`` streamer (``put``/``end``) that receives tokens as they are
        generated (see :func:`funasr_nano.translate.stream_tokens`).

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
        guard = RepetitionStoppingCriteria(options) if options.repetition_guard else None
        stopping = StoppingCriteriaList([guard] if guard is not None else [])
        output = self.model.generate(
            inputs_embeds=inputs_embeds.to(self.dtype), attention_mask=attention_mask,
            generation_config=config, stopping_criteria=stopping, streamer=streamer,
        )
        results = []
        for index, row in enumerate(output.tolist()):
            # greedy: a row the guard stopped is padded until the others end (beam search: rows of the
            # criterion are beams, and finished beams are not padded)
            if guard is not None and options.num_beams == 1 and index in guard.stopped_at:
                row = row[: guard.stopped_at[index]]
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
    def task_adapter(self, task: str):
        """Context in which the model runs with ``task``'s LoRA adapter (see :meth:`adapter_for`).
        With adapters loaded, holders of this context run one at a time; without, it does nothing."""
        if not self.adapters:
            yield
            return
        from ..models.lora import activate_adapter

        with self._adapter_lock:
            activate_adapter(self.model, self.adapter_for(task))
            yield

    def decode_text(self, tokens: Sequence[int]) -> str:
        """Token ids -> text, post-processed as FunASR does."""
        return postprocess_text(self.tokenizer.decode(list(tokens), skip_special_tokens=True))

    @torch.inference_mode()
    def prepare_inputs(self, waveform: np.ndarray, instruction: str, prefix_text: str = "") -> torch.Tensor:
        """``(samples,)`` 16 kHz float32 audio -> ``(1, length, llm_hidden)`` LLM input embeddings of the
        official prompt (``prefix_text``: FunASR's ``prev_text``, the start of the answer)."""
        audio_embeds = self.audio_embeddings(waveform)
        prompt = build_prompt_ids(self.tokenizer, instruction, audio_embeds.shape[0], prefix_text=prefix_text)
        return self.inputs_embeds(prompt, audio_embeds)

    @torch.inference_mode()
    def decode_waveforms(self, waveforms: Sequence[np.ndarray], instruction: str,
                         options: DecodingOptions = DecodingOptions(), *,
                         prefix_texts: Sequence[str] | None = None, batch_size: int = 8,
                         task: str = "transcribe") -> list[list[int]]:
        """Decode several utterances, ``batch_size`` at a time through the LLM.

        Each utterance is encoded on its own (encoder and adaptor are cheap next to the LLM); the LLM
        inputs are left-padded with zeros, masked out by the attention mask, and their position ids
        count from each row's first real position, so every row decodes as it would alone.

        Args:
            waveforms: ``(samples,)`` float32 16 kHz arrays (each up to ~30 s).
            instruction: the user instruction (:func:`funasr_nano.prompt.transcription_instruction`).
            prefix_texts: one answer prefix per waveform (FunASR's ``prev_text``), default none.
            batch_size: rows per LLM call (>= 1).
            task: the task whose LoRA adapter decodes (when adapters are loaded).

        Returns:
            generated token ids per waveform, in order, end-of-turn excluded.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        prefix_texts = list(prefix_texts) if prefix_texts is not None else [""] * len(waveforms)
        if len(prefix_texts) != len(waveforms):
            raise ValueError(f"{len(waveforms)} waveforms but {len(prefix_texts)} prefix texts")
        results: list[list[int]] = []
        for begin in range(0, len(waveforms), batch_size):
            rows = [self.prepare_inputs(waveform, instruction, prefix)
                    for waveform, prefix in zip(waveforms[begin : begin + batch_size],
                                                prefix_texts[begin : begin + batch_size])]
            if len(rows) == 1:
                with self.task_adapter(task):
                    results.extend(self.generate(rows[0], options))
                continue
            length = max(row.shape[1] for row in rows)
            hidden = rows[0].shape[2]
            inputs_embeds = torch.zeros(len(rows), length, hidden, dtype=rows[0].dtype, device=self.device)
            attention_mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
            for index, row in enumerate(rows):  # left padding: real positions at the end
                inputs_embeds[index, length - row.shape[1] :] = row[0]
                attention_mask[index, length - row.shape[1] :] = 1
            with self.task_adapter(task):
                results.extend(self.generate(inputs_embeds, options, attention_mask))
        return results

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
        vad: bool | None = None,
        vad_options: VadOptions | None = None,
        batch_size: int = 1,
        max_duration: float = MAX_DURATION,
    ) -> Transcription:
        """Transcribe audio of any length.

        Audio up to ``max_duration`` seconds is decoded in one piece (exactly the official FunASR
        inference). Longer audio is cut at pauses by voice activity detection
        (:mod:`funasr_nano.vad`) into segments of at most ``vad_options.max_segment_duration`` and each
        segment is decoded separately (see :meth:`transcribe_segments`).

        Args:
            audio: a path, file bytes, or a ``(samples,)`` / ``(samples, channels)`` array
                (see :func:`funasr_nano.audio.load_audio`).
            language: language hint (``zh``, ``en``, ``ja``, their English or Chinese names); ``None``
                lets the model decide.
            hotwords: words to bias recognition towards (FunASR's hotword prompt).
            itn: inverse text normalization (numbers as digits, punctuation); ``False`` asks for
                spoken-form text.
            max_new_tokens: cap on generated tokens per segment (ignored when ``options`` is given).
            options: full decoding options (beam search, repetition guard).
            sample_rate: sample rate of an array ``audio`` (default 16000 Hz).
            vad: ``None`` (default): VAD only for audio longer than ``max_duration``; ``True``: always
                cut with VAD (segments and timestamps even for short clips); ``False``: never.
            vad_options: how audio is cut (:class:`funasr_nano.vad.VadOptions`).
            batch_size: VAD segments decoded together through the LLM.
            max_duration: seconds above which ``vad=None`` turns VAD on and ``vad=False`` raises.

        Returns:
            :class:`Transcription`: ``text`` (the segments' texts joined, see
            :func:`funasr_nano.results.join_texts`; without VAD the one segment's text unchanged),
            ``tokens`` (all segments' generated ids), ``language``, ``duration`` (seconds of audio) and
            ``segments`` (without VAD: one spanning the audio; with VAD: one per speech segment, with
            start/end in seconds from the VAD boundaries, none if no speech was found).

        Raises:
            AudioDecodeError: unreadable audio. AudioTooShortError: empty or < 0.1 s (without VAD).
            AudioTooLongError: longer than ``max_duration`` with ``vad=False``.
            UnsupportedLanguageError: unknown language hint.
        """
        info: dict = {}
        segments = tuple(self.transcribe_segments(
            audio, language, hotwords, itn, max_new_tokens, options=options, sample_rate=sample_rate,
            vad=vad, vad_options=vad_options, batch_size=batch_size, max_duration=max_duration, _info=info,
        ))
        tokens = tuple(token for segment in segments for token in segment.tokens)
        text = segments[0].text if not info["vad"] and segments else join_texts(s.text for s in segments)
        return Transcription(text=text, tokens=tokens, language=language, duration=info["duration"],
                             segments=segments)

    def transcribe_segments(
        self,
        audio: AudioInput,
        language: str | None = None,
        hotwords: Sequence[str] | None = None,
        itn: bool = True,
        max_new_tokens: int = 512,
        *,
        options: DecodingOptions | None = None,
        sample_rate: int | None = None,
        vad: bool | None = None,
        vad_options: VadOptions | None = None,
        batch_size: int = 1,
        max_duration: float = MAX_DURATION,
        _info: dict | None = None,
    ) -> Iterator[Segment]:
        """Lazily transcribe audio of any length, yielding each :class:`Segment` as soon as it is decoded.

        The audio is read block by block (:func:`funasr_nano.audio.iter_audio`) and cut by the online
        VAD, so memory holds at most about one segment of audio (plus ``batch_size`` segments waiting
        to be decoded together), whatever the length of the file. Arguments as :meth:`transcribe`;
        argument errors are raised at the first ``next()``.

        Yields:
            :class:`Segment` ``(start, end, text, tokens)`` in time order; times in seconds.
        """
        options = options or DecodingOptions(max_new_tokens=max_new_tokens)
        instruction = transcription_instruction(list(hotwords or ()), language_name(language), itn)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        info = _info if _info is not None else {}
        waveform = None
        # the header's duration decides (and refuses too-long input) without decoding the file
        duration = probe_duration(audio, sample_rate=sample_rate) if vad is not True else None
        use_vad = vad
        if use_vad is None:
            if duration is None:  # the header does not say: decode it to know
                waveform = load_audio(audio, sample_rate=sample_rate)
                duration = waveform.size / SAMPLE_RATE
            use_vad = duration > max_duration
        info["vad"] = use_vad
        if not use_vad:
            if duration is None or duration <= max_duration:
                waveform = load_audio(audio, sample_rate=sample_rate) if waveform is None else waveform
                duration = waveform.size / SAMPLE_RATE
            info["duration"] = duration
            if duration > max_duration:
                raise _too_long(audio, duration, max_duration)
            tokens = self.decode_waveforms([waveform], instruction, options)[0]
            yield Segment(start=0.0, end=duration, text=self.decode_text(tokens), tokens=tuple(tokens))
            return

        segmenter = VadSegmenter(vad_options)
        waiting: list[SpeechChunk] = []

        def decode(chunks: list[SpeechChunk]) -> Iterator[Segment]:
            token_lists = self.decode_waveforms([c.samples for c in chunks], instruction, options,
                                                batch_size=batch_size)
            for chunk, tokens in zip(chunks, token_lists):
                logger.debug("segment %.2f-%.2f s: %d tokens", chunk.start_time, chunk.end_time, len(tokens))
                yield Segment(start=chunk.start_time, end=chunk.end_time, text=self.decode_text(tokens).strip(),
                              tokens=tuple(tokens))

        for block in iter_audio(audio, sample_rate=sample_rate):
            waiting.extend(segmenter.push(block))
            if len(waiting) >= batch_size:
                batch, waiting = waiting[:batch_size], waiting[batch_size:]
                yield from decode(batch)
        waiting.extend(segmenter.finish())
        info["duration"] = segmenter.samples_received / SAMPLE_RATE
        for begin in range(0, len(waiting), batch_size):
            yield from decode(waiting[begin : begin + batch_size])

    def transcribe_batch(
        self,
        audios: Sequence[AudioInput],
        language: str | None = None,
        hotwords: Sequence[str] | None = None,
        itn: bool = True,
        max_new_tokens: int = 512,
        *,
        options: DecodingOptions | None = None,
        sample_rate: int | None = None,
        batch_size: int = 8,
        vad: bool | None = None,
        vad_options: VadOptions | None = None,
        max_duration: float = MAX_DURATION,
    ) -> list[Transcription]:
        """Transcribe many inputs, decoding ``batch_size`` of them together through the LLM.

        Inputs that :meth:`transcribe` would decode in one piece are batched with each other; inputs
        that need VAD are transcribed one by one with their segments batched. Results equal
        :meth:`transcribe` on each input (same tokens, fp32).

        Returns:
            one :class:`Transcription` per input, in order.

        Raises:
            what :meth:`transcribe` raises, for the first input that fails (the message names it).
        """
        options = options or DecodingOptions(max_new_tokens=max_new_tokens)
        instruction = transcription_instruction(list(hotwords or ()), language_name(language), itn)
        results: list[Transcription | None] = [None] * len(audios)
        short: list[tuple[int, np.ndarray]] = []
        for index, audio in enumerate(audios):
            duration = probe_duration(audio, sample_rate=sample_rate) if vad is None else None
            if vad is True or (vad is None and (duration is None or duration > max_duration)):
                results[index] = self.transcribe(audio, language, hotwords, itn, options=options,
                                                 sample_rate=sample_rate, vad=vad, vad_options=vad_options,
                                                 batch_size=batch_size, max_duration=max_duration)
                continue
            waveform = load_audio(audio, sample_rate=sample_rate)
            if waveform.size / SAMPLE_RATE > max_duration:
                raise _too_long(audio, waveform.size / SAMPLE_RATE, max_duration)
            short.append((index, waveform))
        token_lists = self.decode_waveforms([w for _, w in short], instruction, options, batch_size=batch_size)
        for (index, waveform), tokens in zip(short, token_lists):
            duration = waveform.size / SAMPLE_RATE
            text = self.decode_text(tokens)
            results[index] = Transcription(
                text=text, tokens=tuple(tokens), language=language, duration=duration,
                segments=(Segment(start=0.0, end=duration, text=text, tokens=tuple(tokens)),),
            )
        return results

    def translate(
        self,
        audio: AudioInput,
        target_language: str = "en",
        mode: str = "unified",
        translator=None,
        config=None,
        *,
        vad_options: VadOptions | None = None,
        sample_rate: int | None = None,
    ):
        """Translate speech into ``target_language`` text (see :mod:`funasr_nano.translate`).

        Args:
            audio: a path, file bytes or an array, any length (cut at pauses by the VAD).
            target_language: overrides ``config.target_language``.
            mode: ``"unified"`` (this model translates; it must have been trained for the ``translate``
                task) or ``"cascade"`` (transcribe, then ``translator`` translates each sentence).
            translator: cascade only: a :class:`funasr_nano.translate.Translator` or a model folder
                (chat LLM, Marian/NLLB); ``None`` uses this model's own LLM on the text translation task.
            config: :class:`funasr_nano.translate.TranslationConfig`.

        Returns:
            :class:`funasr_nano.translate.Translation`.

        Raises:
            UnsupportedLanguageError: an unsupported language pair. TranslatorError: no usable
            translator, or a model not trained for the task. AudioDecodeError: unreadable audio.
        """
        from .translate import translate

        return translate(self, audio, **self._translation_arguments(target_language, mode, translator, config,
                                                                    vad_options, sample_rate))

    def translate_stream(
        self,
        audio: AudioInput,
        target_language: str = "en",
        mode: str = "unified",
        translator=None,
        config=None,
        *,
        vad_options: VadOptions | None = None,
        sample_rate: int | None = None,
    ):
        """Like :meth:`translate`, but yields events as they happen: partial transcripts, source
        sentences, translated sentences, then the whole result (order documented in
        :mod:`funasr_nano.translate`)."""
        from .translate import translate_stream

        return translate_stream(self, audio, **self._translation_arguments(target_language, mode, translator, config,
                                                                           vad_options, sample_rate))

    @staticmethod
    def _translation_arguments(target_language, mode, translator, config, vad_options, sample_rate) -> dict:
        import dataclasses

        from .translate import TranslationConfig

        config = config or TranslationConfig(target_language=target_language)
        if config.target_language != target_language:
            config = dataclasses.replace(config, target_language=target_language)
        return dict(mode=mode, translator=translator, config=config, vad_options=vad_options, sample_rate=sample_rate)

    def stream(
        self,
        language: str | None = None,
        hotwords: Sequence[str] | None = None,
        itn: bool = True,
        *,
        options: DecodingOptions | None = None,
        streaming_options: "StreamingOptions | None" = None,
    ) -> "StreamingSession":
        """Open a live transcription session (see :class:`funasr_nano.streaming.StreamingSession`)."""
        from .streaming import StreamingSession

        return StreamingSession(self, language, hotwords, itn, options=options, streaming_options=streaming_options)

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
        with self.task_adapter(task.name):
            tokens = self.generate(embeds, options)[0]
        result = self.decode_text(tokens)
        segments = (Segment(start=0.0, end=duration, text=result, tokens=tuple(tokens)),) if task.uses_audio else ()
        return Transcription(text=result, tokens=tuple(tokens), language=None, duration=duration, segments=segments)


def _too_long(audio: AudioInput, duration: float, max_duration: float) -> AudioTooLongError:
    """The error for input longer than ``max_duration`` seconds with VAD turned off."""
    return AudioTooLongError(
        f"{describe_source(audio)}: audio is {duration:.1f} s long, more than max_duration ({max_duration:g} s) "
        f"that the model decodes in one piece; enable VAD (vad=True, or --vad on the command line) to cut it "
        f"at pauses, or raise max_duration"
    )


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
            sentences (see the README, *The embedded demo model*); pass the Fun-ASR-Nano-2512 folder for real speech.
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
    from ..models.lora import load_adapter, parse_lora_argument

    adapters = parse_lora_argument(lora)
    for name, folder in adapters.items():
        if name != "default":
            get_task(name)  # a mapping's keys are task names
        load_adapter(checkpoint.model, folder, name)
    checkpoint.model.to(device)
    return FunASRNano(checkpoint, adapters)
