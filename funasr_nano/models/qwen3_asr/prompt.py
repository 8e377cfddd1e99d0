"""Prompts and outputs of Qwen3-ASR, as the reference package ``qwen-asr`` 0.0.6 builds and reads them
(``qwen_asr/inference/qwen3_asr.py``: ``_build_text_prompt``; ``qwen_asr/inference/utils.py``:
``normalize_language_name``, ``parse_asr_output``, ``detect_and_fix_repetitions``).

* The prompt is the checkpoint's chat template rendered for a system turn holding the *context* text
  (empty when there is none), a user turn holding one audio item, and the assistant header; a forced
  language appends ``language {Name}<asr_text>`` after the header, so the model writes only the text.
  The audio item renders as ``<|audio_start|><|audio_pad|><|audio_end|>``; the single ``<|audio_pad|>``
  becomes one position per encoder output frame.
* The model answers ``language {Name}<asr_text>{text}`` (``language None<asr_text>`` for silence);
  with a forced language, only the text.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import UnsupportedLanguageError

ASR_TEXT_TAG = "<asr_text>"
LANGUAGE_PREFIX = "language "
# The languages the reference accepts (utils.SUPPORTED_LANGUAGES), as it spells them.
SUPPORTED_LANGUAGES = (
    "Chinese", "English", "Cantonese", "Arabic", "German", "French", "Spanish", "Portuguese", "Indonesian",
    "Italian", "Korean", "Russian", "Thai", "Vietnamese", "Japanese", "Turkish", "Hindi", "Malay", "Dutch",
    "Swedish", "Danish", "Finnish", "Polish", "Czech", "Filipino", "Persian", "Greek", "Romanian", "Hungarian",
    "Macedonian",
)
# ISO 639 codes accepted as aliases of those names.
LANGUAGE_CODES = {
    "zh": "Chinese", "en": "English", "yue": "Cantonese", "ar": "Arabic", "de": "German", "fr": "French",
    "es": "Spanish", "pt": "Portuguese", "id": "Indonesian", "it": "Italian", "ko": "Korean", "ru": "Russian",
    "th": "Thai", "vi": "Vietnamese", "ja": "Japanese", "tr": "Turkish", "hi": "Hindi", "ms": "Malay", "nl": "Dutch",
    "sv": "Swedish", "da": "Danish", "fi": "Finnish", "pl": "Polish", "cs": "Czech", "fil": "Filipino",
    "fa": "Persian", "el": "Greek", "ro": "Romanian", "hu": "Hungarian", "mk": "Macedonian",
}
# The reference's repetition fix: a character repeated more than this many times, or a pattern of up to
# REPEAT_MAX_PATTERN characters repeated this many times, is cut to one copy.
REPEAT_THRESHOLD = 20
REPEAT_MAX_PATTERN = 20


def normalize_language_name(language: str) -> str:
    """The reference's spelling of a language name: first letter upper case, the rest lower case."""
    text = language.strip()
    return text[:1].upper() + text[1:].lower()


def language_name(language: str | None, supported: Sequence[str] = SUPPORTED_LANGUAGES) -> str | None:
    """The name the prompt uses for ``language`` (``None`` stays ``None``; so does an empty string, as in
    the reference).

    Accepts a name in any case (``chinese``, ``Chinese``) or an ISO code (``zh``, ``yue``).

    Raises:
        UnsupportedLanguageError: a language outside ``supported``.
    """
    if language is None or not language.strip():
        return None
    key = language.strip().lower()
    name = LANGUAGE_CODES.get(key) or normalize_language_name(language)
    if name not in supported:
        raise UnsupportedLanguageError(f"unknown language {language!r} for Qwen3-ASR; use a name or code of: "
                                       + ", ".join(f"{n} ({c})" for c, n in LANGUAGE_CODES.items() if n in supported))
    return name


def context_text(hotwords: Sequence[str]) -> str:
    """The system turn's context for ``hotwords``: the words joined by spaces (one entry is used as it
    is, so a whole context paragraph can be passed as one item)."""
    return " ".join(word.strip() for word in hotwords if word and word.strip())


def render_prompt(tokenizer, chat_template: str | None, context: str, language: str | None) -> str:
    """The prompt text of one request, with a single audio placeholder: the chat template rendered for
    ``[system: context, user: audio]`` with the generation header, plus ``language {language}<asr_text>``
    when a language is forced (reference: ``Qwen3ASRModel._build_text_prompt``)."""
    messages = [{"role": "system", "content": context or ""},
                {"role": "user", "content": [{"type": "audio", "audio": ""}]}]
    text = tokenizer.apply_chat_template(messages, chat_template=chat_template, add_generation_prompt=True,
                                         tokenize=False)
    if language:
        text += f"{LANGUAGE_PREFIX}{language}{ASR_TEXT_TAG}"
    return text


def _fix_char_repeats(text: str, threshold: int) -> str:
    out, i = [], 0
    while i < len(text):
        run = 1
        while i + run < len(text) and text[i + run] == text[i]:
            run += 1
        out.append(text[i] if run > threshold else text[i:i + run])
        i += run
    return "".join(out)


def _fix_pattern_repeats(text: str, threshold: int, max_pattern: int) -> str:
    """From the left, the first pattern (shortest first, up to ``max_pattern`` characters) that repeats at
    least ``threshold`` times in a row is kept once, its further repeats dropped; then the rest of the text
    is fixed the same way."""
    n = len(text)
    if n < 2 * threshold:
        return text
    for start in range(0, n - 2 * threshold + 1):
        for size in range(1, max_pattern + 1):
            if start + size * threshold > n:
                break
            pattern = text[start:start + size]
            if all(text[start + r * size:start + (r + 1) * size] == pattern for r in range(1, threshold)):
                end = start + threshold * size
                while end + size <= n and text[end:end + size] == pattern:
                    end += size
                return text[:start] + pattern + _fix_pattern_repeats(text[end:], threshold, max_pattern)
    return text


def fix_repetitions(text: str, threshold: int = REPEAT_THRESHOLD, max_pattern: int = REPEAT_MAX_PATTERN) -> str:
    """The reference's ``detect_and_fix_repetitions``: runs of one character longer than ``threshold``
    become one character; then a pattern of up to ``max_pattern`` characters repeated ``threshold`` or
    more times becomes one copy."""
    return _fix_pattern_repeats(_fix_char_repeats(text, threshold), threshold, max_pattern)


def parse_output(raw: str, forced_language: str | None = None) -> tuple[str | None, str]:
    """``(language, text)`` of the model's decoded answer (reference: ``parse_asr_output``).

    The raw string is stripped and its repetitions fixed (:func:`fix_repetitions`). With a forced
    language the whole string is the text. Otherwise ``language X<asr_text>text`` gives ``("X", "text")``
    (the name normalised), ``language None<asr_text>...`` (silence) no language, and a string without the
    tag is all text with no language.
    """
    text = (raw or "").strip()
    if not text:  # as the reference: no language for an empty answer, forced or not
        return None, ""
    text = fix_repetitions(text)
    if forced_language:
        return forced_language, text
    if ASR_TEXT_TAG not in text:
        return None, text.strip()
    meta, body = text.split(ASR_TEXT_TAG, 1)
    if "language none" in meta.lower():
        return None, body.strip()
    language = None
    for line in meta.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.lower().startswith(LANGUAGE_PREFIX):
            value = line[len(LANGUAGE_PREFIX):].strip()
            language = normalize_language_name(value) if value else None
        break
    return language, body.strip()
