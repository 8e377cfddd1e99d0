"""``funasr-nano transcribe-corpus SOURCE OUT [--ray] [--address A] [--num-workers N]``: a folder, list or
manifest of audio files -> ``OUT``, a JSONL file with one row per file (text, segments, tokens; or the
error), resumable (a rerun skips files already in ``OUT``). See :mod:`funasr_nano.corpus`.
"""

from __future__ import annotations

import argparse
import logging

from ..errors import InvalidOptionError, UnsupportedLanguageError
from ..options import TranscribeOptions
from .options import add_model_flags, add_option_flags, naming_flags, notice_demo_model, options_from_args
from .output import printable, write_stdout

logger = logging.getLogger("funasr_nano.cli")


def add_parser(commands, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "transcribe-corpus", help="transcribe a corpus (folder, list or manifest) to JSONL, resumably, on Ray",
        parents=parents,
        description="Transcribe every audio file of a folder (recursively), a JSONL manifest or a list file (one "
                    "path per line) into OUT, one JSON row per file; a rerun skips the files OUT already holds, a "
                    "file that fails gets an error row and the others go on. Long files are cut by the VAD.")
    parser.add_argument("source", metavar="MANIFEST_OR_DIR", help="folder of audio files, .jsonl manifest or list file")
    parser.add_argument("output", metavar="OUT", help="results file (JSONL), appended to")
    parser.add_argument("--ray", action="store_true",
                        help="decode on a Ray Data actor pool (one model per actor; needs the ray extra)")
    parser.add_argument("--address", metavar="ADDR",
                        help="with --ray: a Ray cluster to join (auto, host:6379, ray://host:10001; default: a new "
                             "local Ray instance, shut down at the end)")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N",
                        help="with --ray: actors, each with its own model (default: 1)")
    parser.add_argument("--retry-failed", action="store_true", help="transcribe again the files with an error row")
    parser.add_argument("--parquet", metavar="PATH", help="also write all rows of OUT as Parquet to PATH at the end")
    add_model_flags(parser)
    add_option_flags(parser, TranscribeOptions)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..corpus import list_inputs, transcribe_corpus
    from ..corpus.transcriber import ModelSpec

    options = options_from_args(TranscribeOptions, args)  # bad values fail here, before anything starts
    if args.num_workers < 1:
        raise InvalidOptionError(f"--num-workers must be >= 1, got {args.num_workers}")
    if args.threads is not None and args.threads < 1:
        raise InvalidOptionError(f"--threads must be >= 1, got {args.threads}")
    if args.address and not args.ray:
        raise InvalidOptionError("--address needs --ray")
    if args.ray:
        from ..corpus.ray_job import import_ray

        import_ray()  # a missing extra is a usage error before the inputs are listed
    items = list_inputs(args.source)
    notice_demo_model(args)
    spec = ModelSpec(path=args.model, device=args.device, dtype=args.dtype, engine=args.engine, threads=args.threads,
                     encoder_precision=args.encoder_precision)
    with tqdm(unit="file", disable=args.quiet, desc="files", dynamic_ncols=True) as bar:
        def progress(rows: list[dict]) -> None:
            for row in rows:
                if row["status"] != "ok":
                    logger.error("%s", printable(f"{row['audio']}: {row['error']}"))
            bar.update(len(rows))

        try:
            report = transcribe_corpus(items, args.output, model=spec, options=options, ray=args.ray,
                                       address=args.address, num_workers=args.num_workers,
                                       retry_failed=args.retry_failed, parquet=args.parquet, on_rows=progress)
        except (InvalidOptionError, UnsupportedLanguageError) as error:
            raise naming_flags(error, TranscribeOptions) from None
    rate = report.audio_seconds / report.elapsed if report.elapsed else 0.0
    write_stdout(f"{report.total} files: {report.transcribed} transcribed ({report.failed} failed), {report.skipped} "
                 f"already in {printable(report.output)}; {report.audio_seconds:.1f} s of audio in "
                 f"{report.elapsed:.1f} s ({rate:.2f} audio-s/s)")
    return 1 if report.failed else 0
