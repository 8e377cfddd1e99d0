"""What a chat-LLM translator sends and gets back: the user turn asking for a translation, and the answer
cleaned of a ``<think>`` block. Shared by the transformers chat translator
(:class:`funasr_nano.pipeline.translators.ChatLMTranslator`) and the llama.cpp one
(:mod:`funasr_nano.pipeline.llamacpp_translator`).
"""

from __future__ import annotations

import re

from ..options import TranslationOptions

LANGUAGE_ENGLISH_NAMES = {"zh": "Chinese", "en": "English"}


def clean_output(text: str) -> str:
    """A chat LLM's answer without a ``<think>`` block, whitespace collapsed."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    return re.sub(r"\s+", " ", text).strip()


def translation_request(text: str, options: TranslationOptions) -> str:
    """The user turn a chat-LLM translator sends for ``text``."""
    source = LANGUAGE_ENGLISH_NAMES[options.source_language]
    target = LANGUAGE_ENGLISH_NAMES[options.target_language]
    return (f"Translate the following {source} text into {target}. "
            f"Reply with the {target} translation only.\n\n{text}")
