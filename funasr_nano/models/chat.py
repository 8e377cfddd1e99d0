"""Chat formats: the conversation around the audio slot, taken from the tokenizer's own chat template.

A speech LLM's prompt is a chat: an optional system turn, a user turn whose text surrounds the audio
positions, and the assistant's generation header (optionally followed by the start of the answer).
:class:`ChatFormat` learns the pieces of that conversation by rendering the tokenizer's chat template
once with sentinel contents and cutting the result at the sentinels, so each LLM family's own markers
(ChatML for Qwen, ``<|start_header_id|>`` for Llama 3, ``<start_of_turn>`` for Gemma) come from its
checkpoint rather than from literals in our code.

The only literal markers in the package are here: :data:`CHATML_TEMPLATE`, the template used when a
tokenizer has none (Qwen's ChatML, which Fun-ASR-Nano was trained with), and the speech markers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

logger = logging.getLogger(__name__)

# Qwen's ChatML, as Fun-ASR-Nano builds its prompt (funasr/models/fun_asr_nano/model.py, generate_chatml).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Qwen's special tokens, in Qwen's order (ids 151643... in the real vocabulary), and the added tokens.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
QWEN_ADDED_TOKENS = ("<think>", "</think>")  # added, not special (Qwen3 keeps them in decoded text)
# The token transformers' Fun-ASR-Nano port puts at audio positions of its prompts.
AUDIO_PLACEHOLDER_TOKEN = "<|object_ref_start|>"
# Speech markers around the audio slot of a swapped LLM's prompt (``funasr-nano swap``), the names
# FunASR's prompts use for the audio (``<|startofspeech|>!path<|endofspeech|>``); added to a tokenizer
# that has no suitable pair of its own (:data:`KNOWN_SPEECH_MARKERS`).
SPEECH_MARKERS = ("<|startofspeech|>", "<|endofspeech|>")
# Existing special-token pairs that already mean "audio starts / ends", reused when a tokenizer has them.
KNOWN_SPEECH_MARKERS = (
    SPEECH_MARKERS,
    ("<|audio_start|>", "<|audio_end|>"),  # Qwen2.5-Omni / Qwen3-Omni
    ("<|audio_bos|>", "<|audio_eos|>"),  # Qwen2-Audio
    ("<start_of_audio>", "<end_of_audio>"),  # Gemma-3n
)

_SYSTEM, _USER, _ANSWER = "\x00SYSTEM\x00", "\x00USER\x00", "\x00ANSWER\x00"


@dataclasses.dataclass(frozen=True)
class PromptIds:
    """A tokenized prompt with one audio slot.

    ``input_ids = prefix_ids + [audio] * num_audio + suffix_ids``; the audio embeddings take the
    ``num_audio`` positions between them.
    """

    prefix_ids: list[int]
    suffix_ids: list[int]
    num_audio: int

    @property
    def length(self) -> int:
        return len(self.prefix_ids) + self.num_audio + len(self.suffix_ids)


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    """The text pieces of one family's chat format.

    Attributes:
        system_start, system_end: around the system prompt (both empty when the family has no system
            role; the system text is then folded into the user turn, as such templates do).
        user_start: before the user text; ``user_end``: after it, up to and including the assistant's
            generation header.
        end_of_turn: the token that ends the assistant's turn (a stop token).
        has_system: whether the template has a system role.
        audio_start, audio_end: speech markers written around a non-empty audio slot (empty for
            Fun-ASR-Nano, whose prompt has none; set for swapped LLMs, see :mod:`funasr_nano.export.swap`).
    """

    system_start: str
    system_end: str
    user_start: str
    user_end: str
    end_of_turn: str
    has_system: bool = True
    audio_start: str = ""
    audio_end: str = ""

    @classmethod
    def from_tokenizer(cls, tokenizer, *, template_kwargs: dict | None = None,
                       audio_markers: Sequence[str] = ("", "")) -> "ChatFormat":
        """Derive the pieces from ``tokenizer.chat_template`` (ChatML when it has none).

        Args:
            template_kwargs: extra variables for the template (``{"enable_thinking": False}`` switches
                thinking off in Qwen3's template, as ``apply_chat_template(..., enable_thinking=False)``).
            audio_markers: ``(audio_start, audio_end)`` texts around the audio slot.

        Raises:
            ValueError: a template that does not render a system/user/assistant conversation.
        """
        template = getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE
        extra = dict(template_kwargs or {})

        def render(messages, add_generation_prompt=True):
            return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt, **extra)

        user = {"role": "user", "content": _USER}
        has_system = True
        try:
            text = render([{"role": "system", "content": _SYSTEM}, user])
        except Exception:  # templates without a system role raise (Gemma)
            text, has_system = render([user]), False
        if has_system and _SYSTEM not in text:
            has_system, text = False, render([user])
        if text.count(_USER) != 1:
            raise ValueError("the chat template does not render the user message once")
        if has_system:
            before_system, rest = text.split(_SYSTEM)
            system_end_and_user_start, user_end = rest.split(_USER)
        else:
            before_system, system_end_and_user_start, user_end = "", "", ""
            user_start, user_end = text.split(_USER)
        if has_system:
            # the user turn opens the way the template opens it when there is no system message
            alone = render([user])
            alone_user_start = alone.split(_USER)[0]
            if system_end_and_user_start.endswith(alone_user_start) and alone_user_start:
                system_end = system_end_and_user_start[: len(system_end_and_user_start) - len(alone_user_start)]
                user_start = alone_user_start
            else:
                system_end, user_start = system_end_and_user_start, ""
        else:
            system_end = ""
        # the turn ends with the first special token after the user text (ChatML: <|im_end|>)
        try:
            end_of_turn = _first_special(tokenizer, user_end)
        except ValueError:
            # templates whose turns are not closed by a special token (DeepSeek-V2: "User: ...\n\nAssistant:")
            # end the assistant's answer with one: the first special token after a rendered answer
            answered = render([user, {"role": "assistant", "content": _ANSWER}], add_generation_prompt=False)
            if answered.count(_ANSWER) != 1:
                raise
            end_of_turn = _first_special(tokenizer, answered.split(_ANSWER)[1])
        audio_start, audio_end = audio_markers
        return cls(system_start=before_system, system_end=system_end, user_start=user_start, user_end=user_end,
                   end_of_turn=end_of_turn, has_system=has_system, audio_start=audio_start, audio_end=audio_end)

    def prompt_texts(self, user_text: str, system: str | None = None, answer_prefix: str = "") -> tuple[str, str]:
        """The prompt as text ``(before the audio slot, after it)``.

        The audio slot is at the end of ``user_text`` (Fun-ASR-Nano's instruction ends with ``：``
        followed by the audio). ``answer_prefix`` follows the generation header (FunASR's
        ``prev_text``).
        """
        head = ""
        if system is not None:
            if self.has_system:
                head = self.system_start + system + self.system_end
            else:  # fold the system text into the user turn
                user_text = f"{system}\n\n{user_text}"
        return head + self.user_start + user_text, self.user_end + answer_prefix

    def prompt_ids(self, tokenizer, user_text: str, num_audio: int, *, system: str | None = None,
                   answer_prefix: str = "") -> PromptIds:
        """Tokenize the prompt around an audio slot of ``num_audio`` positions. The text before and after
        the slot are tokenized separately, as FunASR does (``FunASRNano.data_load_speech``)."""
        before, after = self.prompt_texts(user_text, system, answer_prefix)
        if num_audio:  # speech markers (swapped LLMs) around the audio slot
            before, after = before + self.audio_start, self.audio_end + after
        return PromptIds(prefix_ids=list(tokenizer.encode(before, add_special_tokens=False)),
                         suffix_ids=list(tokenizer.encode(after, add_special_tokens=False)), num_audio=num_audio)

    def stop_token_ids(self, tokenizer, extra: Sequence[int] = ()) -> list[int]:
        """The end-of-turn token id plus ``extra`` (e.g. the LLM config's ``eos_token_id``), sorted.

        Raises:
            ValueError: the tokenizer has no single token for ``end_of_turn``.
        """
        token = tokenizer.convert_tokens_to_ids(self.end_of_turn)
        if token is None or token == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {self.end_of_turn} token")
        return sorted({int(token), *(int(t) for t in extra)})


def _first_special(tokenizer, text: str) -> str:
    """The first special (added) token that starts ``text`` after optional whitespace-free text."""
    specials = sorted((str(t) for t in tokenizer.all_special_tokens + list(tokenizer.get_added_vocab())),
                      key=len, reverse=True)
    for index in range(len(text)):
        for token in specials:
            if token and text.startswith(token, index):
                return token
    raise ValueError(f"the chat template ends the user turn without a special token: {text!r}")
