"""A tokenizer without transformers: `tokenizers` for the ids, jinja2 for the chat template.

The light runtime (GGUF LLM in llama.cpp, audio path in onnxruntime) must not import transformers, yet it
needs what a checkpoint's tokenizer gives: text to ids and back, the special tokens and the chat template.
:class:`LightTokenizer` reads the files ``save_pretrained`` writes (``tokenizer.json``,
``tokenizer_config.json``, ``chat_template.jinja`` / ``chat_template.json`` / a ``chat_template`` entry)
and offers the subset of transformers' tokenizer API the package uses, with the same results:

* ``encode`` / ``decode`` are `tokenizers` ``Tokenizer.encode`` / ``decode`` (what transformers' fast
  tokenizers call), plus ``clean_up_tokenization_spaces`` when the config asks for it;
* ``apply_chat_template`` renders as transformers 5 does (``transformers/utils/chat_template_utils.py``):
  a sandboxed jinja2 environment with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols``
  extension, the ``tojson`` filter without HTML escaping, ``raise_exception`` and ``strftime_now``, a
  ``{% generation %}`` block that renders its body, the special tokens (``bos_token``, ``eos_token``, ...)
  as variables that keyword arguments override, message keys whose value is ``None`` dropped, and a
  message's reasoning also given as ``reasoning_content`` and ``thinking``.

Equality with transformers is tested for the chat formats the project supports (Qwen3, Llama 3, Gemma 2,
DeepSeek, Qwen3-ASR) in ``tests/test_light_tokenizer.py``.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Iterable, Mapping, Sequence

from ..errors import CheckpointError

# the special-token attributes transformers keeps (``SpecialTokensMixin.SPECIAL_TOKENS_ATTRIBUTES``)
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# names a message's reasoning is passed under; transformers fills the first two from any of them
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class LightTokenizer:
    """A checkpoint folder's tokenizer on `tokenizers` and jinja2 only.

    Build it with :meth:`from_pretrained`. Thread-safe for encoding and decoding (`tokenizers` releases
    nothing shared) and for rendering (compiled templates are immutable).
    """

    def __init__(self, backend, *, config: Mapping[str, Any] | None = None,
                 chat_template: str | Mapping[str, str] | None = None, name: str = "tokenizer"):
        """
        Args:
            backend: a ``tokenizers.Tokenizer``.
            config: the contents of ``tokenizer_config.json`` (special tokens, ``clean_up_tokenization_spaces``).
            chat_template: one template, or ``{name: template}`` with a ``default`` (as transformers keeps them).
            name: what error messages call the tokenizer (its folder).
        """
        self._backend = backend
        self._name = name
        config = dict(config or {})
        self.chat_template = chat_template
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self._special: dict[str, str] = {}
        for key in SPECIAL_TOKEN_NAMES:
            token = _token_content(config.get(key))
            if token is not None:
                self._special[key] = token
        for key in ("model_specific_special_tokens", "extra_special_tokens"):
            named = config.get(key)
            if isinstance(named, Mapping):  # model-specific named tokens (Qwen3-ASR's audio_token, ...)
                self._special.update({k: t for k, v in named.items() if (t := _token_content(v)) is not None})
        _complete_backend(backend, config, self._special)
        self._added = {token.content: int(index) for index, token in backend.get_added_tokens_decoder().items()}
        self._added_special = {token.content for token in backend.get_added_tokens_decoder().values() if token.special}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "LightTokenizer":
        """Load the tokenizer of a checkpoint folder (written by transformers' ``save_pretrained``).

        Raises:
            CheckpointError: no ``tokenizer.json`` (e.g. a folder with only ``vocab.json`` + ``merges.txt``;
                ``save_pretrained`` with transformers writes one), or an unreadable file (named).
        """
        from tokenizers import Tokenizer

        path = os.fspath(path)
        file = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(file):
            raise CheckpointError(f"{path}: no tokenizer.json (the light runtime reads tokenizers' file; "
                                  "`funasr-nano export gguf` writes one)")
        try:
            backend = Tokenizer.from_file(file)
        except Exception as error:
            raise CheckpointError(f"{file}: not a tokenizers file: {error}") from error
        config = _read_json(os.path.join(path, "tokenizer_config.json")) or {}
        return cls(backend, config=config, chat_template=_find_chat_template(path, config), name=path)

    # ------------------------------------------------------------------------------------------------
    # special tokens

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """``{"eos_token": "<|im_end|>", ...}``: the special tokens the config names."""
        return dict(self._special)

    @property
    def all_special_tokens(self) -> list[str]:
        """The named special tokens and every added token marked special."""
        return list(dict.fromkeys([*self._special.values(), *sorted(self._added_special, key=self._added.get)]))

    def _special_id(self, key: str) -> int | None:
        token = self._special.get(key)
        return None if token is None else self._backend.token_to_id(token)

    bos_token = property(lambda self: self._special.get("bos_token"))
    eos_token = property(lambda self: self._special.get("eos_token"))
    unk_token = property(lambda self: self._special.get("unk_token"))
    pad_token = property(lambda self: self._special.get("pad_token"))
    bos_token_id = property(lambda self: self._special_id("bos_token"))
    eos_token_id = property(lambda self: self._special_id("eos_token"))
    unk_token_id = property(lambda self: self._special_id("unk_token"))
    pad_token_id = property(lambda self: self._special_id("pad_token"))

    # ------------------------------------------------------------------------------------------------
    # vocabulary

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def get_added_vocab(self) -> dict[str, int]:
        """``{token: id}`` of the added tokens (special or not)."""
        return dict(self._added)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """Ids of tokens; an unknown token gives ``unk_token_id`` (``None`` without one), as transformers."""
        if isinstance(tokens, str):
            found = self._backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | None | list[str | None]:
        if isinstance(ids, int):
            return self._backend.id_to_token(ids)
        return [self._backend.id_to_token(int(i)) for i in ids]

    # ------------------------------------------------------------------------------------------------
    # text <-> ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens`` applies the tokenizer's post-processor (e.g. BOS)."""
        return list(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of token ids (``skip_special_tokens`` drops the added tokens marked special)."""
        text = self._backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        # transformers skips the clean-up for BPE models (it would eat spaces before punctuation)
        if self.clean_up_tokenization_spaces and type(self._backend.model).__name__ != "BPE":
            text = _clean_up_tokenization(text)
        return text

    # ------------------------------------------------------------------------------------------------
    # chat template

    def get_chat_template(self, chat_template: str | None = None) -> str:
        """The template to render: ``chat_template`` itself, or the name of one of the tokenizer's, or its
        (default) template.

        Raises:
            CheckpointError: the tokenizer has no chat template (or several and no ``default``).
        """
        templates = self.chat_template
        if isinstance(templates, Mapping):
            if chat_template is not None:
                return templates.get(chat_template, chat_template)
            if "default" not in templates:
                raise CheckpointError(f"{self._name}: several chat templates ({', '.join(sorted(templates))}) "
                                      "and no default")
            return templates["default"]
        if chat_template is not None:
            return chat_template
        if not templates:
            raise CheckpointError(f"{self._name}: the tokenizer has no chat template")
        return templates

    def apply_chat_template(self, conversation: Sequence[Mapping[str, Any]], chat_template: str | None = None, *,
                            tokenize: bool = True, add_generation_prompt: bool = False,
                            continue_final_message: bool = False, **kwargs) -> str | list[int]:
        """Render a conversation with the chat template, as transformers' ``apply_chat_template`` does.

        Args:
            conversation: messages (``{"role": ..., "content": ...}``; content a string or a list of parts).
            chat_template: a template (or a template name) instead of the tokenizer's.
            tokenize: return token ids (``encode(text, add_special_tokens=False)``) rather than the text.
            add_generation_prompt: end with the assistant's generation header.
            continue_final_message: leave the last message open (no end-of-turn after it).
            **kwargs: template variables (``enable_thinking=False`` for Qwen3); they override the special
                tokens of the same name.

        Raises:
            ValueError: an empty conversation, or ``continue_final_message`` with ``add_generation_prompt``.
            jinja2.TemplateError: the template raised (``raise_exception``) or is malformed.
        """
        if not conversation:
            raise ValueError("cannot apply a chat template to an empty conversation")
        if continue_final_message and add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt exclude each other")
        template = compile_chat_template(self.get_chat_template(chat_template))
        messages = _template_messages(conversation)
        tag = "CONTINUE_FINAL_MESSAGE_TAG "
        final = None
        if continue_final_message:
            final = messages[-1].get("content")
            if not isinstance(final, str):
                raise ValueError("continue_final_message needs a final message with text content")
            messages[-1]["content"] = final + tag
        variables = {**self._special, **kwargs}
        text = template.render(messages=messages, tools=variables.pop("tools", None),
                               documents=variables.pop("documents", None),
                               add_generation_prompt=add_generation_prompt, **variables)
        if final is not None:
            at = text.rindex(tag.strip())
            text = text[:at] if text[at:at + len(tag)] == tag else text[:at].rstrip()
        return self.encode(text, add_special_tokens=False) if tokenize else text


def compile_chat_template(template: str):
    """A jinja2 ``Template`` of a chat template, in the environment transformers renders templates in.

    Cached by the template's text. Raises ``jinja2.TemplateSyntaxError`` for a malformed template.
    """
    return _compile(template)


def _environment():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` (transformers' assistant-mask marker): its body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.now().strftime(format)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment


_ENVIRONMENT = None
_COMPILED: dict[str, Any] = {}


def _compile(template: str):
    global _ENVIRONMENT
    compiled = _COMPILED.get(template)
    if compiled is None:
        if _ENVIRONMENT is None:
            _ENVIRONMENT = _environment()
        compiled = _COMPILED[template] = _ENVIRONMENT.from_string(template)
    return compiled


def _template_messages(conversation: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Plain dict copies of the messages, keys with ``None`` dropped, reasoning under its standard names."""
    messages = []
    for message in conversation:
        if not isinstance(message, Mapping):
            raise TypeError(f"chat messages must be mappings, not {type(message).__name__}")
        plain = {key: _plain(value) for key, value in message.items() if value is not None}
        reasoning = next((plain[key] for key in _REASONING_FIELDS if plain.get(key) is not None), None)
        if reasoning is not None:
            plain = {"thinking": reasoning, **plain, "reasoning_content": reasoning}
        messages.append(plain)
    return messages


def _plain(value):
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _token_content(value) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or an ``AddedToken`` dict."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(file: str) -> dict | None:
    if not os.path.isfile(file):
        return None
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{file}: unreadable JSON: {error}") from error


def _find_chat_template(path: str, config: Mapping[str, Any]) -> str | dict[str, str] | None:
    """The chat template(s) of a folder, where transformers 5 looks for them: ``chat_template.jinja`` and
    ``additional_chat_templates/*.jinja``, else the ``chat_template`` entry of ``tokenizer_config.json``
    (a string or a list of ``{name, template}``), else ``chat_template.json`` (a processor's)."""
    templates: dict[str, str] = {}
    jinja = os.path.join(path, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            templates["default"] = f.read()
    extra = os.path.join(path, "additional_chat_templates")
    if os.path.isdir(extra):
        for name in sorted(os.listdir(extra)):
            if name.endswith(".jinja"):
                with open(os.path.join(extra, name), encoding="utf-8") as f:
                    templates[name[: -len(".jinja")]] = f.read()
    if not templates:
        entry = config.get("chat_template")
        if entry is None:
            entry = (_read_json(os.path.join(path, "chat_template.json")) or {}).get("chat_template")
        if isinstance(entry, str):
            templates["default"] = entry
        elif isinstance(entry, list):
            templates.update({item["name"]: item["template"] for item in entry})
    if not templates:
        return None
    return templates["default"] if list(templates) == ["default"] else templates


def _complete_backend(backend, config: Mapping[str, Any], special: Mapping[str, str]) -> None:
    """What transformers' fast tokenizer does to ``tokenizer.json`` when it loads it with its config
    (``TokenizersBackend.__init__``): the config's added tokens and named/extra special tokens that the
    file lacks are added (named ones as special). Special tokens around encoded text come from the file's
    post-processor alone: transformers 5.25 does not read ``add_bos_token`` / ``add_eos_token`` from the
    config (tested for the Qwen2, Gemma, Llama and generic tokenizer classes)."""
    from tokenizers import AddedToken

    have = {token.content for token in backend.get_added_tokens_decoder().values()}
    missing = []
    decoder = config.get("added_tokens_decoder") or {}
    for _, entry in sorted(decoder.items(), key=lambda item: int(item[0])):
        if isinstance(entry, Mapping) and entry.get("content") not in have:
            options = {k: bool(entry[k]) for k in ("single_word", "lstrip", "rstrip", "normalized", "special")
                       if k in entry}
            missing.append(AddedToken(entry["content"], **options))
    named = set(special.values())
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    if isinstance(extra, Mapping):
        extra = list(extra.values())
    for token in [*special.values(), *(_token_content(t) for t in extra)]:
        if token and token not in have and all(t.content != token for t in missing):
            missing.append(AddedToken(token, special=True))
    for token in missing:
        if token.content in named and not token.special:
            token.special = True
    if missing:
        backend.add_tokens(missing)


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: no space before punctuation and English contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


__all__ = ["LightTokenizer", "compile_chat_template", "SPECIAL_TOKEN_NAMES"]
