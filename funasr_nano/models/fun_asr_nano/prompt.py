"""Prompts: the instruction text, the ChatML conversation and the audio slot, as FunASR builds them.

Reproduces ``FunASRNano.get_prompt``, ``generate_chatml`` and ``data_load_speech`` in
``funasr/models/fun_asr_nano/model.py`` (funasr 1.4.16):

* user text = [hotword preamble] + ``语音转写`` | ``语音转写成{language}`` + [``，不进行文本规整`` when ITN
  is off] + ``：`` followed by the audio;
* the conversation is the tokenizer's chat (ChatML for Qwen3) with the system prompt "You are a helpful assistant." and ends with the
  assistant header;
* the text before and after the audio is tokenized **separately** (as the official code does), and
  the audio occupies :func:`num_audio_tokens` positions between them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from ...errors import CheckpointError, UnsupportedLanguageError
from ..chat import ChatFormat, PromptIds
from ..llm_input import LLMInput

SYSTEM_PROMPT = "You are a helpful assistant."
HOTWORD_PREAMBLE = (
    "请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n\n\n**上下文信息：**\n\n\n"
)

# Language hints: the checkpoint was trained with Chinese language names ("语音转写成英文："); codes and
# English names are accepted as aliases (the same table as transformers' FunAsrNanoProcessor).
LANGUAGE_NAMES = {"zh": "中文", "en": "英文", "ja": "日文"}
_LANGUAGE_ALIASES = {
    **{code: code for code in LANGUAGE_NAMES},
    "chinese": "zh", "mandarin": "zh", "english": "en", "japanese": "ja",
    **{name: code for code, name in LANGUAGE_NAMES.items()},
}


def language_name(language: str | None) -> str | None:
    """The name the prompt uses for ``language``.

    Accepts a code (``zh``, ``en``, ``ja``), an English name or the checkpoint's Chinese name
    (``中文``, ``英文``, ``日文``); any other name written in CJK characters (e.g. a dialect, ``粤语``)
    is passed through unchanged, as FunASR does.

    Raises:
        UnsupportedLanguageError: for an unknown code or Latin-script name.
    """
    if language is None:
        return None
    key = language.strip().lower()
    if key in _LANGUAGE_ALIASES:
        return LANGUAGE_NAMES[_LANGUAGE_ALIASES[key]]
    if key and all("\u3040" <= ch <= "\u9fff" for ch in key):
        return language.strip()
    raise UnsupportedLanguageError(
        f"unknown language {language!r}; use one of {sorted(LANGUAGE_NAMES)} "
        f"(or {', '.join(LANGUAGE_NAMES.values())}), or a language name in Chinese"
    )


def transcription_instruction(hotwords: Sequence[str] = (), language: str | None = None, itn: bool = True) -> str:
    """The user instruction before the audio, exactly as ``FunASRNano.get_prompt``.

    ``language`` is used verbatim; pass it through :func:`language_name` first.
    """
    prompt = ""
    if hotwords:
        prompt = HOTWORD_PREAMBLE + f"热词列表：[{', '.join(hotwords)}]\n"
    prompt += "语音转写" if language is None else f"语音转写成{language}"
    if not itn:
        prompt += "，不进行文本规整"
    return prompt + "："


def num_audio_tokens(num_frames: int, use_low_frame_rate: bool) -> int:
    """How many adaptor frames FunASR splices into the prompt for ``num_frames`` LFR frames.

    With ``use_low_frame_rate`` the official code computes the length of a 4x-downsampled sequence
    (two stride-2 convolutions, then one more halving) and splices only that many of the adaptor's
    frames - the *first* ones, a cut rather than a downsample (``data_load_speech``,
    ``fake_token_len``). Without it, every frame is spliced. The transformers port always splices
    every frame.
    """
    if not use_low_frame_rate:
        return num_frames
    length = 1 + (num_frames - 3 + 2 * 1) // 2
    length = 1 + (length - 3 + 2 * 1) // 2
    return (length - 1) // 2 + 1


def chat_format_for(tokenizer, config=None) -> ChatFormat:
    """The chat format of a checkpoint: its tokenizer's template, with the settings a swapped LLM's
    ``config.json`` records (:mod:`funasr_nano.export.swap`): ``chat_template_kwargs`` (e.g.
    ``{"enable_thinking": false}`` for Qwen3 templates) and ``speech_markers`` (the two tokens around
    the audio slot). A released Fun-ASR-Nano config has neither: the plain template, no markers.

    Args:
        config: the ``FunAsrNanoConfig`` (or ``None``).

    Raises:
        ValueError: malformed settings, or a template that does not render a conversation.
    """
    kwargs = getattr(config, "chat_template_kwargs", None) or {}
    markers = getattr(config, "speech_markers", None) or ("", "")
    if not isinstance(kwargs, dict):
        raise ValueError(f"chat_template_kwargs must be a mapping, got {kwargs!r}")
    if len(markers) != 2 or not all(isinstance(m, str) for m in markers):
        raise ValueError(f"speech_markers must be two token strings, got {markers!r}")
    return ChatFormat.from_tokenizer(tokenizer, template_kwargs=kwargs, audio_markers=tuple(markers))


def build_prompt_ids(tokenizer, instruction: str, num_audio: int, prefix_text: str = "", *,
                     chat: ChatFormat | None = None) -> PromptIds:
    """Tokenize the official prompt around an audio slot of ``num_audio`` positions: the system prompt
    :data:`SYSTEM_PROMPT`, the user ``instruction`` followed by the audio, the assistant header and
    ``prefix_text`` (FunASR's ``prev_text``, used to continue a transcript). The chat markers come from
    ``chat`` (default: the tokenizer's own chat template, ChatML for Qwen3).
    """
    chat = chat or ChatFormat.from_tokenizer(tokenizer)
    return chat.prompt_ids(tokenizer, instruction, num_audio, system=SYSTEM_PROMPT, answer_prefix=prefix_text)


# ----------------------------------------------------------------------------------------------------
# Tasks: the one place that says what each task asks the LLM, for training and inference alike.


@dataclasses.dataclass(frozen=True)
class Task:
    """A task the speech LLM is trained or asked to do.

    Attributes:
        name: the name used in manifests, training configs and adapter maps.
        instruction: the user-turn text. With audio it comes before the audio slot; for a text-only
            task it holds ``{text}``, replaced by the source text.
        uses_audio: whether the prompt has an audio slot.
    """

    name: str
    instruction: str
    uses_audio: bool

    def user_text(self, text: str | None = None) -> str:
        """The instruction with ``{text}`` filled in (text-only tasks).

        Raises:
            ValueError: a text-only task without ``text``.
        """
        if self.uses_audio:
            return self.instruction
        if not text:
            raise ValueError(f"task {self.name!r} needs a source text")
        return self.instruction.format(text=text)


TASKS: dict[str, Task] = {
    # The official prompt (no hotwords, no language hint, ITN on): what FunASRNano.transcribe sends.
    "transcribe": Task("transcribe", transcription_instruction(), uses_audio=True),
    # Speech translation into English: transcribe the Chinese speech and answer with the English.
    "translate": Task("translate", "语音转写并翻译成英文：", uses_audio=True),
    # Text-only translation (no audio), which keeps the LLM's translation ability during training.
    "text_translate": Task("text_translate", "请将以下中文翻译为英文：{text}", uses_audio=False),
}


# What a checkpoint that does not list its tasks can do (the released Fun-ASR-Nano-2512).
DEFAULT_TASKS = ("transcribe",)


def checkpoint_tasks(value, where: str) -> tuple[str, ...]:
    """The ``tasks`` a checkpoint's config lists (``config.yaml`` / ``config.json``, written by
    ``funasr-nano train``; ``None``: :data:`DEFAULT_TASKS`).

    Raises:
        CheckpointError: not a list of task names (naming ``where``).
    """
    if value is None:
        return DEFAULT_TASKS
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise CheckpointError(f"{where}: tasks must be a list of task names, got {value!r}")
    return tuple(value)


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``.

    Raises:
        ValueError: an unknown task name (the message lists the known ones).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; use one of {sorted(TASKS)}") from None


def postprocess_text(text: str) -> str:
    """FunASR's post-processing of decoded text (``FunASRNano.inference_llm``): ``/sil`` markers
    removed, whitespace runs folded to one space."""
    return re.sub(r"\s+", " ", text.replace("/sil", " "))


# ----------------------------------------------------------------------------------------------------
# The prompt and output methods of a Fun-ASR-Nano FamilyModel, one copy for both runtimes.


class FunAsrNanoPrompts:
    """The prompt and output methods of a Fun-ASR-Nano :class:`~funasr_nano.models.base.FamilyModel`, shared by
    the torch model (:class:`.model.FunAsrNanoModel`) and the light runtime's
    (:class:`.light.LightFunAsrNanoModel`): both set ``tokenizer`` (transformers' or
    :class:`~funasr_nano.models.light_tokenizer.LightTokenizer`) and ``chat`` (:func:`chat_format_for`).
    The audio runs spliced into :meth:`llm_input` are whatever the runtime's ``audio_embeddings`` returns
    (a torch tensor or a numpy array, ``(num_audio, llm_hidden)``)."""

    tokenizer: object
    chat: ChatFormat

    def transcription_prompt(self, language: str | None, hotwords: Sequence[str], itn: bool) -> str:
        return transcription_instruction(list(hotwords), language_name(language), itn)

    def task_prompt(self, task: str, text: str | None = None) -> str:
        return get_task(task).user_text(text)

    def task_uses_audio(self, task: str) -> bool:
        return get_task(task).uses_audio

    def llm_input(self, prompt: str, audio, *, answer_prefix: str = "", adapter: str | None = None) -> LLMInput:
        """``prompt``: the user instruction, wrapped in the chat template with FunASR's system prompt."""
        num_audio = 0 if audio is None else audio.shape[0]
        ids = self.chat.prompt_ids(self.tokenizer, prompt, num_audio, system=SYSTEM_PROMPT, answer_prefix=answer_prefix)
        parts = (ids.prefix_ids,) + ((audio,) if num_audio else ()) + (ids.suffix_ids,)
        return LLMInput(parts=parts, adapter=adapter)

    def decode_text(self, tokens: Sequence[int]) -> str:
        """Token ids -> text, post-processed as FunASR does."""
        return postprocess_text(self.tokenizer.decode(list(tokens), skip_special_tokens=True))
