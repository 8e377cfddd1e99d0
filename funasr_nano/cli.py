"""Command line: ``funasr-nano transcribe FILE... --model DIR`` and ``funasr-nano tiny DIR``.

A file that fails (unreadable, too short) is reported on stderr and the others are still transcribed;
the exit status is 1 if any file failed, 2 for bad arguments or an unusable model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Sequence

from .errors import FunASRNanoError

logger = logging.getLogger("funasr_nano")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="checkpoint folder (official or transformers layout)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="LLM dtype (default: fp32)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funasr-nano", description="Fun-ASR-Nano speech recognition")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    transcribe = commands.add_parser("transcribe", help="transcribe audio files")
    transcribe.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, mp3, ogg, m4a, webm, ...)")
    _add_model_arguments(transcribe)
    transcribe.add_argument("--language", help="language hint: zh, en, ja (or their names)")
    transcribe.add_argument("--hotwords", nargs="+", action="extend", metavar="W", help="words to bias recognition")
    transcribe.add_argument("--no-itn", dest="itn", action="store_false", help="no inverse text normalization")
    transcribe.add_argument("--format", default="txt", choices=["txt", "json"], help="output format (default: txt)")
    transcribe.add_argument("--max-new-tokens", type=int, default=512, help="cap on generated tokens (default: 512)")
    transcribe.add_argument("--beam-size", type=int, default=1, help="beam search width (default: 1 = greedy)")

    tiny = commands.add_parser("tiny", help="write a tiny random checkpoint (for trying the tools without weights)")
    tiny.add_argument("path", metavar="DIR")
    tiny.add_argument("--layout", default="official", choices=["official", "hf"])
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def _transcribe(args: argparse.Namespace) -> int:
    from .decoding import DecodingOptions
    from .model import load_model

    options = DecodingOptions(max_new_tokens=args.max_new_tokens, num_beams=args.beam_size)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    failures = 0
    for path in args.files:
        try:
            result = model.transcribe(path, language=args.language, hotwords=args.hotwords, itn=args.itn,
                                      options=options)
        except FunASRNanoError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        if args.format == "json":
            print(json.dumps({"file": path, **dataclasses.asdict(result)}, ensure_ascii=False), flush=True)
        elif len(args.files) == 1:
            print(result.text, flush=True)
        else:
            print(f"{path}\t{result.text}", flush=True)
    if failures:
        print(f"{failures} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failures else 0


def _tiny(args: argparse.Namespace) -> int:
    from .tiny import write_tiny_checkpoint

    write_tiny_checkpoint(args.path, layout=args.layout, seed=args.seed)
    print(f"wrote a tiny random {args.layout}-layout checkpoint to {args.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return {"transcribe": _transcribe, "tiny": _tiny}[args.command](args)
    except FunASRNanoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
