"""Command-line flags derived from the option dataclasses (:mod:`funasr_nano.options`,
:class:`~funasr_nano.audio.vad.VadOptions`), and the dataclasses built back from the parsed flags.

Every field of an option dataclass becomes one flag, with nothing repeated here:

* the name is the field's, ``_`` -> ``-`` (``max_new_tokens`` -> ``--max-new-tokens``); :data:`ALIASES`
  adds historical names beside it (``--num-beams`` also answers to ``--beam-size``);
* the type comes from the annotation: ``int``/``float``/``str`` (or ``X | None``) take one value,
  ``tuple[str, ...]`` with a plural name takes a comma-separated list (``--hotwords A,B``) plus a
  repeatable singular flag (``--hotword A --hotword B``), with a singular name one value a flag, repeatable
  (``--api-key K1 --api-key K2``: a key may hold commas) -- never several words, which would swallow the
  input files that follow; ``bool`` is a switch that flips the default (``itn=True`` -> ``--no-itn``),
  ``bool | None`` is a ``--vad``/``--no-vad`` pair, and a nested dataclass (``decoding``,
  ``vad_options``) contributes its own fields as a flag group;
* the default is the dataclass's: a flag that is not given is not passed, so the dataclass fills it
  in (``--help`` shows it, read from the dataclass);
* the help text is the field's entry in the class docstring's ``Attributes:`` section.

:func:`options_from_args` builds the dataclass (and its nested ones) back from the parsed flags; the
dataclass validates the values (:class:`~funasr_nano.errors.InvalidOptionError` names the bad one).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import types
import typing
from typing import Any, Mapping

from ..errors import InvalidOptionError, UnsupportedLanguageError
from ..option_docs import CHOICES, field_docs

logger = logging.getLogger("funasr_nano.cli")

# Historical flag names kept beside the field's own: "<Class>.<field>" -> aliases (without the dashes).
ALIASES: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "DecodingOptions.num_beams": ("beam-size",),
    "VadOptions.max_segment_duration": ("max-segment",),
    "TranslationOptions.stream_by_sentence": ("by-segment",),  # --no-stream-by-sentence
})
# Defaults that the dataclass cannot state: "<Class>.<field>" -> what --help says instead.
DEFAULT_HELP: Mapping[str, str] = types.MappingProxyType({
    "TranslationOptions.mode": "cascade when --translator is given; else unified when the model was trained for "
                               "speech translation, cascade with its own LLM when it was trained for text "
                               "translation",
})
# Help of switches whose docstring entry describes the field, not the flag that flips it.
HELP: Mapping[str, str] = types.MappingProxyType({
    "TranscribeOptions.itn": "no inverse text normalization (spoken-form text)",
    "TranslationOptions.stream_by_sentence": "translate whole VAD segments instead of sentence by sentence",
    "TranscribeOptions.vad": "always cut audio at pauses (default: only audio longer than --max-duration)",
    "TranscribeOptions.vad:off": "never cut at pauses; longer audio is an error",
    "DecodingOptions.repetition_guard": "do not stop output that loops (FunASR's behaviour)",
    "TranscribeOptions.silence_gate": "drop segments with no speech (no_speech_prob above --no-speech-threshold) "
                                      "also when audio is decoded whole (default: VAD segments of checkpoints "
                                      "with a CTC head)",
    "TranscribeOptions.silence_gate:off": "never drop segments with no speech",
})
# Placeholders of flags that take a path: "<Class>.<field>" -> metavar.
METAVARS: Mapping[str, str] = types.MappingProxyType({
    "AdapterOptions.lora": "[TASK=]PATH",
    "AdapterOptions.translator": "PATH",
    "ServerOptions.translator": "PATH",
})
# Titles of the flag groups of nested dataclasses in --help.
GROUP_TITLES: Mapping[str, str] = types.MappingProxyType({
    "DecodingOptions": "decoding (how the LLM generates)",
    "VadOptions": "voice activity detection (how long audio is cut at pauses; durations in seconds)",
})


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


def _scalar_type(hint: Any) -> type | None:
    """``int``/``float``/``str`` for ``X`` or ``X | None``; ``None`` for any other annotation."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)] if typing.get_args(hint) else [hint]
    if len(args) == 1 and args[0] in (int, float, str):
        return args[0]
    return None


def _help(text: str, default: Any, show_default: bool) -> str:
    text = text.replace("%", "%%")  # argparse formats help with %
    if show_default and default not in (None, ()):
        text += f" (default: {default:g})" if isinstance(default, float) else f" (default: {default})"
    return text


def add_option_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                     exclude: tuple[str, ...] = (), defaults: Any = None) -> None:
    """Add one flag per field of the option dataclass ``cls`` (nested dataclasses recursively, in a
    group each; fields named in ``exclude`` left out) to ``parser``. The flag's destination is the field's dotted path
    (``decoding.max_new_tokens``); its default is :data:`argparse.SUPPRESS`, so the dataclass's own
    default applies when the flag is absent. ``defaults``: the instance whose values ``--help`` shows
    (default: the field defaults of ``cls``; a nested dataclass shows its outer field's default,
    ``TranslationOptions().decoding``).

    Raises:
        TypeError: a field whose annotation has no command-line form (a programming error: extend this
            function or the tables above).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        hint, key = hints[field.name], f"{cls.__name__}.{field.name}"
        default = getattr(defaults, field.name) if defaults is not None else _default(field)
        dest = prefix + field.name
        if dataclasses.is_dataclass(hint):
            title = GROUP_TITLES.get(hint.__name__, hint.__name__)
            add_option_flags(parser.add_argument_group(title), hint, dest + ".", defaults=default)
            continue
        name = _flag_name(field, hint, key)
        aliases = [f"--{alias}" for alias in ALIASES.get(key, ())]
        text = HELP.get(key, docs.get(field.name, ""))
        if not text:
            raise TypeError(f"{key}: no help text (document the field in {cls.__name__}'s Attributes: section)")
        common = {"dest": dest, "default": argparse.SUPPRESS}
        if hint is bool:
            parser.add_argument(f"--{name}", *aliases, action="store_false" if default else "store_true",
                                help=_help(text, default, False), **common)
        elif hint == typing.Optional[bool]:
            pair = parser.add_mutually_exclusive_group()
            pair.add_argument(f"--{name}", *aliases, action="store_const", const=True,
                              help=_help(text, default, False), **common)
            pair.add_argument(f"--no-{name}", action="store_const", const=False,
                              help=HELP.get(f"{key}:off", f"turn --{name} off"), **common)
        elif hint == tuple[str, ...] and not name.endswith("s"):  # a singular name: --api-key K, repeatable
            parser.add_argument(f"--{name}", *aliases, type=lambda value: [value], action="extend",
                                metavar=METAVARS.get(key, "S"),
                                help=_help(text, default, True), **common)
        elif hint == tuple[str, ...]:  # a plural name: --hotwords A,B and a repeatable --hotword W
            parser.add_argument(f"--{name}", *aliases, type=_comma_list, action="extend", metavar="A,B",
                                help=_help(text + " (a comma-separated list)", default, True), **common)
            parser.add_argument(f"--{name[:-1]}", type=lambda value: [value], action="extend", metavar="W",
                                help=f"one entry of --{name} (repeatable; may contain commas)", **common)
        elif _scalar_type(hint) is not None:
            scalar = _scalar_type(hint)
            metavar = METAVARS.get(key, {int: "N", float: "X", str: "S"}[scalar]) if key not in CHOICES else None
            shown = f"{text} (default: {DEFAULT_HELP[key]})".replace("%", "%%") if key in DEFAULT_HELP else None
            parser.add_argument(f"--{name}", *aliases, type=scalar, choices=CHOICES.get(key), metavar=metavar,
                                help=shown or _help(text, default, True), **common)
        else:
            raise TypeError(f"{key}: no command-line form for a field of type {hint}")


def _comma_list(value: str) -> list[str]:
    """``"滨海新区, 达摩院"`` -> ``["滨海新区", "达摩院"]`` (empty entries dropped: ``"a,,b"`` is two)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _flag_name(field: dataclasses.Field, hint: Any, key: str) -> str:
    """The flag of a field (without the dashes): its name, ``no-`` in front for a switch that is on by
    default."""
    name = field.name.replace("_", "-")
    return f"no-{name}" if hint is bool and _default(field) else name


def flag_names(cls: type) -> dict[str, str]:
    """``{field name: --flag}`` for ``cls`` and its nested dataclasses (as :func:`add_option_flags`)."""
    hints = typing.get_type_hints(cls)
    names: dict[str, str] = {}
    for field in dataclasses.fields(cls):
        hint, key = hints[field.name], f"{cls.__name__}.{field.name}"
        if dataclasses.is_dataclass(hint):
            names.update(flag_names(hint))
            continue
        names[field.name] = f"--{_flag_name(field, hint, key)}"
    return names


def naming_flags(error: Exception, cls: type) -> Exception:
    """``error`` (an :class:`InvalidOptionError` or :class:`UnsupportedLanguageError` about the fields
    of ``cls``) with the flags its message names put in front: ``--max-duration: max_duration must be
    ...``; any other error unchanged."""
    if type(error) not in (InvalidOptionError, UnsupportedLanguageError):
        return error
    message = str(error)
    # in the order the message names them; "vad=True" is advice, not the culprit
    found = ((re.search(rf"\b{field}\b(?!=)", message), flag) for field, flag in flag_names(cls).items())
    flags = [flag for _, flag in sorted((match.start(), flag) for match, flag in found if match)]
    if not flags:
        return error
    renamed = type(error)(f"{', '.join(flags)}: {message}")
    renamed.__cause__, renamed.__traceback__ = error.__cause__, error.__traceback__
    return renamed


def options_from_args(cls: type, args: argparse.Namespace, prefix: str = "", base: Any = None) -> Any:
    """The option dataclass ``cls`` from flags added by :func:`add_option_flags`: given flags set
    their field, absent ones keep the dataclass's default (``base``'s value when given: a nested
    dataclass starts from its outer field's default, ``TranslationOptions().decoding``); lists become tuples.

    Raises:
        InvalidOptionError: a value the dataclass refuses (from its validation; the message starts
            with the flag, see :func:`naming_flags`).
    """
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        dest = prefix + field.name
        if dataclasses.is_dataclass(hints[field.name]):
            inner = getattr(base, field.name) if base is not None else _default(field)
            values[field.name] = options_from_args(hints[field.name], args, dest + ".", base=inner)
        elif hasattr(args, dest):
            value = getattr(args, dest)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except (InvalidOptionError, UnsupportedLanguageError) as error:
        raise naming_flags(error, cls) from None


# What a user who gave no --model reads (once, on stderr; -q hides it): the embedded model is no real model.
DEMO_NOTICE = ("no --model given: using the embedded demo model, trained here on synthetic espeak-ng Mandarin only "
               "(real recordings come out as nonsense); for real transcripts download Fun-ASR-Nano-2512 "
               "(https://huggingface.co/FunAudioLLM/Fun-ASR-Nano-2512) and pass --model DIR (-q hides this line)")


def notice_demo_model(args: argparse.Namespace) -> None:
    """Warn (stderr) that the embedded demo model is in use, unless ``--model`` or ``-q`` was given."""
    if args.model is None and not args.quiet:
        logger.warning("%s", DEMO_NOTICE)


FAMILY_DEST = "family_option."  # argparse destination prefix of the families' load flags


def add_family_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The load flags the registered families declare for ``command`` (``--aligner`` of Qwen3-ASR:
    :attr:`funasr_nano.models.family.FamilyOption.flag`), each once, with the declaring family named in its help."""
    from ..models import registry

    seen: set[str] = set()
    for family in registry.families():
        for option in family.options:
            if option.flag is None or command not in option.commands or option.name in seen:
                continue
            seen.add(option.name)
            parser.add_argument(option.flag, dest=FAMILY_DEST + option.name, metavar=option.metavar,
                                default=argparse.SUPPRESS, help=f"{option.help} ({family.title} only)")


def family_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``{name: value}`` of the family load flags given (:func:`add_family_flags`), for
    :func:`funasr_nano.load_model`'s keywords."""
    return {dest[len(FAMILY_DEST):]: value for dest, value in vars(args).items() if dest.startswith(FAMILY_DEST)}


def load_model_from_args(args: argparse.Namespace, lora=None):
    """The :class:`~funasr_nano.SpeechModel` that the flags of :func:`add_model_flags` name (after
    :func:`notice_demo_model`), with the family load flags given (:func:`add_family_flags`); ``lora`` as
    :func:`funasr_nano.load_model`'s.

    Raises:
        CheckpointError, InvalidOptionError: as :func:`funasr_nano.load_model`.
    """
    from ..load import load_model

    notice_demo_model(args)
    return load_model(args.model, device=args.device, dtype=args.dtype, engine=args.engine, n_threads=args.threads,
                      encoder_precision=args.encoder_precision, lora=lora, **family_options_from_args(args))


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--dtype``, ``--engine``, ``--threads``, ``--encoder-precision``
    (checked by :func:`funasr_nano.load_model`) and ``-q``."""
    from ..load import ENGINES

    parser.add_argument("--model", metavar="DIR",
                        help="checkpoint folder (official, transformers or GGUF layout; default: the embedded demo model, "
                             "which knows only synthetic espeak-ng Mandarin)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N, mps (default: cpu)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="LLM dtype (default: fp32)")
    parser.add_argument("--engine", choices=ENGINES,
                        help="what decodes the LLM (default: llama.cpp for a folder written by `funasr-nano export "
                             "gguf`, transformers otherwise)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of whatever computes: torch's (encoder; the LLM on the transformers "
                             "engine) and the llama.cpp or vLLM engine's (default: all cores)")
    parser.add_argument("--encoder-precision", default="fp32", choices=["fp32", "bf16", "int8"],
                        help="encoder and adaptor arithmetic: fp32 (as FunASR), bf16, int8 (faster; default: fp32)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars, and no notice that the embedded demo model is in use")
