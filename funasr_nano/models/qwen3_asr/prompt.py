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

from ..llm_input import LLMInput
from ...errors import CheckpointError, InvalidOptionError, UnsupportedLanguageError

ASR_TEXT_TAG = "<asr_text>"
TASKS = ("transcribe",)
# The reference stops at these (Qwen3ASRForConditionalGeneration.generate: eos_token_id 151645, 151643).
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
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


def num_audio_tokens(frames: int, n_window: int = 50) -> int:
    """Encoder output frames (= prompt positions) for ``frames`` mel frames: each full chunk of
    ``2 * n_window`` frames gives as many positions as three stride-2 convolutions leave of it (13 of
    100 frames), the last partial chunk ``ceil(ceil(ceil(r / 2) / 2) / 2)`` (three stride-2 convolutions). Reference:
    ``_get_feat_extract_output_lengths`` (13 per 100 frames)."""
    chunk = 2 * n_window

    def after_convs(length: int) -> int:
        for _ in range(3):
            length = (length - 1) // 2 + 1 if length > 0 else 0
        return length

    return (frames // chunk) * after_convs(chunk) + after_convs(frames % chunk)


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


class Qwen3AsrPrompts:
    """The prompt and output methods of a Qwen3-ASR :class:`~funasr_nano.models.base.FamilyModel`, shared by
    the torch model (:class:`.model.Qwen3AsrModel`) and the light runtime's
    (:class:`.light.LightQwen3AsrModel`): both set ``tokenizer`` (transformers' or
    :class:`~funasr_nano.models.light_tokenizer.LightTokenizer`), ``path`` and ``languages``, then call
    :meth:`_setup_prompts`."""

    tokenizer: object
    path: str
    languages: tuple[str, ...]

    def _setup_prompts(self, chat_template: str | None, audio_token_id: int) -> None:
        """Check the tokenizer and template; set ``chat_template``, ``audio_token``, ``tasks`` and the stop ids.

        Raises:
            CheckpointError: no chat template, one that cannot render an audio message or renders other than
                one audio slot, or a tokenizer without the stop or audio tokens.
        """
        self.tasks = TASKS
        self.chat_template = chat_template
        if not self.chat_template:
            raise CheckpointError(f"{self.path}: no chat template (chat_template.json or the tokenizer's)")
        self.audio_token = self.tokenizer.convert_ids_to_tokens(int(audio_token_id))
        stop = [self.tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
        if any(t is None or t == self.tokenizer.unk_token_id for t in stop) or self.audio_token is None:
            raise CheckpointError(f"{self.path}: the tokenizer lacks {STOP_TOKENS} or the audio token")
        self._stop_token_ids = sorted(int(t) for t in stop)
        # the prompt must hold exactly one audio slot
        try:
            probe = render_prompt(self.tokenizer, self.chat_template, "", None)
        except Exception as error:  # jinja2's TemplateError, or a TypeError of a text-only template
            raise CheckpointError(
                f"{self.path}: the chat template cannot render an audio message ({type(error).__name__}: {error}); "
                "it must be Qwen3-ASR's multimodal template (chat_template.json, whose user content is a list "
                "of parts), not a text-only chat template") from None
        if probe.count(self.audio_token) != 1:
            raise CheckpointError(f"{self.path}: the chat template renders {probe.count(self.audio_token)} "
                                  f"{self.audio_token} tokens for one audio item, expected 1")

    @property
    def stop_token_ids(self) -> list[int]:
        return list(self._stop_token_ids)

    def transcription_prompt(self, language: str | None, hotwords: Sequence[str], itn: bool) -> str:
        """The whole prompt text with one audio placeholder (the reference's ``_build_text_prompt``): the
        system turn holds the hotwords as context text (:func:`context_text`), a language forces
        ``language X<asr_text>`` after the assistant header.

        Raises:
            UnsupportedLanguageError: an unknown language. InvalidOptionError: ``itn=False`` (Qwen3-ASR has
            no switch for spoken-form output).
        """
        if not itn:
            raise InvalidOptionError("itn=False: Qwen3-ASR has no switch for spoken-form (non-ITN) output")
        return render_prompt(self.tokenizer, self.chat_template, context_text(hotwords),
                             language_name(language, self.languages))

    def task_prompt(self, task: str, text: str | None = None) -> str:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r} for Qwen3-ASR; use one of {list(TASKS)}")
        return self.transcription_prompt(None, (), True)

    def task_uses_audio(self, task: str) -> bool:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r} for Qwen3-ASR; use one of {list(TASKS)}")
        return True

    def llm_input(self, prompt: str, audio, *, answer_prefix: str = "", adapter: str | None = None) -> LLMInput:
        """The prompt text ``prompt`` (one audio placeholder) with ``audio`` (``(num_audio, hidden)``,
        a torch tensor or a numpy array) in place of the placeholder and ``answer_prefix`` after the prompt.
        The text on each side of the audio is tokenized alone; the reference tokenizes the whole string,
        which gives the same ids since the audio is fenced by special tokens."""
        if prompt.count(self.audio_token) != 1:
            raise ValueError(f"a Qwen3-ASR prompt holds one {self.audio_token}, this one {prompt.count(self.audio_token)}")
        before, after = prompt.split(self.audio_token)
        prefix = list(self.tokenizer.encode(before, add_special_tokens=False))
        suffix = list(self.tokenizer.encode(after + answer_prefix, add_special_tokens=False))
        parts = (prefix,) + ((audio,) if audio is not None and audio.shape[0] else ()) + (suffix,)
        return LLMInput(parts=parts, adapter=adapter)

    def _raw_text(self, tokens: Sequence[int]) -> str:
        """The generated tokens as text, special tokens dropped, no clean-up of spaces."""
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def decode_text(self, tokens: Sequence[int]) -> str:
        """The transcript in the generated tokens: ``language X<asr_text>`` removed, repetitions fixed
        (:func:`parse_output`)."""
        return parse_output(self._raw_text(tokens))[1]

    def parse_transcription(self, tokens: Sequence[int], language: str | None) -> tuple[str | None, str]:
        """``(language, text)``: the language the model wrote (``"Chinese"``), or the forced one."""
        return parse_output(self._raw_text(tokens), language_name(language, self.languages))
