"""Cascade translators: text in the source language -> text in the target language.

A local chat LLM (Qwen3 / Qwen2.5 Instruct style, thinking off) on transformers or, as a GGUF file, on
llama.cpp (:mod:`funasr_nano.pipeline.llamacpp_translator`), a local seq2seq MT model (Marian, NLLB),
or the speech model's own LLM on the text-only translate task when it was trained for it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from typing import TYPE_CHECKING, Protocol

from ..errors import InvalidOptionError, TranslatorError
from ..options import TRANSLATION_MODES, TranslationOptions
from .translation_prompt import clean_output, translation_request

if TYPE_CHECKING:
    import torch

    from .speech_model import SpeechModel

logger = logging.getLogger(__name__)


def _inference_mode(function):
    """``torch.inference_mode()`` as a decorator that imports torch when called (this module is imported
    on the light runtime, which has no torch)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return function(*args, **kwargs)

    return wrapper


class Translator(Protocol):
    """Turns source-language text into target-language text. Implementations are thread-safe; those
    whose ``translate`` also takes ``cancel`` (a :class:`threading.Event`) stop within one token once it
    is set, returning what they have (see :func:`translate_text`)."""

    def translate(self, text: str, options: TranslationOptions) -> str: ...


def translate_text(translator: Translator, text: str, options: TranslationOptions,
                   cancel: threading.Event | None = None) -> str:
    """``translator.translate(text, options)``, passing ``cancel`` to translators that take it (the
    llama.cpp and transformers chat translators, Marian/NLLB)."""
    if cancel is not None and "cancel" in inspect.signature(translator.translate).parameters:
        return translator.translate(text, options, cancel=cancel)
    return translator.translate(text, options)


def _stopping(cancel: threading.Event | None) -> dict:
    """``generate`` arguments that stop generation once ``cancel`` is set (checked after each token)."""
    if cancel is None:
        return {}
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    return {"stopping_criteria": StoppingCriteriaList([Cancelled()])}


def _sampling(options: TranslationOptions) -> dict:
    """``generate`` arguments for ``options.temperature`` (0 = greedy)."""
    return dict(do_sample=True, temperature=options.decoding.temperature) if options.decoding.temperature > 0 else dict(do_sample=False)


class ChatLMTranslator:
    """A local causal LLM with a chat template (Qwen3 / Qwen2.5 Instruct style) as translator.

    The request is one user turn (``Translate the following Chinese text into English...``); Qwen3's
    thinking is turned off through the template's ``enable_thinking=False`` and any ``<think>`` block
    is dropped from the answer.
    """

    def __init__(self, path: str, device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = torch.float32 if dtype is None else dtype
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if not getattr(self.tokenizer, "chat_template", None):
            raise TranslatorError(f"{path}: the tokenizer has no chat template; a chat (Instruct) model is needed")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.path = path

    def prompt(self, text: str, options: TranslationOptions) -> str:
        request = translation_request(text, options)
        return self.tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                                  add_generation_prompt=True, enable_thinking=False)

    @_inference_mode
    def tokens(self, text: str, options: TranslationOptions, *, cancel: threading.Event | None = None) -> list[int]:
        """The generated token ids (the end-of-turn token excluded); with ``cancel`` set (from any
        thread), those generated so far."""
        ids = self.tokenizer(self.prompt(text, options), return_tensors="pt", add_special_tokens=False)
        ids = ids.to(self.model.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        output = self.model.generate(**ids, max_new_tokens=options.decoding.max_new_tokens, pad_token_id=pad,
                                     **_sampling(options), **_stopping(cancel))
        generated = output[0, ids["input_ids"].shape[1]:].tolist()
        stops = self.model.generation_config.eos_token_id
        stops = set(stops if isinstance(stops, (list, tuple)) else [stops])
        return generated[:-1] if generated and generated[-1] in stops else generated

    def translate(self, text: str, options: TranslationOptions, *, cancel: threading.Event | None = None) -> str:
        return clean_output(self.tokenizer.decode(self.tokens(text, options, cancel=cancel), skip_special_tokens=True))


# NLLB's language codes (FLORES-200) for the supported pairs.
NLLB_CODES = {"zh": "zho_Hans", "en": "eng_Latn"}


class Seq2SeqTranslator:
    """A local encoder-decoder MT model (Marian ``opus-mt-zh-en``, NLLB) as translator."""

    def __init__(self, path: str, device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        dtype = torch.float32 if dtype is None else dtype
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.multilingual = NLLB_CODES["en"] in self.tokenizer.get_vocab()
        self.path = path

    @_inference_mode
    def translate(self, text: str, options: TranslationOptions, *, cancel: threading.Event | None = None) -> str:
        kwargs = _stopping(cancel)
        if self.multilingual:
            self.tokenizer.src_lang = NLLB_CODES[options.source_language]
            kwargs["forced_bos_token_id"] = self.tokenizer.convert_tokens_to_ids(NLLB_CODES[options.target_language])
        inputs = self.tokenizer(text, return_tensors="pt").to(self.model.device)
        output = self.model.generate(**inputs, max_new_tokens=options.decoding.max_new_tokens, **kwargs, **_sampling(options))
        return clean_output(self.tokenizer.decode(output[0], skip_special_tokens=True))


class SpeechLLMTranslator:
    """The speech model's own LLM on the text-only translate task (``text_translate``), for models
    trained with it (the demo model is)."""

    def __init__(self, model: "SpeechModel"):
        if not model.supports_task("text_translate"):
            raise TranslatorError(
                "this speech model was not trained for text translation (its checkpoint lists tasks "
                f"{list(model.tasks)}); pass translator=PATH to a chat LLM or a Marian/NLLB model")
        self.model = model

    def translate(self, text: str, options: TranslationOptions) -> str:
        return self.model.run("text_translate", text=text, options=options.decoding).text.strip()


def is_gguf_translator(path: str) -> bool:
    """Whether a translator path is a GGUF file, or a folder of GGUF files without a transformers
    ``config.json`` (``funasr-nano export gguf`` of a chat LLM)."""
    if os.path.isfile(path):
        return path.endswith(".gguf")
    return (os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json"))
            and any(name.endswith(".gguf") for name in os.listdir(path)))


@functools.lru_cache(maxsize=4)
def _load_translator_cached(path: str, device: str, n_threads: int | None) -> Translator:
    from transformers import AutoConfig

    if is_gguf_translator(path):
        from .llamacpp_translator import LlamaCppChatTranslator

        return LlamaCppChatTranslator(path, n_threads=n_threads)
    if not os.path.isdir(path):
        raise TranslatorError(f"translator {path}: no such folder (or .gguf file)")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as error:
        raise TranslatorError(f"translator {path}: not a transformers model folder ({error})") from error
    architectures = " ".join(config.architectures or [])
    if getattr(config, "is_encoder_decoder", False):
        kind = Seq2SeqTranslator
    elif "ForCausalLM" in architectures or "ForConditionalGeneration" in architectures:
        kind = ChatLMTranslator
    else:
        kind = None
    if kind is not None:
        try:
            return kind(path, device)
        except TranslatorError:
            raise
        except Exception as error:  # missing weights, a broken tokenizer, ...: one clear error
            raise TranslatorError(f"translator {path}: cannot load it ({type(error).__name__}: {error})") from error
    raise TranslatorError(
        f"translator {path}: a {config.model_type} model ({architectures or 'no architecture'}) cannot "
        "translate; use a chat LLM (e.g. Qwen3/Qwen2.5 Instruct) or a Marian/NLLB translation model")


def load_translator(path: str | os.PathLike, device: "str | torch.device" = "cpu", *,
                    n_threads: int | None = None) -> Translator:
    """Load a cascade translator (cached: loading the same path twice gives the same object): a
    transformers folder (chat LLM on transformers, or Marian/NLLB), or a chat LLM as a GGUF file or a
    folder of one (on llama.cpp, :class:`~funasr_nano.pipeline.llamacpp_translator.LlamaCppChatTranslator`,
    with ``n_threads`` threads).

    Raises:
        TranslatorError: the path is missing, or holds a model that cannot translate (or a GGUF
            without a chat template).
    """
    return _load_translator_cached(os.path.abspath(os.fspath(path)), str(device), n_threads)




def resolve_translator(model: "SpeechModel", mode: str,
                       translator: "Translator | str | os.PathLike | None") -> "Translator | None":
    """Check that ``model`` can run ``mode`` and return the cascade translator (``None`` in unified mode).

    Raises:
        ValueError: an unknown mode, or a translator given in unified mode.
        TranslatorError: the model was not trained for the task, or the translator is unusable.
    """
    if mode not in TRANSLATION_MODES:
        raise InvalidOptionError(f"mode must be one of {TRANSLATION_MODES}, not {mode!r}")
    if mode == "unified":
        if translator is not None:
            raise InvalidOptionError("a translator is only used in cascade mode")
        if not model.supports_task("translate"):
            raise TranslatorError(
                "this speech model was not trained for speech translation (its checkpoint lists tasks "
                f"{list(model.tasks)}); use mode='cascade' with a translator, or load a translate LoRA adapter")
        return None
    if translator is None:
        return SpeechLLMTranslator(model)
    if isinstance(translator, (str, os.PathLike)):
        # llama.cpp speech model: the CPU, and a GGUF translator gets the speech engine's threads
        return load_translator(translator, getattr(model.engine, "device", "cpu"),
                               n_threads=getattr(model.engine, "n_threads", None))
    return translator
