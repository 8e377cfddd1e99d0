"""Speech translation: Chinese speech -> English text, two ways, streamed sentence by sentence.

* **cascade**: the speech model transcribes (the official prompt), and a text translator turns each
  completed source sentence into English while the transcription goes on. The translator is a local
  chat LLM (Qwen3 / Qwen2.5 Instruct style, thinking off), a local seq2seq MT model (Marian, NLLB), or
  the speech model's own LLM on the text-only translate task when it was trained for it.
* **unified**: the speech LLM answers the speech-translation prompt itself (a model or LoRA adapter
  trained for the ``translate`` task of :data:`funasr_nano.prompt.TASKS`); one pass, no transcript.

Long audio is cut at pauses by the VAD (:mod:`funasr_nano.vad`); a VAD pause always ends a sentence.
Within a segment, sentences end at 。！？!? and at a full stop followed by a space.

Event order of :func:`translate_stream` (every event is a frozen dataclass):

* cascade: for each sentence ``i`` in time order: ``PartialTranscript`` x n (the segment's transcript
  so far, growing) -> ``SourceSentence(i)`` -> ``SentenceTranslated(i)``; after the last one,
  ``TranslationFinished``. The translation of sentence ``i`` is emitted before any text of sentence
  ``i + 1`` that was not already decoded when sentence ``i`` completed.
* unified: ``SentenceTranslated(i)`` for each sentence as the speech LLM writes it (``source`` is
  ``None``), then ``TranslationFinished``.

The non-streaming :func:`translate` consumes the same events, so its text always equals the
concatenated streamed sentences.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import queue
import re
import threading
import time
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence, Union

import torch

from ..audio.io import SAMPLE_RATE, AudioInput, iter_audio
from .decoding import DecodingOptions
from ..errors import TranslatorError, UnsupportedLanguageError
from ..models.fun_asr_nano.prompt import get_task, transcription_instruction
from ..results import join_texts

if TYPE_CHECKING:
    from .speech_model import FunASRNano
    from ..audio.vad import VadOptions

logger = logging.getLogger(__name__)

SUPPORTED_PAIRS = (("zh", "en"),)
LANGUAGE_ENGLISH_NAMES = {"zh": "Chinese", "en": "English"}
MODES = ("unified", "cascade")


@dataclasses.dataclass(frozen=True)
class TranslationConfig:
    """What to translate into what, and how.

    Attributes:
        source_language: language of the speech (ISO code).
        target_language: language of the output text.
        max_new_tokens: cap on tokens the speech model generates per VAD segment, and a cascade
            translator per sentence (or segment).
        temperature: 0 = greedy decoding; > 0 samples (cascade text translators only).
        stream_by_sentence: translate sentence by sentence (lowest latency); ``False`` translates each
            VAD segment whole (more context per translation, later first output).
    """

    source_language: str = "zh"
    target_language: str = "en"
    max_new_tokens: int = 256
    temperature: float = 0.0
    stream_by_sentence: bool = True

    def __post_init__(self):
        pair = (self.source_language, self.target_language)
        if pair not in SUPPORTED_PAIRS:
            supported = ", ".join(f"{s}->{t}" for s, t in SUPPORTED_PAIRS)
            raise UnsupportedLanguageError(
                f"translation {pair[0]}->{pair[1]} is not supported; supported: {supported}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


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
# translators (cascade)


class Translator(Protocol):
    """Turns source-language text into target-language text. Implementations are thread-safe."""

    def translate(self, text: str, config: TranslationConfig) -> str: ...


def _sampling(config: TranslationConfig) -> dict:
    """``generate`` arguments for ``config.temperature`` (0 = greedy)."""
    return dict(do_sample=True, temperature=config.temperature) if config.temperature > 0 else dict(do_sample=False)


def _clean_output(text: str) -> str:
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    return re.sub(r"\s+", " ", text).strip()


class ChatLMTranslator:
    """A local causal LLM with a chat template (Qwen3 / Qwen2.5 Instruct style) as translator.

    The request is one user turn (``Translate the following Chinese text into English...``); Qwen3's
    thinking is turned off through the template's ``enable_thinking=False`` and any ``<think>`` block
    is dropped from the answer.
    """

    def __init__(self, path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if not getattr(self.tokenizer, "chat_template", None):
            raise TranslatorError(f"{path}: the tokenizer has no chat template; a chat (Instruct) model is needed")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.path = path

    def prompt(self, text: str, config: TranslationConfig) -> str:
        source = LANGUAGE_ENGLISH_NAMES[config.source_language]
        target = LANGUAGE_ENGLISH_NAMES[config.target_language]
        request = (f"Translate the following {source} text into {target}. "
                   f"Reply with the {target} translation only.\n\n{text}")
        return self.tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                                  add_generation_prompt=True, enable_thinking=False)

    @torch.inference_mode()
    def translate(self, text: str, config: TranslationConfig) -> str:
        ids = self.tokenizer(self.prompt(text, config), return_tensors="pt", add_special_tokens=False)
        ids = ids.to(self.model.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        output = self.model.generate(**ids, max_new_tokens=config.max_new_tokens, pad_token_id=pad, **_sampling(config))
        return _clean_output(self.tokenizer.decode(output[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


# NLLB's language codes (FLORES-200) for the supported pairs.
NLLB_CODES = {"zh": "zho_Hans", "en": "eng_Latn"}


class Seq2SeqTranslator:
    """A local encoder-decoder MT model (Marian ``opus-mt-zh-en``, NLLB) as translator."""

    def __init__(self, path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.multilingual = NLLB_CODES["en"] in self.tokenizer.get_vocab()
        self.path = path

    @torch.inference_mode()
    def translate(self, text: str, config: TranslationConfig) -> str:
        kwargs = {}
        if self.multilingual:
            self.tokenizer.src_lang = NLLB_CODES[config.source_language]
            kwargs["forced_bos_token_id"] = self.tokenizer.convert_tokens_to_ids(NLLB_CODES[config.target_language])
        inputs = self.tokenizer(text, return_tensors="pt").to(self.model.device)
        output = self.model.generate(**inputs, max_new_tokens=config.max_new_tokens, **kwargs, **_sampling(config))
        return _clean_output(self.tokenizer.decode(output[0], skip_special_tokens=True))


class SpeechLLMTranslator:
    """The speech model's own LLM on the text-only translate task (``text_translate``), for models
    trained with it (the demo model is)."""

    def __init__(self, model: "FunASRNano"):
        if not model.supports_task("text_translate"):
            raise TranslatorError(
                "this speech model was not trained for text translation (its checkpoint lists tasks "
                f"{list(model.tasks)}); pass translator=PATH to a chat LLM or a Marian/NLLB model")
        self.model = model

    def translate(self, text: str, config: TranslationConfig) -> str:
        return self.model.run("text_translate", text=text,
                              options=DecodingOptions(max_new_tokens=config.max_new_tokens)).text.strip()


@functools.lru_cache(maxsize=4)
def _load_translator_cached(path: str, device: str) -> Translator:
    from transformers import AutoConfig

    if not os.path.isdir(path):
        raise TranslatorError(f"translator {path}: no such folder")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as error:
        raise TranslatorError(f"translator {path}: not a transformers model folder ({error})") from error
    if getattr(config, "is_encoder_decoder", False):
        return Seq2SeqTranslator(path, device)
    architectures = " ".join(config.architectures or [])
    if "ForCausalLM" in architectures or "ForConditionalGeneration" in architectures and not config.is_encoder_decoder:
        return ChatLMTranslator(path, device)
    raise TranslatorError(
        f"translator {path}: a {config.model_type} model ({architectures or 'no architecture'}) cannot "
        "translate; use a chat LLM (e.g. Qwen3/Qwen2.5 Instruct) or a Marian/NLLB translation model")


def load_translator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Translator:
    """Load a cascade translator from a local folder (cached: loading the same folder twice gives the
    same object).

    Raises:
        TranslatorError: the folder is missing, or holds a model that cannot translate.
    """
    return _load_translator_cached(os.path.abspath(os.fspath(path)), str(device))


# ----------------------------------------------------------------------------------------------------
# streaming decode


class _TokenQueue:
    """``transformers`` streamer that hands generated token ids to another thread."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first puts the prompt's input_ids (empty for embeddings)
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(None)


def stream_tokens(model: "FunASRNano", inputs_embeds: torch.Tensor, options: DecodingOptions,
                  task: str = "transcribe") -> Iterator[list[int]]:
    """Generate from ``inputs_embeds`` (one row) in a background thread, yielding the growing list of
    generated token ids after each step; the last item is the final list (end-of-turn excluded,
    repetition cut as :meth:`FunASRNano.generate`).

    The background thread holds the model's adapter for ``task`` while it generates, so a consumer may
    call the model for another task meanwhile (it waits for the adapter when adapters are loaded)."""
    streamer = _TokenQueue()
    result: dict = {}

    def work():
        try:
            with model.task_adapter(task):
                result["tokens"] = model.generate(inputs_embeds, options, streamer=streamer)[0]
        except BaseException as error:  # handed to the consumer thread
            result["error"] = error
            streamer.end()

    thread = threading.Thread(target=work, name="funasr-nano-generate", daemon=True)
    thread.start()
    tokens: list[int] = []
    while True:
        item = streamer.queue.get()
        if item is None:
            break
        tokens.extend(t for t in item if t not in model.eos_token_ids)
        yield list(tokens)
    thread.join()
    if "error" in result:
        raise result["error"]
    yield result["tokens"]


# ----------------------------------------------------------------------------------------------------
# the pipeline


def _segments(audio: AudioInput, vad_options: "VadOptions | None", sample_rate: int | None, info: dict):
    """VAD speech chunks of ``audio``, lazily; ``info["duration"]`` holds the seconds read so far."""
    from ..audio.vad import VadSegmenter

    segmenter = VadSegmenter(vad_options)
    for block in iter_audio(audio, sample_rate=sample_rate):
        chunks = segmenter.push(block)
        info["duration"] = segmenter.samples_received / SAMPLE_RATE
        yield from chunks
    yield from segmenter.finish()
    info["duration"] = segmenter.samples_received / SAMPLE_RATE


def _spread(texts: Sequence[str], start: float, end: float) -> list[tuple[float, float]]:
    """Share ``[start, end]`` among ``texts`` in proportion to their lengths."""
    total = sum(max(len(t), 1) for t in texts) or 1
    spans, at = [], start
    for text in texts:
        step = (end - start) * max(len(text), 1) / total
        spans.append((round(at, 3), round(at + step, 3)))
        at += step
    return spans


def translate_stream(
    model: "FunASRNano",
    audio: AudioInput,
    *,
    mode: str = "unified",
    translator: "Translator | str | os.PathLike | None" = None,
    config: TranslationConfig = TranslationConfig(),
    vad_options: "VadOptions | None" = None,
    sample_rate: int | None = None,
) -> Iterator[TranslationEvent]:
    """Translate speech, yielding events as they happen (order in the module docstring).

    Args:
        model: the speech model.
        audio: a path, file bytes or an array (any length: cut at pauses by the VAD).
        mode: ``"unified"`` (the speech LLM translates; needs a model or adapter trained for the
            ``translate`` task) or ``"cascade"`` (transcribe, then translate each sentence).
        translator: cascade only: a :class:`Translator`, or a folder for :func:`load_translator`;
            ``None`` = the speech model's own LLM on the text translation task.
        config: languages and decoding settings.

    Raises:
        UnsupportedLanguageError: an unsupported language pair (from ``config``).
        TranslatorError: no usable translator, or a model not trained for the requested task.
        AudioDecodeError: unreadable audio.
    """
    translator = resolve_translator(model, mode, translator)
    return _translate_events(model, audio, mode, translator, config, vad_options, sample_rate)


def resolve_translator(model: "FunASRNano", mode: str,
                       translator: "Translator | str | os.PathLike | None") -> "Translator | None":
    """Check that ``model`` can run ``mode`` and return the cascade translator (``None`` in unified mode).

    Raises:
        ValueError: an unknown mode, or a translator given in unified mode.
        TranslatorError: the model was not trained for the task, or the translator is unusable.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "unified":
        if translator is not None:
            raise ValueError("a translator is only used in cascade mode")
        if not model.supports_task("translate"):
            raise TranslatorError(
                "this speech model was not trained for speech translation (its checkpoint lists tasks "
                f"{list(model.tasks)}); use mode='cascade' with a translator, or load a translate LoRA adapter")
        return None
    if translator is None:
        return SpeechLLMTranslator(model)
    if isinstance(translator, (str, os.PathLike)):
        return load_translator(translator, model.device)
    return translator


def _translate_events(model, audio, mode, translator, config, vad_options, sample_rate):
    began = time.perf_counter()
    first: float | None = None
    sentences: list[TranslatedSentence] = []
    sources: list[str] = []
    decoding = DecodingOptions(max_new_tokens=config.max_new_tokens)

    def emit(text: str, source: str | None, span: tuple[float, float]) -> SentenceTranslated:
        nonlocal first
        sentence = TranslatedSentence(len(sentences), text, source, span[0], span[1])
        sentences.append(sentence)
        latency = time.perf_counter() - began
        first = latency if first is None else first
        return SentenceTranslated(sentence, latency)

    def sentence_events(sentence: str) -> Iterator[TranslationEvent]:
        if mode == "unified":
            yield emit(sentence, None, span)
            return
        yield SourceSentence(len(sentences), sentence, *span)
        sources.append(sentence)
        yield emit(translator.translate(sentence, config), sentence, span)

    span = (0.0, 0.0)
    info = {"duration": 0.0}
    for number, chunk in enumerate(_segments(audio, vad_options, sample_rate, info)):
        instruction = transcription_instruction() if mode == "cascade" else get_task("translate").user_text()
        inputs = model.prepare_inputs(chunk.samples, instruction)
        done_chars = 0  # characters of this segment's text already sent as sentences
        span = (chunk.start_time, chunk.end_time)
        task = "transcribe" if mode == "cascade" else "translate"
        tokens: list[int] = []
        partial = None
        for tokens in stream_tokens(model, inputs, decoding, task):
            text = model.decode_text(tokens)
            if mode == "cascade" and text.strip() != partial:  # only when the transcript changed
                partial = text.strip()
                yield PartialTranscript(number, partial)
            if not config.stream_by_sentence:
                continue
            complete, _ = split_sentences(text[done_chars:], final=False)
            for sentence in complete:
                done_chars = text.index(sentence, done_chars) + len(sentence)
                yield from sentence_events(sentence)
        final_text = model.decode_text(tokens)
        if config.stream_by_sentence:
            rest, _ = split_sentences(final_text[done_chars:], final=True)
        else:
            rest = [final_text.strip()] if final_text.strip() else []
        for sentence in rest:
            yield from sentence_events(sentence)
    # events carry their VAD segment's span; the result shares it among the segment's sentences
    sentences = _respread(sentences)
    translation = Translation(
        text=join_texts(s.text for s in sentences),
        source_text=join_texts(sources) if mode == "cascade" else None,
        segments=tuple(sentences), mode=mode, duration=info["duration"],
        timings=TranslationTimings(first_sentence_s=first, total_s=time.perf_counter() - began),
    )
    yield TranslationFinished(translation)


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


def translate(model: "FunASRNano", audio: AudioInput, **kwargs) -> Translation:
    """Translate speech and return the whole :class:`Translation` (arguments as :func:`translate_stream`)."""
    for event in translate_stream(model, audio, **kwargs):
        if isinstance(event, TranslationFinished):
            return event.translation
    raise AssertionError("translate_stream ended without TranslationFinished")
