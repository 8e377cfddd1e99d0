"""What a speech-LLM family declares once, so that loading, export and the CLI hold no family branches.

A family is a folder under ``models/`` (``fun_asr_nano/``, ``qwen3_asr/``) whose ``family.py`` builds one
:class:`Family`; :mod:`funasr_nano.models.registry` lists the registered ones and finds the family of a
folder. In the spirit of transformers' ``AutoConfig.register`` / ``AutoModel.register``: a family says how it
is recognised, how each of its layouts loads, which options and engines it takes, and how it exports.

Hooks that run code of a layer above ``models`` (``export``: GGUF/ONNX writers, the GGUF file checks) are
named by import strings, ``"package.module:function"``, which the consumer resolves on use
(:func:`resolve_hook`), as transformers' auto mappings name classes by string; ``tests/test_import_graph.py``
checks that each names an existing callable in a layer below its consumer.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from .base import FamilyModel

ENGINES = ("transformers", "llama.cpp", "vllm")  # every engine load_model knows


@dataclasses.dataclass(frozen=True)
class LoadRequest:
    """What :func:`funasr_nano.load.load_model` asks of a family's loading hook.

    Args:
        path: the checkpoint folder (recognised by the family).
        device: ``"cpu"`` on the light runtime; a ``torch.device`` on the torch path.
        dtype: the LLM's dtype: a name on the light runtime (``"fp32"``); a ``torch.dtype`` on the torch path.
        engine: the engine asked for (``None``: the default of the layout).
        engine_for: the engine that will decode an LLM stored as this GGUF file (``None``: an LLM in torch),
            i.e. ``engine`` resolved and checked against the layout and the family's engines; a hook calls it
            to refuse a wrong engine before reading weights, or to load LoRA adapters the engine's way.
            Raises :class:`funasr_nano.errors.InvalidOptionError`.
        n_threads: CPU threads (``None``: all cores).
        encoder_precision: the audio encoder's precision (``"fp32"``, ``"bf16"``, ``"int8"``); a family
            refuses the values it does not run.
        options: the family's own options that were given (names of :attr:`Family.options`, or
            :attr:`Family.checkpoint_options` for :func:`funasr_nano.load.from_checkpoint`), ``None`` left out.
    """

    path: str
    engine_for: Callable[[str | None], str]
    device: Any = "cpu"
    dtype: Any = "fp32"
    engine: str | None = None
    n_threads: int | None = None
    encoder_precision: str = "fp32"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FamilyParts:
    """What a family's loading hook hands back: the loaded model and what the engine needs.

    Args:
        model: the family's :class:`~funasr_nano.models.base.FamilyModel` (its ``llm``, ``tokenizer`` and
            ``stop_token_ids`` feed the engine).
        llm_gguf: the LLM's GGUF file (a GGUF-layout folder: the llama.cpp engine runs it), else ``None``.
        adapters: LoRA adapters, ``{name: GGUF LoRA file or peft folder}``; for the transformers engine
            already loaded into ``model.llm`` by the hook, for llama.cpp loaded by the engine (a peft folder
            converted with ``lora_config`` first).
        lora_config: the LLM's transformers config (``text_config``), for converting peft adapters to GGUF
            LoRA files; ``None`` for a family without LoRA.
    """

    model: "FamilyModel"
    llm_gguf: str | None = None
    adapters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    lora_config: Any = None


@dataclasses.dataclass(frozen=True)
class FamilyOption:
    """A :func:`funasr_nano.load.load_model` keyword a family takes beyond the common ones.

    Args:
        name: the keyword (``"lora"``).
        refusal: the message when it is given for a family that does not declare it; formatted with
            ``{family}`` (that family's title), ``{model}`` (the folder, or "the embedded demo model") and
            ``{value}``.
        check: checks the value (raises :class:`funasr_nano.errors.InvalidOptionError`) before anything is
            loaded; ``None``: any value.
        flag: its command-line flag (``"--aligner"``), which the CLI adds to ``commands`` (a string value,
            help suffixed "(<title> only)"); ``None``: a keyword of :func:`~funasr_nano.load.load_model` only.
        metavar, help: the flag's placeholder and text.
        commands: the ``funasr-nano`` commands that take the flag.
    """

    name: str
    refusal: str
    check: Callable[[Any], None] | None = None
    flag: str | None = None
    metavar: str | None = None
    help: str = ""
    commands: tuple[str, ...] = ("transcribe", "serve")


@dataclasses.dataclass(frozen=True)
class ExportOption:
    """A ``funasr-nano export gguf`` flag a family's GGUF export takes; the CLI adds it (help prefixed
    "<title> only") and refuses a non-default value for any other model.

    Args:
        flag: the command-line flag (``"--mrope-section"``).
        dest: the export hook's keyword (``"mrope_section"``).
        help: what it does.
        default: its value when not given.
        choices, type, nargs, metavar: as :meth:`argparse.ArgumentParser.add_argument`.
    """

    flag: str
    dest: str
    help: str
    default: Any = None
    choices: tuple | None = None
    type: Callable[[str], Any] | None = None
    nargs: int | str | None = None
    metavar: str | tuple[str, ...] | None = None

    def argparse_kwargs(self) -> dict:
        """The keywords of ``add_argument`` (those left ``None`` omitted)."""
        found = {"dest": self.dest, "default": self.default, "choices": self.choices, "type": self.type,
                 "nargs": self.nargs, "metavar": self.metavar}
        return {key: value for key, value in found.items() if value is not None or key == "default"}


@dataclasses.dataclass(frozen=True)
class Family:
    """One speech-LLM family: how it is recognised, loaded, run and exported.

    Args:
        name: the registry's name (``"fun-asr-nano"``).
        title: the name in messages (``"Fun-ASR-Nano"``).
        recognise: ``path -> bool``, cheap and torch-free (file names, ``config.json``'s ``model_type``:
            :mod:`funasr_nano.models.recognise`); the registry asks families in order.
        layouts: what ``recognise`` looks for, for the message naming the known families.
        load_torch: :class:`LoadRequest` -> :class:`FamilyParts` on the torch path (any layout it recognises).
        from_checkpoint: ``(loaded checkpoint, LoadRequest)`` -> :class:`FamilyParts`, for a checkpoint loaded
            by the family's own loader (:func:`funasr_nano.load.from_checkpoint`).
        load_light: :class:`LoadRequest` -> :class:`FamilyParts` on the light runtime (onnxruntime +
            llama.cpp, no torch), or ``None`` when the folder or the options need torch; called only on the
            CPU, at fp32, for the llama.cpp engine or the default one. ``None``: torch only.
        options: the :func:`~funasr_nano.load.load_model` keywords it takes beyond the common ones.
        checkpoint_options: the further keywords its ``from_checkpoint`` hook takes.
        engines: the engines that run it; another is refused with ``engine_refusal``.
        engine_refusal: why an engine outside ``engines`` cannot run it.
        check_llm_gguf: hook string, ``(gguf file, model) -> None``: checks the LLM's GGUF file against the
            loaded model before llama.cpp reads it (raises :class:`funasr_nano.errors.CheckpointError`).
        export_gguf: hook string, ``(model folder or None for the demo, out_dir, out_type, *, n_threads,
            **export_options) -> out_dir``: the GGUF-layout folder (``funasr-nano export gguf``).
        export_options: the flags ``export_gguf`` takes beyond ``--type``/``--threads``.
        export_hf: hook string, ``(model folder, out_dir, *, dtype) -> path``: the LLM alone as a transformers
            checkpoint (``funasr-nano export hf``); ``None``: not offered.
        lora_config: ``path -> transformers text config`` of a checkpoint folder, for ``funasr-nano export
            gguf-lora --model``; ``None``: the family takes no LoRA adapters.
        tiny: ``((name, hook string), ...)``: the random checkpoints ``funasr-nano tiny --family NAME`` writes,
            each ``(path, *, layout, seed, ctc) -> path`` (``ctc``: add a CTC branch, refused by a writer
            whose family has none); the first is the family's own, others (Qwen3-ForcedAligner) sit beside it.
    """

    name: str
    title: str
    recognise: Callable[[str], bool]
    layouts: str
    load_torch: Callable[[LoadRequest], FamilyParts]
    from_checkpoint: Callable[[Any, LoadRequest], FamilyParts]
    load_light: Callable[[LoadRequest], FamilyParts | None] | None = None
    options: tuple[FamilyOption, ...] = ()
    checkpoint_options: tuple[str, ...] = ()
    engines: tuple[str, ...] = ENGINES
    engine_refusal: str = ""
    check_llm_gguf: str | None = None
    export_gguf: str | None = None
    export_options: tuple[ExportOption, ...] = ()
    export_hf: str | None = None
    lora_config: Callable[[str], Any] | None = None
    tiny: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        unknown = set(self.engines) - set(ENGINES)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown engines {sorted(unknown)}; known: {ENGINES}")
        if set(self.engines) != set(ENGINES) and not self.engine_refusal:
            raise ValueError(f"family {self.name!r} leaves out engines: engine_refusal must say why")

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)

    def hooks(self) -> dict[str, str]:
        """The import-string hooks it declares: ``{field: "module:function"}`` (``tiny[NAME]`` for each
        :attr:`tiny` writer)."""
        found = {name: value for name in ("check_llm_gguf", "export_gguf", "export_hf")
                 if (value := getattr(self, name)) is not None}
        return found | {f"tiny[{name}]": value for name, value in self.tiny}


def resolve_hook(spec: str) -> Callable:
    """``"package.module:function"`` -> the function (the module imported now).

    Raises:
        ValueError: a string without ``:``; ImportError / AttributeError: no such module or function.
    """
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"hook {spec!r} is not 'package.module:function'")
    return getattr(importlib.import_module(module), name)
