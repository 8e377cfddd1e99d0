"""Options, defined once: how to decode, how to transcribe, how to translate.

Each is a frozen dataclass validated in ``__post_init__`` (the one place that checks its values, with
messages that name the bad value). The public methods take ``options=`` plus keyword overrides of any
field (:func:`resolve`); the command line (:mod:`funasr_nano.cli.options`) and, later, the HTTP schema
derive their flags and fields from these dataclasses instead of repeating them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence, TypeVar

from .audio.vad import VadOptions
from .errors import InvalidOptionError
from .validation import check_choice, check_instance, check_integer, check_number, check_switch

# Seconds decoded in one piece by default; Fun-ASR-Nano loops on longer input (use VAD).
MAX_DURATION = 30.0


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
    """How the LLM generates text.

    Attributes:
        max_new_tokens: upper bound on generated tokens (FunASR's ``max_length``, 512).
        num_beams: 1 = greedy search (FunASR's default); > 1 = beam search (transformers engine only).
        temperature: 0 = greedy (or beam) search; > 0 samples from the softmax at that temperature.
        min_new_tokens: end-of-turn is suppressed before this many tokens (0 = never; benchmarks use
            it to generate a fixed number of tokens).
        repetition_guard: stop a looping output: when the last tokens are one n-gram (n <=
            ``guard_max_ngram``) repeated at least ``guard_min_repeats`` times over at least
            ``guard_min_tokens`` tokens, generation stops and the repeats are cut to one copy.
            FunASR has no such guard; it only changes output that was looping anyway.
        guard_max_ngram: the longest repeated n-gram (tokens) that the repetition guard looks for.
        guard_min_repeats: how many back-to-back copies of the n-gram count as a loop (>= 2).
        guard_min_tokens: the least number of tokens the repeats must span before the guard stops.
    """

    max_new_tokens: int = 512
    num_beams: int = 1
    temperature: float = 0.0
    min_new_tokens: int = 0
    repetition_guard: bool = True
    guard_max_ngram: int = 32
    guard_min_repeats: int = 4
    guard_min_tokens: int = 24

    def __post_init__(self):
        check_integer("max_new_tokens", self.max_new_tokens, 1)
        check_integer("num_beams", self.num_beams, 1)
        check_number("temperature", self.temperature, 0.0)
        if not isinstance(self.min_new_tokens, int) or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise InvalidOptionError(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens!r}")
        if self.temperature > 0 and self.num_beams > 1:
            raise InvalidOptionError("temperature > 0 (sampling) cannot be combined with beam search (num_beams > 1)")
        if self.guard_min_repeats < 2 or self.guard_max_ngram < 1:
            raise InvalidOptionError("guard_min_repeats must be >= 2 and guard_max_ngram >= 1")


def _hotwords(value: Any) -> tuple[str, ...]:
    """A hotword list as a tuple; one string is one hotword (never split into characters)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) and not isinstance(value, (set, frozenset)):
        raise InvalidOptionError(f"hotwords must be a string or a list of strings, got {type(value).__name__}")
    words = tuple(value)
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise InvalidOptionError(f"hotwords must be non-empty strings, got {word!r}")
    return tuple(word.strip() for word in words)


@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    """How to transcribe.

    Attributes:
        language: language hint (``zh``, ``en``, ``ja``, their English or Chinese names); ``None``
            lets the model decide. Checked against the model's languages at the call.
        hotwords: words to bias recognition towards (a string is one hotword).
        itn: inverse text normalization (``False`` asks for spoken-form text).
        vad: ``None``: cut audio at pauses only when it is longer than ``max_duration``; ``True``:
            always; ``False``: never (longer audio is an error).
        vad_options: how the VAD cuts (segment lengths, thresholds).
        batch_size: utterances (files, or VAD segments of one file) decoded together through the LLM.
        max_duration: seconds decoded in one piece; above it VAD is used (``vad=None``) or the input is
            refused (``vad=False``). Bounded by the model's context window, checked at the call.
        word_timestamps: give every segment its words with start/end times and a probability
            (``Segment.words``): Fun-ASR-Nano aligns the LLM's text to its CTC head (official checkpoints
            with the CTC branch, and GGUF folders exported from them; others raise CheckpointError); Qwen3-ASR
            through Qwen3-ForcedAligner, loaded beside it (``aligner``; segments of at most 180 s).
        silence_gate: drop a segment the CTC head hears no speech in (``no_speech_prob`` above
            ``no_speech_threshold``) instead of letting the LLM write text into silence or noise.
            ``None``: on for VAD segments of checkpoints with a CTC head; ``True``: also for audio
            decoded whole (without a CTC head, by silero-vad's speech probability); ``False``: off.
        no_speech_threshold: the ``no_speech_prob`` above which the silence gate drops a segment.
        hotwords_file: a UTF-8 file of hotwords, one per line (thousands are fine): for each segment
            the entries its CTC read-out sounds like (pinyin-level match) join ``hotwords`` in the
            prompt. Needs a checkpoint with a CTC head.
        max_file_hotwords: at most this many entries of ``hotwords_file`` per segment.
        decoding: how the LLM generates.
    """

    language: str | None = None
    hotwords: tuple[str, ...] = ()
    itn: bool = True
    vad: bool | None = None
    vad_options: VadOptions = dataclasses.field(default_factory=VadOptions)
    batch_size: int = 1
    max_duration: float = MAX_DURATION
    word_timestamps: bool = False
    silence_gate: bool | None = None
    no_speech_threshold: float = 0.5
    hotwords_file: str | None = None
    max_file_hotwords: int = 10
    decoding: DecodingOptions = dataclasses.field(default_factory=DecodingOptions)

    def __post_init__(self):
        check_switch("word_timestamps", self.word_timestamps)
        check_switch("silence_gate", self.silence_gate, optional=True)
        check_number("no_speech_threshold", self.no_speech_threshold, 0.0, 1.0)
        if self.hotwords_file is not None and (not isinstance(self.hotwords_file, str) or not self.hotwords_file):
            raise InvalidOptionError(f"hotwords_file must be a file path, got {self.hotwords_file!r}")
        check_integer("max_file_hotwords", self.max_file_hotwords, 1)
        if self.language is not None and not isinstance(self.language, str):
            raise InvalidOptionError(f"language must be a string such as 'zh' or None, got {self.language!r}")
        object.__setattr__(self, "hotwords", _hotwords(self.hotwords))
        check_switch("itn", self.itn)
        check_switch("vad", self.vad, optional=True)
        check_instance("vad_options", self.vad_options, VadOptions)
        check_integer("batch_size", self.batch_size, 1)
        check_number("max_duration", self.max_duration, 0.0, low_open=True)
        check_instance("decoding", self.decoding, DecodingOptions)


SUPPORTED_PAIRS = (("zh", "en"),)
TRANSLATION_MODES = ("unified", "cascade")
# A translation's decoding by default: a sentence or VAD segment of translated text needs fewer tokens than
# FunASR's 512.
TRANSLATION_DECODING = DecodingOptions(max_new_tokens=256)


@dataclasses.dataclass(frozen=True)
class TranslationOptions:
    """What to translate into what, and how.

    Attributes:
        source_language: language of the speech (ISO code).
        target_language: language of the output text.
        mode: ``"unified"``: the speech LLM translates in one pass (a model or LoRA adapter trained for
            the ``translate`` task); ``"cascade"``: transcribe, then a text translator translates each
            sentence.
        stream_by_sentence: translate sentence by sentence (lowest latency); ``False`` translates each
            VAD segment whole (more context per translation, later first output).
        vad_options: how long audio is cut at pauses.
        overlap: cascade: translate sentence i in a thread of its own while the speech model decodes
            sentence i + 1 (same events and text as without; faster only where the CPU has cores to spare
            for both passes).
        decoding: how the speech model's LLM generates; its ``max_new_tokens`` (256 here) also caps the
            tokens a cascade translator generates per sentence (or segment), and its ``temperature`` is the
            translator's too.
    """

    source_language: str = "zh"
    target_language: str = "en"
    mode: str = "unified"
    stream_by_sentence: bool = True
    vad_options: VadOptions = dataclasses.field(default_factory=VadOptions)
    overlap: bool = False
    decoding: DecodingOptions = dataclasses.field(default_factory=lambda: TRANSLATION_DECODING)

    def __post_init__(self):
        from .errors import UnsupportedLanguageError

        pair = (self.source_language, self.target_language)
        if pair not in SUPPORTED_PAIRS:
            supported = ", ".join(f"{s}->{t}" for s, t in SUPPORTED_PAIRS)
            raise UnsupportedLanguageError(
                f"translation {pair[0]}->{pair[1]} is not supported; supported: {supported}")
        check_choice("mode", self.mode, TRANSLATION_MODES)
        check_instance("vad_options", self.vad_options, VadOptions)
        check_switch("overlap", self.overlap)
        check_instance("decoding", self.decoding, DecodingOptions)


@dataclasses.dataclass(frozen=True)
class AdapterOptions:
    """What a command loads beside the speech model: LoRA adapters and the cascade translator.

    Attributes:
        lora: a LoRA adapter, TASK=PATH (translate=translate.gguf: that task runs with it, the others on the
            base weights) or PATH (the translate command: its translate task; transcribe and serve: every
            task); PATH is a peft adapter folder or, for a GGUF-layout model on llama.cpp, a GGUF LoRA file
            (funasr-nano export gguf-lora); repeatable, one per task.
        translator: cascade translator: a chat LLM GGUF file or a folder of one (llama.cpp; funasr-nano
            export gguf LLM_DIR OUT_DIR writes one), or a transformers chat LLM or Marian/NLLB folder
            (default: the speech model's own LLM on its text translation task).
    """

    lora: tuple[str, ...] = ()
    translator: str | None = None

    def __post_init__(self):
        if isinstance(self.lora, str) or not isinstance(self.lora, tuple) or \
                any(not isinstance(entry, str) or not entry.strip() for entry in self.lora):
            raise InvalidOptionError(f"lora must be a tuple of TASK=PATH or PATH strings, got {self.lora!r}")
        if self.translator is not None and (not isinstance(self.translator, str) or not self.translator.strip()):
            raise InvalidOptionError(f"translator must be a path, got {self.translator!r}")
        self.adapters("default")  # one adapter per task

    def adapters(self, plain: str) -> dict[str, str] | None:
        """``lora`` as :func:`funasr_nano.load_model`'s mapping ``{task: path}`` (``None`` without
        adapters); a plain PATH is the adapter of task ``plain`` (``"default"``: every task). An entry
        is TASK=PATH when the part before the first ``=`` is a word and the whole entry is no existing
        path.

        Raises:
            InvalidOptionError: two adapters for one task.
        """
        import os
        import re

        mapping: dict[str, str] = {}
        for entry in self.lora:
            task, sep, path = entry.partition("=")
            if not (sep and re.fullmatch(r"\w+", task) and path and not os.path.exists(entry)):
                task, path = plain, entry
            if task in mapping:
                raise InvalidOptionError(f"lora: two adapters for the {task!r} task ({mapping[task]}, {path}); "
                                         "give one per task as TASK=PATH")
            mapping[task] = path
        return mapping or None


Options = TypeVar("Options", DecodingOptions, TranscribeOptions, TranslationOptions)


@dataclasses.dataclass(frozen=True)
class SubtitleOptions:
    """How srt and vtt cues are cut at word times (openai-whisper's ``--max_line_width``,
    ``--max_line_count``, ``--max_words_per_line``, ``--highlight_words``; :mod:`funasr_nano.writers`).
    Any of them needs segments with words (``word_timestamps``).

    Attributes:
        max_line_width: srt/vtt: the most characters in a subtitle line; a word that does not fit starts
            the next line (needs word timestamps).
        max_line_count: srt/vtt: the most lines in a cue; with max_line_width, words flow across segments
            into cues of at most this many lines, and a pause of more than 3 s starts a new cue (needs word
            timestamps).
        max_words_per_line: srt/vtt: the most words in a cue (whisper's name); a segment's words are cut
            into cues of at most this many (needs word timestamps; not with max_line_count).
        highlight_words: srt/vtt: underline each word while it is spoken (one cue per word, <u>word</u>;
            needs word timestamps).
    """

    max_line_width: int | None = None
    max_line_count: int | None = None
    max_words_per_line: int | None = None
    highlight_words: bool = False

    def __post_init__(self):
        for name in ("max_line_width", "max_line_count", "max_words_per_line"):
            if getattr(self, name) is not None:
                check_integer(name, getattr(self, name), 1)
        check_switch("highlight_words", self.highlight_words)
        if self.max_line_count is not None and self.max_line_width is None:
            raise InvalidOptionError("max_line_count needs max_line_width (lines are cut by their width)")
        if self.max_words_per_line is not None and self.max_line_count is not None:
            raise InvalidOptionError("max_words_per_line has no effect with max_line_count (cues are cut by their "
                                     "lines there): give one of them")

    @property
    def active(self) -> bool:
        """Whether cues are cut at word times (any option given)."""
        return self != SubtitleOptions()


def _field_names(cls) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def resolve(cls: type[Options], options: Any = None, overrides: Mapping[str, Any] | None = None) -> Options:
    """``options`` (an instance of ``cls``, ``None`` for the defaults, or, for
    :class:`TranscribeOptions`, a :class:`DecodingOptions` taken as its ``decoding``) with the keyword
    ``overrides`` applied. For :class:`TranscribeOptions` and :class:`TranslationOptions`, the fields of
    their ``decoding`` (``max_new_tokens``, ``num_beams``, ``temperature``, ...) may be overridden by name too.

    Raises:
        TypeError: an override that is not a field (named, as for any unexpected keyword argument),
            or ``options`` of the wrong type.
        InvalidOptionError: a bad value (from the dataclass's validation).
    """
    overrides = {key: value for key, value in (overrides or {}).items()}
    if options is None:
        options = cls()
    elif cls is TranscribeOptions and isinstance(options, DecodingOptions):
        options = TranscribeOptions(decoding=options)
    elif not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, not {type(options).__name__}")
    own = _field_names(cls)
    nested = {}
    if cls in (TranscribeOptions, TranslationOptions):
        decoding_fields = _field_names(DecodingOptions)
        nested = {key: overrides.pop(key) for key in list(overrides) if key in decoding_fields and key not in own}
    unknown = sorted(set(overrides) - own)
    if unknown:
        raise TypeError(f"unexpected keyword argument{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    if nested:
        overrides["decoding"] = dataclasses.replace(overrides.get("decoding", options.decoding), **nested)
    return dataclasses.replace(options, **overrides) if overrides else options
