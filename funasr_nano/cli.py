"""Command line: ``funasr-nano transcribe FILE... --model DIR`` and ``funasr-nano tiny DIR``.

A file that fails (unreadable, too short) is reported on stderr and the others are still transcribed;
the exit status is 1 if any file failed, 2 for bad arguments or an unusable model.

Files up to ``--max-duration`` seconds are decoded whole, ``--batch-size`` of them together; longer
files are cut by VAD (``--vad``/``--no-vad`` force it on or off) and their segments batched. Results go
to stdout, or with ``--output-dir`` to ``DIR/<file stem>.<format>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Sequence

from .errors import FunASRNanoError
from .audio import MAX_DURATION
from .vad import VadOptions
from .writers import FORMATS, get_writer, write_result

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
    transcribe.add_argument("--format", default="txt", choices=[*FORMATS, "all"],
                            help="output format (default: txt; all: every format, needs --output-dir)")
    transcribe.add_argument("--output-dir", metavar="DIR",
                            help="write DIR/<file stem>.<format> per input instead of printing")
    transcribe.add_argument("--max-new-tokens", type=int, default=512, help="cap on generated tokens (default: 512)")
    transcribe.add_argument("--beam-size", type=int, default=1, help="beam search width (default: 1 = greedy)")
    transcribe.add_argument("--batch-size", type=int, default=1,
                            help="files (or VAD segments of a long file) decoded together (default: 1)")
    vad = transcribe.add_mutually_exclusive_group()
    vad.add_argument("--vad", dest="vad", action="store_true", default=None,
                     help="always cut audio at pauses (default: only audio longer than --max-duration)")
    vad.add_argument("--no-vad", dest="vad", action="store_false", help="never cut; longer audio is an error")
    transcribe.add_argument("--max-duration", type=float, default=MAX_DURATION,
                            help=f"seconds decoded in one piece (default: {MAX_DURATION:g})")
    transcribe.add_argument("--max-segment", type=float, default=VadOptions.max_segment_duration,
                            help=f"longest VAD segment in seconds (default: {VadOptions.max_segment_duration:g})")
    transcribe.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    tiny = commands.add_parser("tiny", help="write a tiny random checkpoint (for trying the tools without weights)")
    tiny.add_argument("path", metavar="DIR")
    tiny.add_argument("--layout", default="official", choices=["official", "hf"])
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def _emit(args: argparse.Namespace, path: str, result) -> None:
    """Print ``result`` or write it under ``--output-dir``."""
    if args.output_dir:
        for output_format in FORMATS if args.format == "all" else (args.format,):
            logger.info("wrote %s", write_result(result, path, args.output_dir, output_format))
    elif args.format == "json":
        print(json.dumps({"file": path, **dataclasses.asdict(result)}, ensure_ascii=False), flush=True)
    elif args.format == "txt":
        print(result.text if len(args.files) == 1 else f"{path}\t{result.text}", flush=True)
    else:
        get_writer(args.format)(result, sys.stdout)
        sys.stdout.flush()


def _transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .audio import probe_duration
    from .decoding import DecodingOptions
    from .model import load_model
    from .results import Transcription, join_texts

    if args.format == "all" and not args.output_dir:
        raise ValueError("--format all writes several files: give --output-dir")
    if args.format in ("srt", "vtt", "tsv") and len(args.files) > 1 and not args.output_dir:
        raise ValueError(f"--format {args.format} for several files: give --output-dir")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    options = DecodingOptions(max_new_tokens=args.max_new_tokens, num_beams=args.beam_size)
    vad_options = VadOptions(max_segment_duration=args.max_segment)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    common = dict(language=args.language, hotwords=args.hotwords, itn=args.itn, options=options,
                  vad_options=vad_options, max_duration=args.max_duration)
    failures = 0
    files_bar = tqdm(total=len(args.files), unit="file", disable=args.quiet or len(args.files) < 2,
                     desc="files", dynamic_ncols=True)

    def fail(path: str, error: Exception) -> None:
        nonlocal failures
        failures += 1
        tqdm.write(f"error: {error}", file=sys.stderr)
        files_bar.update()

    def run_group(group: list[str]) -> None:
        """Short files, decoded whole and batched; on an error, file by file to find the bad ones."""
        if not group:
            return
        try:
            results = model.transcribe_batch(group, batch_size=args.batch_size, vad=args.vad, **common)
        except FunASRNanoError as error:
            if len(group) == 1:
                return fail(group[0], error)
            logger.info("a batch failed (%s); retrying its files one by one", error)
            for path in group:
                run_group([path])
            return
        for path, result in zip(group, results):
            _emit(args, path, result)
            files_bar.update()

    def run_long(path: str, duration: float | None) -> None:
        """One file cut by VAD; a progress bar over its audio."""
        segments = []
        info: dict = {}
        with tqdm(total=round(duration or 0, 1) or None, unit="s", desc=path, disable=args.quiet, leave=False,
                  dynamic_ncols=True) as bar:
            for segment in model.transcribe_segments(path, batch_size=args.batch_size, vad=True, _info=info,
                                                     **common):
                segments.append(segment)
                bar.update(max(0.0, round(segment.end - bar.n, 1)))
        result = Transcription(text=join_texts(s.text for s in segments),
                               tokens=tuple(t for s in segments for t in s.tokens), language=args.language,
                               duration=info["duration"], segments=tuple(segments))
        _emit(args, path, result)
        files_bar.update()

    group: list[str] = []
    for path in args.files:
        try:
            duration = probe_duration(path)
        except FunASRNanoError as error:
            fail(path, error)
            continue
        long_file = args.vad is True or (args.vad is None and duration is not None and duration > args.max_duration)
        if not long_file:
            group.append(path)
            if len(group) >= args.batch_size:
                run_group(group)
                group = []
            continue
        run_group(group)
        group = []
        try:
            run_long(path, duration)
        except FunASRNanoError as error:
            fail(path, error)
    run_group(group)
    files_bar.close()
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
