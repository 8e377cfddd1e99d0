"""Export commands: ``export gguf MODEL OUT_DIR [--type q8_0]`` (a GGUF-layout model folder for the
llama.cpp engine, written by the ``export_gguf`` hook of the model's family in the registry
(:mod:`funasr_nano.models.registry`: :func:`funasr_nano.export.gguf_folder.export_gguf` for Fun-ASR-Nano,
:func:`funasr_nano.export.thinker_gguf.export_gguf_folder` for Qwen3-ASR), with the flags the families declare
(:class:`funasr_nano.models.family.ExportOption`); for a plain transformers chat LLM, which is no speech
family, its GGUF file for the cascade translator, :func:`funasr_nano.export.text_llm_gguf.export_text_llm_gguf`)
and ``export hf MODEL OUT_DIR`` (the LLM alone as a standalone transformers checkpoint, for the families that
declare ``export_hf``: Qwen3-ASR, :func:`funasr_nano.export.thinker.export_thinker_hf`) and ``export gguf-lora
ADAPTER_DIR OUT_FILE --model MODEL`` (a peft LoRA adapter as a GGUF LoRA file,
:func:`funasr_nano.export.gguf_lora.write_lora_gguf`)."""

from __future__ import annotations

import argparse

from ..models import registry
from .output import printable, write_stdout

DEMO = "demo"  # MODEL naming the embedded demo model


def _export_options() -> dict:
    """Every ``export gguf`` flag the registered families declare -> the families declaring it."""
    found: dict = {}
    for family in registry.families():
        for option in family.export_options:
            known = next((o for o in found if o.flag == option.flag), option)
            found.setdefault(known, []).append(family)
    return found


def add_parsers(commands, parents: list[argparse.ArgumentParser]) -> None:
    from ..export.gguf import OUT_TYPES

    export = commands.add_parser("export", help="export a model for other runtimes", parents=parents)
    export.set_defaults(run=_export)
    subcommands = export.add_subparsers(dest="export_command", required=True)
    gguf = subcommands.add_parser(
        "gguf", parents=parents,
        help="a model folder whose LLM is a GGUF file (llama.cpp engine) and whose encoder + adaptor are ONNX files (fp32, int8): the light runtime, no torch at inference")
    gguf.add_argument("model", metavar="MODEL",
                      help=f"checkpoint folder (official or transformers layout), or '{DEMO}' for the embedded demo model; "
                           "or a transformers chat LLM folder (Qwen3, Llama, Gemma 2: its GGUF, a cascade translator)")
    gguf.add_argument("output", metavar="OUT_DIR", help="the folder to write (load it with load_model(OUT_DIR))")
    gguf.add_argument("--type", dest="out_type", default="q8_0", choices=OUT_TYPES,
                      help="the LLM's GGUF type: f32/f16/bf16, or a llama.cpp quantization (default: q8_0)")
    gguf.add_argument("--threads", type=int, help="quantizer threads (default: all cores)")
    for option, owners in _export_options().items():
        titles = " / ".join(family.title for family in owners)
        gguf.add_argument(option.flag, help=f"{titles} only: {option.help}", **option.argparse_kwargs())
    lora = subcommands.add_parser(
        "gguf-lora", parents=parents,
        help="a peft LoRA adapter as a GGUF LoRA file, applied at run time by the llama.cpp engine (no merging)")
    lora.add_argument("adapter", metavar="ADAPTER_DIR", help="peft adapter folder (e.g. funasr-nano train's lora/)")
    lora.add_argument("output", metavar="OUT_FILE", help="the .gguf file to write")
    lora.add_argument("--model", required=True,
                      help=f"the base checkpoint the adapter was trained on (any layout, '{DEMO}' for the demo model)")
    lora.add_argument("--type", dest="out_type", default="f32", choices=("f32", "f16"),
                      help="the adapter's tensor type (default: f32)")
    hf_titles = " / ".join(family.title for family in registry.families() if family.export_hf) or "no model"
    hf = subcommands.add_parser(
        "hf", parents=parents,
        help=f"{hf_titles}: its LLM alone, as a transformers checkpoint AutoModelForCausalLM loads")
    hf.add_argument("model", metavar="MODEL", help=f"{hf_titles} checkpoint folder (official or transformers layout)")
    hf.add_argument("output", metavar="OUT_DIR", help="the folder to write")
    hf.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="weights' dtype (default: as stored)")


def _export(args: argparse.Namespace) -> int:
    from ..load import DEFAULT_MODEL, require_torch

    # exporting reads the torch model (and writes the ONNX encoder with torch.onnx.export)
    require_torch("funasr-nano export (pip install 'funasr-nano[export]')")
    if args.export_command == "gguf-lora":
        return _export_gguf_lora(args)
    model = None if args.model == DEMO else args.model
    family = registry.find_family(DEFAULT_MODEL if model is None else model)
    if args.export_command == "hf":
        return _export_hf(args, family)
    if family is None:
        from ..export.text_llm_gguf import causal_lm_model_type, export_text_llm_gguf

        if causal_lm_model_type(model) is not None:  # a plain chat LLM (a cascade translator), no speech family
            _refuse_export_options(args, None)
            path = export_text_llm_gguf(model, args.output, args.out_type, n_threads=args.threads)
            write_stdout(f"wrote {printable(path)}; use it as a cascade translator: --translator {printable(path)}")
            return 0
        _check_speech_folder(model)
        family = registry.family_for(model)  # raises: names the known families
    _refuse_export_options(args, family)
    if family.export_gguf is None:
        raise _invalid(f"{args.model}: a {family.title} model has no GGUF export (its family declares none)")
    from ..models.family import resolve_hook

    export = resolve_hook(family.export_gguf)
    options = {option.dest: getattr(args, option.dest) for option in family.export_options}
    path = export(model, args.output, args.out_type, n_threads=args.threads, **options)
    write_stdout(f"wrote {printable(path)}; load the folder with load_model({printable(args.output)!r}) "
                 f"or --model {printable(args.output)}")
    return 0


def _refuse_export_options(args: argparse.Namespace, family) -> None:
    """A flag of another family's export given a value other than its default.

    Raises:
        InvalidOptionError: naming the flags and the family they apply to.
    """
    declared = () if family is None else {option.flag for option in family.export_options}
    for option, owners in _export_options().items():
        if option.flag not in declared and getattr(args, option.dest) != option.default:
            flags = " and ".join(o.flag for o in owners[0].export_options)
            titles = " / ".join(owner.title for owner in owners)
            raise _invalid(f"{flags} {'apply' if ' and ' in flags else 'applies'} to {titles} checkpoints only")


def _export_hf(args: argparse.Namespace, family) -> int:
    from ..load import resolve_dtype
    from ..models.family import resolve_hook

    if family is None or family.export_hf is None:
        offered = " or ".join(f.title for f in registry.families() if f.export_hf) or "no"
        raise _invalid(f"{args.model}: export hf writes the LLM of a {offered} checkpoint; this is not one"
                       + (f" (the {family.title} family declares no export hf)" if family else ""))
    export = resolve_hook(family.export_hf)
    path = export(args.model, args.output, dtype=resolve_dtype(args.dtype) if args.dtype else None)
    write_stdout(f"wrote {printable(path)}; load it with AutoModelForCausalLM.from_pretrained({printable(path)!r})")
    return 0


def _export_gguf_lora(args: argparse.Namespace) -> int:
    from ..export.gguf_lora import write_lora_gguf
    from ..load import DEFAULT_MODEL

    model = DEFAULT_MODEL if args.model == DEMO else args.model
    family = registry.family_for(model)
    if family.lora_config is None:
        raise _invalid(f"{args.model}: LoRA adapters are not supported for {family.title}")
    path = write_lora_gguf(args.adapter, family.lora_config(model), args.output, args.out_type)
    write_stdout(f"wrote {printable(path)}; load it beside the GGUF-layout model with "
                 f"load_model(MODEL_DIR, lora={{'translate': {printable(path)!r}}})")
    return 0


def _invalid(message: str):
    from ..errors import InvalidOptionError

    return InvalidOptionError(message)


def _check_speech_folder(path: str) -> None:
    """One line for a folder with a ``config.json`` that no family recognises and that is no transformers
    causal LLM either."""
    import json
    import os

    from ..errors import CheckpointError

    config_path = os.path.join(path, "config.json")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.yaml")) and os.path.isfile(config_path):
        try:
            with open(config_path, encoding="utf-8") as f:
                model_type = json.load(f).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None
        speech = ", ".join(family.title for family in registry.families())
        raise CheckpointError(f"{path}: a {model_type!r} model is neither a speech model ({speech}) "
                              "nor a transformers causal LLM (config.json with a *ForCausalLM architecture); "
                              "export gguf takes one of those")
