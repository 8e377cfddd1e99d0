"""Command line: ``funasr-nano transcribe FILE... --model DIR``, ``funasr-nano translate FILE...`` and
``funasr-nano tiny DIR``; training:
``funasr-nano data check MANIFEST``, ``funasr-nano data synth TEXT DIR``, ``funasr-nano train --config
CONFIG.yaml`` and ``funasr-nano lora merge BASE ADAPTER OUTPUT``.

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

from ..errors import FunASRNanoError
from ..options import MAX_DURATION
from ..audio.vad import VadOptions
from ..writers import FORMATS, get_writer, write_result

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

    translate = commands.add_parser("translate", help="translate Chinese speech into English text")
    translate.add_argument("files", nargs="+", metavar="FILE", help="audio files (any length: cut at pauses)")
    _add_model_arguments(translate)
    translate.add_argument("--mode", default="unified", choices=["unified", "cascade"],
                           help="unified: the speech LLM translates (one pass); cascade: transcribe, then "
                                "translate each sentence (default: unified)")
    translate.add_argument("--translator", metavar="DIR",
                           help="cascade: a chat LLM or Marian/NLLB folder (default: the speech model's own LLM)")
    translate.add_argument("--format", default="txt", choices=["txt", "json", "srt", "vtt", "tsv"],
                           help="output format (default: txt)")
    translate.add_argument("--output-dir", metavar="DIR", help="write DIR/<file stem>.<format> per input")
    translate.add_argument("--stream", action="store_true",
                           help="print each sentence as soon as it is translated (json: one event a line)")
    translate.add_argument("--by-segment", action="store_true",
                           help="translate whole VAD segments instead of sentence by sentence")
    translate.add_argument("--max-new-tokens", type=int, default=256, help="cap per sentence/segment (default: 256)")

    tiny = commands.add_parser("tiny", help="write a tiny random checkpoint (for trying the tools without weights)")
    tiny.add_argument("path", metavar="DIR")
    tiny.add_argument("--layout", default="official", choices=["official", "hf"])
    tiny.add_argument("--seed", type=int, default=0)
    _add_training_commands(commands)
    return parser


def _add_training_commands(commands) -> None:
    from ..training.synth import SynthConfig

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
    train.add_argument("--config", required=True, metavar="CONFIG.yaml", help="training config (README: Fine-tuning)")
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue from CHECKPOINT, or from the newest in OUTPUT/checkpoints")

    lora = commands.add_parser("lora", help="LoRA adapters").add_subparsers(dest="lora_command", required=True)
    merge = lora.add_parser("merge", help="merge an adapter into its base: a standalone checkpoint")
    merge.add_argument("base", metavar="BASE", help="base checkpoint folder")
    merge.add_argument("adapter", metavar="ADAPTER", help="LoRA adapter folder")
    merge.add_argument("output", metavar="OUTPUT", help="folder for the merged checkpoint")
    merge.add_argument("--layout", choices=["official", "hf"], help="output layout (default: the base's)")


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

    from ..load import load_model
    from ..options import DecodingOptions, TranscribeOptions
    from ..results import TranscriptionFailure

    if args.format == "all" and not args.output_dir:
        raise ValueError("--format all writes several files: give --output-dir")
    if args.format in ("srt", "vtt", "tsv") and len(args.files) > 1 and not args.output_dir:
        raise ValueError(f"--format {args.format} for several files: give --output-dir")
    options = TranscribeOptions(
        language=args.language, hotwords=tuple(args.hotwords or ()), itn=args.itn, vad=args.vad,
        vad_options=VadOptions(max_segment_duration=args.max_segment), batch_size=args.batch_size,
        max_duration=args.max_duration,
        decoding=DecodingOptions(max_new_tokens=args.max_new_tokens, num_beams=args.beam_size))
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    failures = 0
    with tqdm(total=len(args.files), unit="file", disable=args.quiet or len(args.files) < 2, desc="files",
              dynamic_ncols=True) as files_bar:
        for path, result in zip(args.files, model.transcribe_batch(args.files, options)):
            if isinstance(result, TranscriptionFailure):
                failures += 1
                tqdm.write(f"error: {result.error}", file=sys.stderr)
            else:
                _emit(args, path, result)
            files_bar.update()
    if failures:
        print(f"{failures} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failures else 0


def _translate(args: argparse.Namespace) -> int:
    from ..load import load_model
    from ..options import TranslationOptions
    from ..pipeline.translate import SentenceTranslated, TranslationFinished, resolve_translator, translate_stream
    from ..results import Segment, Transcription

    model = load_model(args.model, device=args.device, dtype=args.dtype)
    config = TranslationOptions(mode=args.mode, max_new_tokens=args.max_new_tokens,
                                stream_by_sentence=not args.by_segment)
    translator = resolve_translator(model, args.mode, args.translator)  # loaded once, before any file
    failures = 0
    for path in args.files:
        try:
            result = None
            for event in translate_stream(model, path, config, translator=translator):
                if isinstance(event, TranslationFinished):
                    result = event.translation
                elif args.stream and not args.output_dir:
                    if args.format == "json":
                        print(json.dumps({"file": path, "event": type(event).__name__,
                                          **dataclasses.asdict(event)}, ensure_ascii=False), flush=True)
                    elif isinstance(event, SentenceTranslated):
                        print(event.sentence.text, flush=True)
        except FunASRNanoError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        if args.stream and not args.output_dir:
            continue
        if args.format == "json":
            payload = {"file": path, **result.to_dict()}
            if args.output_dir:
                import os

                os.makedirs(args.output_dir, exist_ok=True)
                stem = os.path.splitext(os.path.basename(path))[0]
                with open(os.path.join(args.output_dir, f"{stem}.json"), "w", encoding="utf-8") as f:
                    json.dump(payload, f, ensure_ascii=False)
            else:
                print(json.dumps(payload, ensure_ascii=False), flush=True)
            continue
        # the subtitle/text writers take a Transcription: one segment per translated sentence
        as_transcription = Transcription(
            text=result.text, tokens=(), language=config.target_language, duration=result.duration,
            segments=tuple(Segment(s.start, s.end, s.text, ()) for s in result.segments))
        if args.output_dir:
            write_result(as_transcription, path, args.output_dir, args.format)
        elif args.format == "txt":
            print(result.text if len(args.files) == 1 else f"{path}\t{result.text}", flush=True)
        else:
            get_writer(args.format)(as_transcription, sys.stdout)
            sys.stdout.flush()
    if failures:
        print(f"{failures} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failures else 0


def _tiny(args: argparse.Namespace) -> int:
    from ..testing.tiny import write_tiny_checkpoint

    write_tiny_checkpoint(args.path, layout=args.layout, seed=args.seed)
    print(f"wrote a tiny random {args.layout}-layout checkpoint to {args.path}")
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        from ..training.data import check_manifest

        tokenizer, low_frame_rate = None, True
        if args.model:
            from ..models.fun_asr_nano.checkpoint import load_checkpoint

            loaded = load_checkpoint(args.model)
            tokenizer, low_frame_rate = loaded.tokenizer, loaded.use_low_frame_rate
        report = check_manifest(args.manifest, tokenizer, use_low_frame_rate=low_frame_rate,
                                max_duration=args.max_duration, max_tokens=args.max_tokens)
        print(report.summary())
        return 0 if report.ok else 1
    from ..training.synth import SynthConfig, read_sentences, synthesize

    config = SynthConfig(voice=args.voice, speed=tuple(args.speed), pitch=tuple(args.pitch), noise=args.noise,
                         seed=args.seed)
    sentences = read_sentences(args.input, limit=args.limit, offset=args.offset)
    result = synthesize(sentences, args.output, config, manifest=args.manifest, jobs=args.jobs,
                        start_index=args.offset)
    print(f"{result.manifest}: {len(sentences)} utterances ({result.made} made, {result.skipped} already there)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..training.trainer import train

    result = train(args.config, resume=args.resume)
    if result.model_dir:
        print(f"model: {result.model_dir}")
    if result.lora_dir:
        print(f"LoRA adapter: {result.lora_dir} (load_model(model, lora=adapter); merge: funasr-nano lora merge)")
    if result.steps:
        print(f"final loss {result.steps[-1].loss:.4f} after {result.steps[-1].step} steps")
    return 0


def _lora(args: argparse.Namespace) -> int:
    from ..export.merge import merge_checkpoint

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
        commands = {"transcribe": _transcribe, "translate": _translate, "tiny": _tiny, "data": _data,
                    "train": _train, "lora": _lora}
        return commands[args.command](args)
    except FunASRNanoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
