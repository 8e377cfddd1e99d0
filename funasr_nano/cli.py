"""Command line: ``funasr-nano transcribe FILE... --model DIR`` and ``funasr-nano tiny DIR``; training:
``funasr-nano data check MANIFEST``, ``funasr-nano data synth TEXT DIR``, ``funasr-nano train --config
CONFIG.yaml`` and ``funasr-nano lora merge BASE ADAPTER OUTPUT``.

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
    parser.add_argument("--model", metavar="DIR", help="checkpoint folder (official or transformers layout; default: the embedded demo model, "
                             "which knows only synthetic espeak-ng Mandarin)")
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
    _add_training_commands(commands)
    return parser


def _add_training_commands(commands) -> None:
    from .synth import SynthConfig

    synth_defaults = SynthConfig()
    data = commands.add_parser("data", help="check and make training data").add_subparsers(dest="data_command",
                                                                                            required=True)
    check = data.add_parser("check", help="validate a manifest (audio readable, durations, token lengths)")
    check.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest (official or simple format)")
    check.add_argument("--model", metavar="DIR", help="checkpoint whose tokenizer counts tokens (optional)")
    check.add_argument("--max-duration", type=float, default=30.0, help="longest allowed audio, s (default: 30)")
    check.add_argument("--max-tokens", type=int, default=1500, help="longest allowed example (default: 1500)")
    synth = data.add_parser("synth", help="text -> 16 kHz speech with espeak-ng, and a manifest")
    synth.add_argument("input", metavar="TEXT", help="sentences, one a line, or english<TAB>chinese pairs (Tatoeba)")
    synth.add_argument("output", metavar="DIR", help="output folder (wav/ and manifest.jsonl)")
    synth.add_argument("--manifest", metavar="PATH", help="manifest path (default: DIR/manifest.jsonl)")
    synth.add_argument("--limit", type=int, help="use at most N sentences")
    synth.add_argument("--offset", type=int, default=0, help="skip the first N sentences")
    synth.add_argument("--voice", default=synth_defaults.voice, help=f"espeak-ng voice (default: {synth_defaults.voice})")
    synth.add_argument("--speed", type=int, nargs=2, default=synth_defaults.speed, metavar=("LOW", "HIGH"),
                       help=f"words-per-minute range (default: {synth_defaults.speed})")
    synth.add_argument("--pitch", type=int, nargs=2, default=synth_defaults.pitch, metavar=("LOW", "HIGH"),
                       help=f"pitch range 0-99 (default: {synth_defaults.pitch})")
    synth.add_argument("--noise", type=float, default=synth_defaults.noise, help="white-noise level via sox (0 = none)")
    synth.add_argument("--seed", type=int, default=synth_defaults.seed)
    synth.add_argument("--jobs", type=int, help="parallel processes (default: all cores)")

    train = commands.add_parser("train", help="train the adaptor / encoder / LLM / LoRA from a YAML config")
    train.add_argument("--config", required=True, metavar="CONFIG.yaml", help="training config (docs/fine-tuning.md)")
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue from CHECKPOINT, or from the newest in OUTPUT/checkpoints")

    lora = commands.add_parser("lora", help="LoRA adapters").add_subparsers(dest="lora_command", required=True)
    merge = lora.add_parser("merge", help="merge an adapter into its base: a standalone checkpoint")
    merge.add_argument("base", metavar="BASE", help="base checkpoint folder")
    merge.add_argument("adapter", metavar="ADAPTER", help="LoRA adapter folder")
    merge.add_argument("output", metavar="OUTPUT", help="folder for the merged checkpoint")
    merge.add_argument("--layout", choices=["official", "hf"], help="output layout (default: the base's)")


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


def _data(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        from .data import check_manifest

        tokenizer, low_frame_rate = None, True
        if args.model:
            from .checkpoint import load_checkpoint

            loaded = load_checkpoint(args.model)
            tokenizer, low_frame_rate = loaded.tokenizer, loaded.use_low_frame_rate
        report = check_manifest(args.manifest, tokenizer, use_low_frame_rate=low_frame_rate,
                                max_duration=args.max_duration, max_tokens=args.max_tokens)
        print(report.summary())
        return 0 if report.ok else 1
    from .synth import SynthConfig, read_sentences, synthesize

    config = SynthConfig(voice=args.voice, speed=tuple(args.speed), pitch=tuple(args.pitch), noise=args.noise,
                         seed=args.seed)
    sentences = read_sentences(args.input, limit=args.limit, offset=args.offset)
    result = synthesize(sentences, args.output, config, manifest=args.manifest, jobs=args.jobs,
                        start_index=args.offset)
    print(f"{result.manifest}: {len(sentences)} utterances ({result.made} made, {result.skipped} already there)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import train

    result = train(args.config, resume=args.resume)
    if result.model_dir:
        print(f"model: {result.model_dir}")
    if result.lora_dir:
        print(f"LoRA adapter: {result.lora_dir} (load_model(model, lora=adapter); merge: funasr-nano lora merge)")
    if result.steps:
        print(f"final loss {result.steps[-1].loss:.4f} after {result.steps[-1].step} steps")
    return 0


def _lora(args: argparse.Namespace) -> int:
    from .lora import merge_checkpoint

    merge_checkpoint(args.base, args.adapter, args.output, layout=args.layout)
    print(f"wrote merged checkpoint {args.output}")
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
        commands = {"transcribe": _transcribe, "tiny": _tiny, "data": _data, "train": _train, "lora": _lora}
        return commands[args.command](args)
    except FunASRNanoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
