"""Speech translation: Chinese speech -> English text, two ways, streamed sentence by sentence.

* **cascade**: the speech model transcribes (the official prompt), and a text translator turns each
  completed source sentence into English while the transcription goes on. The translator is a local
  chat LLM (Qwen3 / Qwen2.5 Instruct style, thinking off), a local seq2seq MT model (Marian, NLLB), or
  the speech model's own LLM on the text-only translate task when it was trained for it.
* **unified**: the speech LLM answers the speech-translation prompt itself (a model or LoRA adapter
  trained for the ``translate`` task of :data:`funasr_nano.models.fun_asr_nano.prompt.TASKS`); one pass, no transcript.

Long audio is cut at pauses by the VAD (:mod:`funasr_nano.audio.vad`); a VAD pause always ends a sentence.
Within a segment, sentences end at 。！？!? and at a full stop followed by a space.

Event order of :func:`translate_stream` (every event is a frozen dataclass):

* cascade: for each sentence ``i`` in time order: ``PartialTranscript`` x n (the segment's transcript
  so far, growing) -> ``SourceSentence(i)`` -> ``SentenceTranslated(i)``; after the last one,
  ``TranslationFinished``. The translation of sentence ``i`` is emitted before any text of sentence
  ``i + 1`` that was not already decoded when sentence ``i`` completed. With ``options.overlap`` the
  events are the same, but the speech pass runs ahead in a thread of its own while sentence ``i`` is
  translated (its partial transcripts are emitted after ``SentenceTranslated(i)``).
* unified: ``SentenceTranslated(i)`` for each sentence as the speech LLM writes it (``source`` is
  ``None``), then ``TranslationFinished``.

The non-streaming :func:`translate` consumes the same events, so its text always equals the
concatenated streamed sentences.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import dataclasses
import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Iterator, Sequence, Union

from ..audio.io import AudioInput, probe_duration
from ..options import TranslationOptions
from ..results import Segment, Transcription, join_texts
from .chunks import VadChunks
from .decoding import TokenStream
from .translators import Translator, resolve_translator, translate_text

if TYPE_CHECKING:
    from .speech_model import SpeechModel

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# results and events


@dataclasses.dataclass(frozen=True)
class TranslatedSentence:
    """One translated sentence. ``start``/``end`` in seconds (the VAD segment's span, shared
    among its sentences in proportion to their length); ``source`` is ``None`` in unified mode."""

    index: int
    text: str
    source: str | None
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class TranslationTimings:
    """Seconds from the call: to the first translated sentence, and to the end."""

    first_sentence_s: float | None
    total_s: float


@dataclasses.dataclass(frozen=True)
class Translation:
    """The result of :func:`translate`.

    Attributes:
        text: the English text (sentences joined).
        source_text: the transcript (cascade), or ``None`` (unified: no transcript is made).
        segments: the translated sentences in time order.
        mode: ``"cascade"`` or ``"unified"``.
        duration: seconds of audio.
        timings: latency measurements.
    """

    text: str
    source_text: str | None
    segments: tuple[TranslatedSentence, ...]
    mode: str
    duration: float
    timings: TranslationTimings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_transcription(self, language: str | None) -> Transcription:
        """The English text as a :class:`~funasr_nano.results.Transcription` in ``language`` (the target
        language), one segment per translated sentence (its times and text, no tokens), for what takes a
        transcription: the subtitle and text writers, the server's response formats."""
        return Transcription(text=self.text, tokens=(), language=language, duration=self.duration,
                             segments=tuple(Segment(s.start, s.end, s.text, ()) for s in self.segments))


@dataclasses.dataclass(frozen=True)
class PartialTranscript:
    """Cascade: the transcript of the current VAD segment so far."""

    segment: int
    text: str


@dataclasses.dataclass(frozen=True)
class SourceSentence:
    """Cascade: a completed source sentence, about to be translated."""

    index: int
    text: str
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class SentenceTranslated:
    """A translated sentence, and the seconds from the call to its emission."""

    sentence: TranslatedSentence
    latency_s: float


@dataclasses.dataclass(frozen=True)
class TranslationFinished:
    """The last event: the whole result."""

    translation: Translation


TranslationEvent = Union[PartialTranscript, SourceSentence, SentenceTranslated, TranslationFinished]


# ----------------------------------------------------------------------------------------------------
# sentence splitting

_ALWAYS_ENDS = "。！？!?"
_CLOSERS = "”’\"')）」』"


def split_sentences(text: str, final: bool) -> tuple[list[str], str]:
    """Cut completed sentences off the front of ``text``.

    A sentence ends at 。！？!? (with any closing quotes or brackets after it) and at a ``.`` followed by
    whitespace; with ``final`` (the end of a VAD segment) the rest is a sentence too.

    Returns:
        ``(sentences, rest)``: stripped non-empty sentences, and the unfinished remainder.
    """
    sentences, start, i = [], 0, 0
    while i < len(text):
        ch = text[i]
        end = None
        if ch in _ALWAYS_ENDS:
            end = i + 1
        elif ch == "." and i + 1 < len(text) and text[i + 1].isspace():
            end = i + 1
        if end is not None:
            while end < len(text) and text[end] in _CLOSERS:
                end += 1
            sentence = text[start:end].strip()
            if sentence:
                sentences.append(sentence)
            start = i = end
            continue
        i += 1
    rest = text[start:]
    if final:
        if rest.strip():
            sentences.append(rest.strip())
        rest = ""
    return sentences, rest


# ----------------------------------------------------------------------------------------------------
# the pipeline


def _spread(texts: Sequence[str], start: float, end: float) -> list[tuple[float, float]]:
    """Share ``[start, end]`` among ``texts`` in proportion to their lengths."""
    total = sum(max(len(t), 1) for t in texts) or 1
    spans, at = [], start
    for text in texts:
        step = (end - start) * max(len(text), 1) / total
        spans.append((round(at, 3), round(at + step, 3)))
        at += step
    return spans


def translate_stream(model: "SpeechModel", audio: AudioInput, options: TranslationOptions | None = None, *,
                     translator: "Translator | str | os.PathLike | None" = None,
                     sample_rate: int | None = None) -> Iterator[TranslationEvent]:
    """Translate speech, yielding events as they happen (order in the module docstring).

    Args:
        model: the speech model.
        audio: a path, file bytes or an array (any length: cut at pauses by the VAD).
        options: languages, mode (``"unified"``: the speech LLM translates, needs a model or adapter
            trained for the ``translate`` task; ``"cascade"``: transcribe, then translate each
            sentence) and decoding settings.
        translator: cascade only: a :class:`Translator`, or a folder for :func:`load_translator`;
            ``None`` = the speech model's own LLM on the text translation task.

    Raises (at the call):
        TranslatorError: no usable translator, or a model not trained for the requested task.
        AudioDecodeError: a missing file.
    Raises (while iterating):
        AudioDecodeError: unreadable audio. AudioTooShortError: less than 0.1 s of audio.
    """
    options = options or TranslationOptions()
    translator = resolve_translator(model, options.mode, translator)
    probe_duration(audio, sample_rate=sample_rate)  # a missing file or a bad sample rate fails here
    return _translate_events(model, audio, options, translator, sample_rate)


def _speech_pass(model: "SpeechModel", chunks: VadChunks, options: TranslationOptions,
                 cancel: threading.Event | None = None) -> Iterator[tuple]:
    """The speech model's pass over the audio's VAD ``chunks``: ``("partial", PartialTranscript)`` (cascade:
    whenever the segment's transcript changes) and ``("sentence", text, (start, end))`` for each completed
    sentence (the source sentence in cascade, the English one in unified mode), in time order. Stops
    (generation cancelled within one token) when ``cancel`` is set or the iterator is closed."""
    mode = options.mode
    task = "transcribe" if mode == "cascade" else "translate"
    prompt = (model.family.transcription_prompt(None, (), True) if mode == "cascade"
              else model.family.task_prompt("translate"))
    for number, chunk in enumerate(chunks):
        if cancel is not None and cancel.is_set():
            return
        llm_input = model.family.llm_input(prompt, model.family.audio_embeddings(chunk.samples),
                                           adapter=model.adapter_for(task))
        done_chars = 0  # characters of this segment's text already sent as sentences
        span = (chunk.start_time, chunk.end_time)
        tokens: list[int] = []
        partial = None
        # closing the stream (when this generator is closed, or a translator fails) cancels generation
        with contextlib.closing(TokenStream(model.engine, llm_input, options.decoding)) as stream:
            for tokens in stream:
                if cancel is not None and cancel.is_set():
                    return
                text = model.decode_text(tokens)
                if mode == "cascade" and text.strip() != partial:  # only when the transcript changed
                    partial = text.strip()
                    yield ("partial", PartialTranscript(number, partial))
                if not options.stream_by_sentence:
                    continue
                complete, _ = split_sentences(text[done_chars:], final=False)
                for sentence in complete:
                    done_chars = text.index(sentence, done_chars) + len(sentence)
                    yield ("sentence", sentence, span)
        final_text = model.decode_text(tokens)
        if options.stream_by_sentence:
            rest, _ = split_sentences(final_text[done_chars:], final=True)
        else:
            rest = [final_text.strip()] if final_text.strip() else []
        for sentence in rest:
            yield ("sentence", sentence, span)


def _translate_events(model: "SpeechModel", audio: AudioInput, options: TranslationOptions,
                      translator: "Translator | None", sample_rate: int | None) -> Iterator[TranslationEvent]:
    began = time.perf_counter()
    first: float | None = None
    sentences: list[TranslatedSentence] = []
    sources: list[str] = []
    mode = options.mode
    # less than MIN_DURATION of audio in all is refused, as SpeechModel.transcribe refuses it
    chunks = VadChunks(audio, options.vad_options, sample_rate, check_length=True)

    def emit(text: str, source: str | None, span: tuple[float, float]) -> SentenceTranslated:
        nonlocal first
        sentence = TranslatedSentence(len(sentences), text, source, span[0], span[1])
        sentences.append(sentence)
        latency = time.perf_counter() - began
        first = latency if first is None else first
        return SentenceTranslated(sentence, latency)

    if mode == "unified":
        for _, sentence, span in _speech_pass(model, chunks, options):
            yield emit(sentence, None, span)
    elif not options.overlap:
        for item in _speech_pass(model, chunks, options):
            if item[0] == "partial":
                yield item[1]
                continue
            _, sentence, span = item
            yield SourceSentence(len(sentences), sentence, *span)
            sources.append(sentence)
            yield emit(translate_text(translator, sentence, options), sentence, span)
    else:
        for item in _overlapped(model, chunks, options, translator):
            if item[0] == "partial":
                yield item[1]
                continue
            _, sentence, span, translated = item
            yield SourceSentence(len(sentences), sentence, *span)
            sources.append(sentence)
            yield emit(translated(), sentence, span)
    # events carry their VAD segment's span; the result shares it among the segment's sentences
    sentences = _respread(sentences)
    translation = Translation(
        text=join_texts(s.text for s in sentences),
        source_text=join_texts(sources) if mode == "cascade" else None,
        segments=tuple(sentences), mode=mode, duration=chunks.seconds,
        timings=TranslationTimings(first_sentence_s=first, total_s=time.perf_counter() - began),
    )
    yield TranslationFinished(translation)


_END = object()


def _overlapped(model: "SpeechModel", chunks: VadChunks, options: TranslationOptions,
                translator: "Translator") -> Iterator[tuple]:
    """Cascade with overlap: the speech pass runs in a thread of its own and hands each completed source
    sentence to a translator thread at once, so that sentence *i* is translated while the speech model
    decodes sentence *i + 1*. Yields the speech pass's items in order, a sentence as ``("sentence", text,
    span, result)`` where ``result()`` waits for its translation: the consumer emits the translation as
    soon as it is done, and the partial transcripts decoded meanwhile after it (the serial path's event
    order). Closing the iterator (or an error in either thread) cancels both passes within one token."""
    cancel = threading.Event()
    items: queue.Queue = queue.Queue()
    translations = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="funasr-nano-translate")

    def speech() -> None:
        try:
            for item in _speech_pass(model, chunks, options, cancel):
                if item[0] == "sentence":
                    context = contextvars.copy_context()  # the server's request context, for batching
                    future = translations.submit(context.run, translate_text, translator, item[1], options, cancel)
                    item = (*item, future)
                items.put(item)
            items.put(_END)
        except BaseException as error:  # handed to the consumer
            items.put(("error", error))

    thread = threading.Thread(target=contextvars.copy_context().run, args=(speech,), name="funasr-nano-speech",
                              daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                break
            if item[0] == "error":
                raise item[1]
            if item[0] == "sentence":
                future = item[3]
                item = (*item[:3], future.result)
            yield item
    finally:
        cancel.set()
        thread.join()
        translations.shutdown(wait=True, cancel_futures=True)


def _respread(sentences: list[TranslatedSentence]) -> list[TranslatedSentence]:
    out, i = [], 0
    while i < len(sentences):
        j = i
        while j < len(sentences) and (sentences[j].start, sentences[j].end) == (sentences[i].start, sentences[i].end):
            j += 1
        group = sentences[i:j]
        spans = _spread([s.source or s.text for s in group], group[0].start, group[0].end)
        out.extend(dataclasses.replace(s, start=a, end=b) for s, (a, b) in zip(group, spans))
        i = j
    return out


def translate(model: "SpeechModel", audio: AudioInput, options: TranslationOptions | None = None, *,
              translator: "Translator | str | os.PathLike | None" = None,
              sample_rate: int | None = None) -> Translation:
    """Translate speech and return the whole :class:`Translation` (arguments as :func:`translate_stream`)."""
    for event in translate_stream(model, audio, options, translator=translator, sample_rate=sample_rate):
        if isinstance(event, TranslationFinished):
            return event.translation
    raise AssertionError("translate_stream ended without TranslationFinished")
