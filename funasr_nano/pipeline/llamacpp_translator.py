"""A cascade translator on llama.cpp: any chat LLM as a GGUF file (Qwen3 / Qwen2.5 Instruct, Llama 3.x Instruct,
Gemma 2, ...; ``funasr-nano export gguf`` writes one from a transformers chat LLM folder).

The request is the one :class:`~funasr_nano.pipeline.translators.ChatLMTranslator` sends (one user turn,
:func:`~funasr_nano.pipeline.translation_prompt.translation_request`), rendered with the chat template stored in the
GGUF (``tokenizer.chat_template``) by llama-cpp-python's ``Jinja2ChatFormatter``, the renderer of its
chat-completion API, which follows transformers' chat-template environment, with ``enable_thinking=False``
(Qwen3's switch; templates without it ignore it). The prompt is tokenized by the GGUF's own vocabulary
(``llama_tokenize``, special tokens parsed) and decoded by :class:`~funasr_nano.engines.llamacpp.LlamaCppEngine`:
greedy or sampled (``temperature``), streamed token by token (:meth:`LlamaCppChatTranslator.stream`),
cancellable within one token, thread-safe (calls are serialised by the engine).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Iterator

from ..engines.base import LLMInput, OnToken
from ..errors import CheckpointError, TranslatorError
from ..options import DecodingOptions, TranslationOptions
from .decoding import TokenStream
from .translation_prompt import clean_output, translation_request

logger = logging.getLogger(__name__)

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


def gguf_file_of(path: str) -> str:
    """The GGUF file a translator path names: the file itself, or the only ``.gguf`` of a folder.

    Raises:
        TranslatorError: no GGUF file there, or several.
    """
    if os.path.isfile(path):
        return path
    found = sorted(name for name in os.listdir(path) if name.endswith(".gguf")) if os.path.isdir(path) else []
    if len(found) != 1:
        raise TranslatorError(f"translator {path}: {len(found)} .gguf files; give the GGUF file itself")
    return os.path.join(path, found[0])


class LlamaCppChatTranslator:
    """A chat LLM in a GGUF file, run by llama.cpp, as cascade translator.

    Args:
        path: a ``.gguf`` file, or a folder holding exactly one.
        n_threads: llama.cpp threads (default: all cores of this process).
        n_ctx: KV cache cells (prompt + ``max_new_tokens`` of one sentence).

    Raises:
        TranslatorError: no GGUF file, one llama.cpp cannot load, or one without a chat template
            (a base, not an Instruct, model).
    """

    def __init__(self, path: str, *, n_threads: int | None = None, n_ctx: int = 2048):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from ..engines.llamacpp import LlamaCppEngine
        from ..export.gguf import check_gguf_file

        self.path = gguf_file_of(path)
        try:
            metadata = check_gguf_file(self.path)
        except CheckpointError as error:
            raise TranslatorError(f"translator {error}") from error
        template = metadata.get(CHAT_TEMPLATE_KEY)
        if not template:
            raise TranslatorError(f"translator {self.path}: the GGUF has no chat template ({CHAT_TEMPLATE_KEY}); "
                                  "a chat (Instruct) model is needed")
        try:
            self.engine = LlamaCppEngine(self.path, n_threads=n_threads, n_ctx=n_ctx, n_seq_max=1)
        except CheckpointError as error:
            raise TranslatorError(f"translator {error}") from error
        self._formatter = Jinja2ChatFormatter(template, eos_token=self.engine.token_text(self.engine.eos_token_id),
                                              bos_token=self.engine.token_text(self.engine.bos_token_id))
        logger.info("llama.cpp translator %s (stop tokens %s)", self.path, list(self.engine.stop_token_ids))

    def prompt(self, text: str, options: TranslationOptions) -> str:
        """The chat-templated request (a string with the template's special tokens)."""
        messages = [{"role": "user", "content": translation_request(text, options)}]
        return self._formatter(messages=messages, enable_thinking=False).prompt

    def prompt_tokens(self, text: str, options: TranslationOptions) -> list[int]:
        return self.engine.tokenize(self.prompt(text, options))

    @staticmethod
    def _decoding(options: TranslationOptions) -> DecodingOptions:
        # as transformers' generate in ChatLMTranslator: no repetition guard
        return DecodingOptions(max_new_tokens=options.decoding.max_new_tokens, temperature=options.decoding.temperature,
                               repetition_guard=False)

    def tokens(self, text: str, options: TranslationOptions, *, on_token: OnToken | None = None,
               cancel: threading.Event | None = None) -> list[int]:
        """The generated token ids (end of turn excluded); ``on_token`` and ``cancel`` as
        :meth:`funasr_nano.engines.base.Engine.generate` (row 0)."""
        llm_input = LLMInput((self.prompt_tokens(text, options),))
        return self.engine.generate([llm_input], self._decoding(options), on_token=on_token, cancel=cancel)[0]

    def translate(self, text: str, options: TranslationOptions, *, cancel: threading.Event | None = None) -> str:
        """``text`` translated (a ``<think>`` block dropped, whitespace collapsed); with ``cancel`` set
        (from any thread), what was generated so far."""
        return clean_output(self.engine.detokenize(self.tokens(text, options, cancel=cancel)))

    def stream(self, text: str, options: TranslationOptions) -> Iterator[str]:
        """The translation so far after each token (the last item is the whole translation); closing the
        iterator cancels the generation within one token."""
        llm_input = LLMInput((self.prompt_tokens(text, options),))
        stream = TokenStream(self.engine, llm_input, self._decoding(options))
        try:
            for tokens in stream:
                yield clean_output(self.engine.detokenize(tokens))
        finally:
            stream.close()

    def close(self) -> None:
        self.engine.close()
