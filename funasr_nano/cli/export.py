"""Export commands: ``export gguf MODEL OUT_DIR [--type q8_0]`` (a GGUF-layout model folder for the
llama.cpp engine: :func:`funasr_nano.export.gguf_folder.export_gguf` for Fun-ASR-Nano,
:func:`funasr_nano.export.thinker_gguf.export_gguf_folder` for Qwen3-ASR; for a plain transformers chat
LLM, its GGUF file for the cascade translator, :func:`funasr_nano.export.text_llm_gguf.export_text_llm_gguf`) and ``export hf MODEL OUT_DIR``
(Qwen3-ASR's LLM as a standalone transformers checkpoint, :func:`funasr_nano.export.thinker.export_thinker_hf`)
and ``export gguf-lora ADAPTER_DIR OUT_FILE --model MODEL`` (a peft LoRA adapter as a GGUF LoRA file,
:func:`funasr_nano.export.gguf_lora.write_lora_gguf`)."""

from __future__ import annotations

import argparse

from .output import printable, write_stdout

DEMO = "demo"  # MODEL naming the embedded demo model


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
    gguf.add_argument("--arch", choices=("qwen3vl", "qwen3"), default="qwen3vl",
                      help="Qwen3-ASR only: the LLM as llama.cpp qwen3vl (interleaved M-RoPE sections in the header, "
                           "the default) or plain qwen3 (ordinary RoPE, exact for speech prompts)")
    gguf.add_argument("--mrope-section", type=int, nargs=3, metavar=("T", "H", "W"),
                      help="Qwen3-ASR only: the LLM's M-RoPE sections when the checkpoint does not record them "
                           "(the -hf layout; Qwen3-ASR: 24 20 20)")
    lora = subcommands.add_parser(
        "gguf-lora", parents=parents,
        help="a peft LoRA adapter as a GGUF LoRA file, applied at run time by the llama.cpp engine (no merging)")
    lora.add_argument("adapter", metavar="ADAPTER_DIR", help="peft adapter folder (e.g. funasr-nano train's lora/)")
    lora.add_argument("output", metavar="OUT_FILE", help="the .gguf file to write")
    lora.add_argument("--model", required=True,
                      help=f"the base checkpoint the adapter was trained on (any layout, '{DEMO}' for the demo model)")
    lora.add_argument("--type", dest="out_type", default="f32", choices=("f32", "f16"),
                      help="the adapter's tensor type (default: f32)")
    hf = subcommands.add_parser(
        "hf", parents=parents,
        help="Qwen3-ASR: its LLM (the thinker) alone, as a transformers checkpoint AutoModelForCausalLM loads")
    hf.add_argument("model", metavar="MODEL", help="Qwen3-ASR checkpoint folder (official or transformers layout)")
    hf.add_argument("output", metavar="OUT_DIR", help="the folder to write")
    hf.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="weights' dtype (default: as stored)")


def _export(args: argparse.Namespace) -> int:
    from ..load import require_torch

    # exporting reads the torch model (and writes the ONNX encoder with torch.onnx.export)
    require_torch("funasr-nano export (pip install 'funasr-nano[export]')")
    from ..models.qwen3_asr.checkpoint import is_qwen3_asr_folder

    qwen3_asr = args.model != DEMO and is_qwen3_asr_folder(args.model)
    if args.export_command == "hf":
        return _export_hf(args, qwen3_asr)
    if args.export_command == "gguf-lora":
        return _export_gguf_lora(args)
    if not qwen3_asr and args.model != DEMO:
        from ..export.text_llm_gguf import causal_lm_model_type, export_text_llm_gguf

        if causal_lm_model_type(args.model) is not None:  # a plain chat LLM (a cascade translator)
            if args.arch != "qwen3vl" or args.mrope_section is not None:
                raise _invalid("--arch and --mrope-section apply to Qwen3-ASR checkpoints only")
            path = export_text_llm_gguf(args.model, args.output, args.out_type, n_threads=args.threads)
            write_stdout(f"wrote {printable(path)}; use it as a cascade translator: --translator {printable(path)}")
            return 0
        _check_speech_folder(args.model)
    if qwen3_asr:
        from ..export.thinker_gguf import export_gguf_folder

        path = export_gguf_folder(args.model, args.output, args.out_type, arch=args.arch,
                                  mrope_section=args.mrope_section, n_threads=args.threads)
    else:
        from ..errors import InvalidOptionError
        from ..export.gguf_folder import export_gguf

        if args.arch != "qwen3vl" or args.mrope_section is not None:
            raise InvalidOptionError("--arch and --mrope-section apply to Qwen3-ASR checkpoints only")
        path = export_gguf(None if args.model == DEMO else args.model, args.output, args.out_type,
                           n_threads=args.threads)
    write_stdout(f"wrote {printable(path)}; load the folder with load_model({printable(args.output)!r}) "
                 f"or --model {printable(args.output)}")
    return 0


def _export_hf(args: argparse.Namespace, qwen3_asr: bool) -> int:
    from ..errors import InvalidOptionError
    from ..export.thinker import export_thinker_hf
    from ..load import resolve_dtype

    if not qwen3_asr:
        raise InvalidOptionError(f"{args.model}: export hf writes the LLM of a Qwen3-ASR checkpoint; this is not one "
                                 "(a Fun-ASR-Nano checkpoint's LLM is a Qwen3 folder already)")
    path = export_thinker_hf(args.model, args.output, dtype=resolve_dtype(args.dtype) if args.dtype else None)
    write_stdout(f"wrote {printable(path)}; load it with AutoModelForCausalLM.from_pretrained({printable(path)!r})")
    return 0


def _export_gguf_lora(args: argparse.Namespace) -> int:
    from ..export.gguf_lora import write_lora_gguf
    from ..load import DEFAULT_MODEL
    from ..models.fun_asr_nano.checkpoint import load_checkpoint

    loaded = load_checkpoint(DEFAULT_MODEL if args.model == DEMO else args.model)
    path = write_lora_gguf(args.adapter, loaded.model.config.text_config, args.output, args.out_type)
    write_stdout(f"wrote {printable(path)}; load it beside the GGUF-layout model with "
                 f"load_model(MODEL_DIR, lora={{'translate': {printable(path)!r}}})")
    return 0


def _invalid(message: str):
    from ..errors import InvalidOptionError

    return InvalidOptionError(message)


def _check_speech_folder(path: str) -> None:
    """One line for a folder that is neither a speech model nor a transformers causal LLM."""
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
        if model_type != "fun_asr_nano":
            raise CheckpointError(f"{path}: a {model_type!r} model is neither a speech model (Fun-ASR-Nano, Qwen3-ASR) "
                                  "nor a transformers causal LLM (config.json with a *ForCausalLM architecture); "
                                  "export gguf takes one of those")
