"""The model users hold: a speech-LLM family (:mod:`funasr_nano.models`) + an engine
(:mod:`funasr_nano.engines`) + optional LoRA adapters, with the public methods: transcribe (one input,
lazily by segments, or many in batches), stream, translate, run a task.

Build it with :func:`funasr_nano.load_model`. It holds no per-call state: one loaded model serves
concurrent calls from many threads, with different tasks and adapters at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from ..audio.io import SAMPLE_RATE, AudioInput, load_audio
from ..errors import InvalidOptionError
from ..options import DecodingOptions, TranscribeOptions, TranslationOptions, resolve
from ..results import Segment, Transcription, TranscriptionFailure, TranscriptionInfo
from . import decoding
from . import transcribe as _transcribe

if TYPE_CHECKING:
    from ..engines.base import Engine
    from ..models.base import FamilyModel
    from .streaming import StreamingOptions, StreamingSession
    import os

    from .translate import Translation, TranslationEvent
    from .translators import Translator

logger = logging.getLogger(__name__)


class SpeechModel:
    """A loaded speech LLM and the engine that decodes it.

    Args:
        family: its family model (a :class:`~funasr_nano.models.base.FamilyModel`, e.g.
            :class:`funasr_nano.models.fun_asr_nano.FunAsrNanoModel`), kept as ``model.family``.
        engine: decodes its LLM inputs (e.g. :class:`funasr_nano.engines.transformers.TransformersEngine`).
        adapters: LoRA adapters loaded into the engine's LLM: ``{name: folder}``; ``"default"`` applies
            to every task, a task name to that task only.
    """

    def __init__(self, family: "FamilyModel", engine: "Engine", adapters: Mapping[str, str] | None = None):
        self.family = family
        self.engine = engine
        self.adapters = dict(adapters or {})

    # -- what the model is --------------------------------------------------------------------------

    @property
    def tokenizer(self):
        return self.family.tokenizer

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks the checkpoint was trained for."""
        return self.family.tasks

    def supports_task(self, task: str) -> bool:
        """Whether ``task`` was trained: in the checkpoint's task list, or with a LoRA adapter loaded
        for it (or a ``default`` adapter, which applies to every task)."""
        return task in self.tasks or self.adapter_for(task) is not None

    def adapter_for(self, task: str) -> str | None:
        """The LoRA adapter a task runs with: the task's own, else ``default``, else none."""
        if task in self.adapters:
            return task
        return "default" if "default" in self.adapters else None

    def close(self) -> None:
        """Release the engine's native resources."""
        self.engine.close()

    # -- building blocks ------------------------------------------------------------------------------

    def audio_embeddings(self, waveform: np.ndarray):
        """``(samples,)`` 16 kHz float32 -> ``(num_audio, llm_hidden)`` audio positions of the prompt."""
        return self.family.audio_embeddings(waveform)

    def decode_text(self, tokens: Sequence[int]) -> str:
        """Token ids -> text, post-processed as the family's reference implementation does."""
        return self.family.decode_text(tokens)

    def parse_transcription(self, tokens: Sequence[int], language: str | None = None) -> tuple[str | None, str]:
        """``(language, text)`` of a transcription's token ids; ``language`` is the caller's hint (see
        :meth:`funasr_nano.models.base.FamilyModel.parse_transcription`)."""
        return self.family.parse_transcription(tokens, language)

    def check_fits(self, prompt: str, seconds: float, max_new_tokens: int) -> None:
        """Refuse, before any work, a prompt with ``seconds`` of audio plus ``max_new_tokens`` that the
        LLM's context window cannot hold.

        Raises:
            ValueError: naming the lengths.
        """
        samples = int(seconds * SAMPLE_RATE)
        text_positions = self.family.llm_input(prompt, None).length
        positions = text_positions + self.family.audio_positions(samples)
        if positions + max_new_tokens > self.engine.max_positions and 2 * text_positions >= positions:
            raise InvalidOptionError(  # the text (hotwords) is what does not fit, not the audio
                f"hotwords: the prompt's text (hotwords, context) takes {text_positions} positions; with "
                f"{seconds:g} s of audio and max_new_tokens={max_new_tokens} it does not fit the LLM's context "
                f"window of {self.engine.max_positions} positions; send fewer or shorter hotwords")
        if positions + max_new_tokens > self.engine.max_positions:
            raise InvalidOptionError(
                f"{seconds:g} s of audio ({positions} prompt positions) plus max_new_tokens={max_new_tokens} do not "
                f"fit the LLM's context window of {self.engine.max_positions} positions; lower max_duration, the "
                "VAD's max_segment_duration or max_new_tokens")

    def decode_waveforms(self, waveforms: Sequence[np.ndarray], prompt: str | Sequence[str],
                         options: DecodingOptions | None = None, *, prefix_texts: Sequence[str] | None = None,
                         batch_size: int = 8, task: str = "transcribe",
                         embeddings: Sequence[Any] | None = None) -> list[list[int]]:
        """Decode several utterances with ``prompt``, ``batch_size`` at a time (see
        :func:`funasr_nano.pipeline.decoding.decode_waveforms`); ``task`` picks the LoRA adapter;
        ``embeddings`` gives audio embeddings already computed (``None`` entries are computed)."""
        return decoding.decode_waveforms(self.family, self.engine, waveforms, prompt,
                                         options or DecodingOptions(), prefix_texts=prefix_texts,
                                         batch_size=batch_size, adapter=self.adapter_for(task), embeddings=embeddings)

    # -- transcription --------------------------------------------------------------------------------

    def transcribe(self, audio: AudioInput, options: TranscribeOptions | DecodingOptions | None = None, *,
                   sample_rate: int | None = None, **overrides: Any) -> Transcription:
        """Transcribe audio of any length.

        Audio up to ``max_duration`` seconds is decoded in one piece (exactly the official FunASR
        inference); longer audio is cut at pauses by the VAD and each segment decoded on its own.

        Args:
            audio: a path, file bytes, or a ``(samples,)`` / ``(samples, channels)`` array
                (see :func:`funasr_nano.audio.io.load_audio`).
            options: :class:`~funasr_nano.options.TranscribeOptions` (or just its
                :class:`~funasr_nano.options.DecodingOptions`).
            sample_rate: sample rate of an array ``audio`` (default 16000 Hz).
            overrides: any field of :class:`TranscribeOptions` or :class:`DecodingOptions` by name
                (``language="zh"``, ``hotwords=["滨海新区"]``, ``itn=False``, ``vad=True``,
                ``max_new_tokens=64``, ...).

        Returns:
            :class:`Transcription`: ``text`` (the segments' texts joined; without VAD the one segment's
            text unchanged), ``tokens``, ``language``, ``duration`` (seconds) and ``segments``.

        Raises:
            AudioDecodeError: unreadable audio. AudioTooShortError: empty or < 0.1 s (without VAD).
            AudioTooLongError: longer than ``max_duration`` with ``vad=False``.
            UnsupportedLanguageError: unknown language hint. TypeError/ValueError: bad options.
        """
        return _transcribe.transcribe(self, audio, resolve(TranscribeOptions, options, overrides), sample_rate)

    def transcribe_segments(self, audio: AudioInput, options: TranscribeOptions | DecodingOptions | None = None, *,
                            sample_rate: int | None = None,
                            **overrides: Any) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """Transcribe lazily: ``(segments, info)``, faster-whisper's shape.

        ``info`` (duration, language, VAD on/off, options) is known at once; bad arguments and input
        too long for ``vad=False`` raise here, at the call. The audio is read block by block and cut by
        the online VAD, so memory holds about one segment of audio (plus ``batch_size`` waiting),
        whatever the length; each :class:`Segment` is yielded as soon as it is decoded. Arguments as
        :meth:`transcribe`.
        """
        return _transcribe.transcribe_segments(self, audio, resolve(TranscribeOptions, options, overrides),
                                               sample_rate)

    def transcribe_batch(self, audios: Sequence[AudioInput],
                         options: TranscribeOptions | DecodingOptions | None = None, *, sample_rate: int | None = None,
                         **overrides: Any) -> Iterator[Transcription | TranscriptionFailure]:
        """Transcribe many inputs, lazily, ``batch_size`` of them decoded together through the LLM.

        Inputs are read one group at a time (never all up front); inputs that need VAD are transcribed
        one by one with their segments batched. An input that fails, whatever the exception, yields a
        :class:`TranscriptionFailure` in its place and the others go on. Results equal
        :meth:`transcribe` on each input (same tokens, fp32). Arguments as :meth:`transcribe`; bad
        options raise at the call.

        Yields:
            one :class:`Transcription` or :class:`TranscriptionFailure` per input, in order.
        """
        return _transcribe.transcribe_batch(self, audios, resolve(TranscribeOptions, options, overrides), sample_rate)

    def stream(self, options: TranscribeOptions | DecodingOptions | None = None, *,
               streaming_options: "StreamingOptions | None" = None, sample_rate: int = SAMPLE_RATE,
               **overrides: Any) -> "StreamingSession":
        """Open a live transcription session (see :class:`funasr_nano.pipeline.streaming.StreamingSession`);
        ``options``/``overrides`` as :meth:`transcribe` (its VAD settings come from ``streaming_options``)."""
        from .streaming import StreamingSession

        return StreamingSession(self, resolve(TranscribeOptions, options, overrides),
                                streaming_options=streaming_options, sample_rate=sample_rate)

    # -- translation and tasks -------------------------------------------------------------------------

    def translate(self, audio: AudioInput, options: TranslationOptions | None = None, *,
                  translator: Translator | str | os.PathLike | None = None,
                  sample_rate: int | None = None, **overrides: Any) -> "Translation":
        """Translate speech (see :mod:`funasr_nano.pipeline.translate`).

        Args:
            audio: a path, file bytes or an array, any length (cut at pauses by the VAD).
            options: :class:`~funasr_nano.options.TranslationOptions`; ``overrides`` replace its fields
                by name (``target_language="en"``, ``mode="cascade"``, ...).
            translator: cascade only: a :class:`funasr_nano.pipeline.translators.Translator` or a model
                folder (chat LLM, Marian/NLLB); ``None`` uses this model's own LLM on the text
                translation task.

        Raises:
            UnsupportedLanguageError: an unsupported language pair. TranslatorError: no usable
            translator, or a model not trained for the task. AudioDecodeError: unreadable audio.
        """
        from .translate import translate

        return translate(self, audio, resolve(TranslationOptions, options, overrides), translator=translator,
                         sample_rate=sample_rate)

    def translate_stream(self, audio: AudioInput, options: TranslationOptions | None = None, *, translator=None,
                         sample_rate: int | None = None, **overrides: Any) -> Iterator["TranslationEvent"]:
        """Like :meth:`translate`, but yields events as they happen: partial transcripts, source
        sentences, translated sentences, then the whole result (order documented in
        :mod:`funasr_nano.pipeline.translate`). Argument errors raise at the call."""
        from .translate import translate_stream

        return translate_stream(self, audio, resolve(TranslationOptions, options, overrides), translator=translator,
                                sample_rate=sample_rate)

    def run(self, task: str, audio: AudioInput | None = None, text: str | None = None, *,
            options: DecodingOptions | None = None, sample_rate: int | None = None) -> Transcription:
        """Run a task of the family's task table (Fun-ASR-Nano: ``transcribe``, ``translate``,
        ``text_translate``) with its prompt and, when loaded, its LoRA adapter.

        Args:
            audio: the speech for tasks with audio (any input :meth:`transcribe` takes, <= 30 s).
            text: the source text for text-only tasks.

        Returns:
            :class:`Transcription` (for a text-only task ``duration`` is 0 and there are no segments).

        Raises:
            ValueError: an unknown task, audio given to a text-only task or missing for an audio task.
        """
        options = resolve(DecodingOptions, options)
        uses_audio = self.family.task_uses_audio(task)
        prompt = self.family.task_prompt(task, text if not uses_audio else None)
        if uses_audio:
            if audio is None:
                raise InvalidOptionError(f"task {task!r} needs audio")
            waveform = load_audio(audio, sample_rate=sample_rate)
            duration = waveform.size / SAMPLE_RATE
            llm_input = self.family.llm_input(prompt, self.family.audio_embeddings(waveform),
                                              adapter=self.adapter_for(task))
        else:
            if audio is not None:
                raise InvalidOptionError(f"task {task!r} takes text, not audio")
            duration = 0.0
            llm_input = self.family.llm_input(prompt, None, adapter=self.adapter_for(task))
        tokens = decoding.generate(self.engine, [llm_input], options)[0]
        result = self.decode_text(tokens)
        segments = (Segment(start=0.0, end=duration, text=result, tokens=tuple(tokens)),) if uses_audio else ()
        return Transcription(text=result, tokens=tuple(tokens), language=None, duration=duration, segments=segments)
