"""Export commands: ``export gguf MODEL OUT_DIR [--type q8_0]`` (a GGUF-layout model folder for the
llama.cpp engine, :func:`funasr_nano.export.gguf_folder.export_gguf`)."""

from __future__ import annotations

import argparse

from .output import printable, write_stdout

DEMO = "demo"  # MODEL naming the embedded demo model


def add_parsers(commands, parents: list[argparse.ArgumentParser]) -> None:
    from ..export.gguf import OUT_TYPES

    export = commands.add_parser("export", help="export a model for other runtimes", parents=parents)
    export.set_defaults(run=_export)
    gguf = export.add_subparsers(dest="export_command", required=True).add_parser(
        "gguf", parents=parents,
        help="a model folder whose LLM is a GGUF file (llama.cpp engine; the encoder and adaptor stay in torch)")
    gguf.add_argument("model", metavar="MODEL",
                      help=f"checkpoint folder (official or transformers layout), or '{DEMO}' for the embedded demo model")
    gguf.add_argument("output", metavar="OUT_DIR", help="the folder to write (load it with load_model(OUT_DIR))")
    gguf.add_argument("--type", dest="out_type", default="q8_0", choices=OUT_TYPES,
                      help="the LLM's GGUF type: f32/f16/bf16, or a llama.cpp quantization (default: q8_0)")
    gguf.add_argument("--threads", type=int, help="quantizer threads (default: all cores)")


def _export(args: argparse.Namespace) -> int:
    from ..export.gguf_folder import export_gguf

    path = export_gguf(None if args.model == DEMO else args.model, args.output, args.out_type, n_threads=args.threads)
    write_stdout(f"wrote {printable(path)}; load the folder with load_model({printable(args.output)!r}) "
                 f"or --model {printable(args.output)}")
    return 0
