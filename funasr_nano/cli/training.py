"""Training commands: ``data check``, ``data synth``, ``train``, ``lora merge``, and ``tiny`` (a random
checkpoint for trying the tools without weights)."""

from __future__ import annotations

import argparse
import logging

from .output import write_stdout


def add_parsers(commands, parents: list[argparse.ArgumentParser]) -> None:
    from ..training.synth import SynthConfig

    synth_defaults = SynthConfig()
    tiny = commands.add_parser("tiny", help="write a tiny random checkpoint (for trying the tools without weights)",
                               parents=parents)
    tiny.add_argument("path", metavar="DIR")
    tiny.add_argument("--layout", default="official", choices=["official", "hf"],
                      help="official (model.pt + config.yaml, as ModelScope) or hf (transformers) (default: official)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    tiny.add_argument("--ctc", action="store_true",
                      help="add the CTC branch and its tokenizer (official layout, Fun-ASR-Nano): word timestamps")
    writers, default = tiny_writers()
    tiny.add_argument("--family", default=default, choices=list(writers),
                      help=f"the model family to write (default: {default}, the embedded demo model's; "
                           "qwen3-forced-aligner: a Qwen3-ForcedAligner for --aligner)")
    tiny.set_defaults(run=_tiny)

    data = commands.add_parser("data", help="check and make training data", parents=parents)
    data.set_defaults(run=_data)
    data = data.add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate a manifest (audio readable, durations, token lengths)",
                            parents=parents)
    check.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest (official or simple format)")
    check.add_argument("--model", metavar="DIR", help="checkpoint whose tokenizer counts tokens (optional)")
    check.add_argument("--max-duration", type=float, default=30.0, help="longest allowed audio, s (default: 30)")
    check.add_argument("--max-tokens", type=int, default=1500, help="longest allowed example (default: 1500)")
    synth = data.add_parser("synth", help="text -> 16 kHz speech with espeak-ng, and a manifest", parents=parents)
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
    synth.add_argument("--seed", type=int, default=synth_defaults.seed,
                       help=f"seed of the voice, speed, pitch and noise draws (default: {synth_defaults.seed})")
    synth.add_argument("--jobs", type=int, help="parallel processes (default: all cores)")

    train = commands.add_parser("train", help="train the adaptor / encoder / LLM / LoRA from a YAML config",
                                parents=parents)
    train.add_argument("--config", required=True, metavar="CONFIG.yaml", help="training config (README: Fine-tuning)")
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue from CHECKPOINT, or from the newest in OUTPUT/checkpoints")
    train.set_defaults(run=_train)

    lora = commands.add_parser("lora", help="LoRA adapters", parents=parents)
    lora.set_defaults(run=_lora)
    merge = lora.add_subparsers(dest="lora_command", required=True).add_parser(
        "merge", help="merge an adapter into its base: a standalone checkpoint", parents=parents)
    merge.add_argument("base", metavar="BASE", help="base checkpoint folder")
    merge.add_argument("adapter", metavar="ADAPTER", help="LoRA adapter folder")
    merge.add_argument("output", metavar="OUTPUT", help="folder for the merged checkpoint")
    merge.add_argument("--layout", choices=["official", "hf"], help="output layout (default: the base's)")


def tiny_writers() -> tuple[dict[str, str], str]:
    """``({name: hook string}, default name)``: the random checkpoints the registered families can write
    (their ``tiny`` hooks, :class:`funasr_nano.models.family.Family`); the default is the embedded demo
    model's family's own."""
    from ..load import DEFAULT_MODEL
    from ..models import registry

    writers = {name: hook for family in registry.families() for name, hook in family.tiny}
    return writers, registry.family_for(DEFAULT_MODEL).tiny[0][0]


def _tiny(args: argparse.Namespace) -> int:
    from ..models.family import resolve_hook

    resolve_hook(tiny_writers()[0][args.family])(args.path, layout=args.layout, seed=args.seed, ctc=args.ctc)
    write_stdout(f"wrote a tiny random {args.layout}-layout checkpoint to {args.path}")
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        from ..training.data import check_manifest

        tokenizer, low_frame_rate, chat = None, True, None
        if args.model:
            from ..models.fun_asr_nano.checkpoint import load_checkpoint
            from ..models.fun_asr_nano.prompt import chat_format_for

            loaded = load_checkpoint(args.model)
            tokenizer, low_frame_rate = loaded.tokenizer, loaded.use_low_frame_rate
            chat = chat_format_for(tokenizer, loaded.model.config)  # a swapped LLM's markers count too
        report = check_manifest(args.manifest, tokenizer, use_low_frame_rate=low_frame_rate,
                                max_duration=args.max_duration, max_tokens=args.max_tokens, chat=chat)
        write_stdout(report.summary())
        return 0 if report.ok else 1
    from ..training.synth import SynthConfig, read_sentences, synthesize

    config = SynthConfig(voice=args.voice, speed=tuple(args.speed), pitch=tuple(args.pitch), noise=args.noise,
                         seed=args.seed)
    sentences = read_sentences(args.input, limit=args.limit, offset=args.offset)
    result = synthesize(sentences, args.output, config, manifest=args.manifest, jobs=args.jobs,
                        start_index=args.offset)
    write_stdout(f"{result.manifest}: {len(sentences)} utterances ({result.made} made, {result.skipped} already there)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..errors import TrainingDataError
    from ..training.trainer import train

    try:
        result = train(args.config, resume=args.resume)
    except TrainingDataError as error:  # an input (a clip) failed, not the arguments: exit 1
        logging.getLogger("funasr_nano.cli").error("%s", error)
        return 1
    if result.skipped:
        write_stdout(f"skipped {len(result.skipped)} training example(s) whose audio does not decode (see the log)")
    if result.model_dir:
        write_stdout(f"model: {result.model_dir}")
    if result.lora_dir:
        write_stdout(f"LoRA adapter: {result.lora_dir} (load_model(model, lora=adapter); merge: funasr-nano lora merge)")
    if result.steps:
        write_stdout(f"final loss {result.steps[-1].loss:.4f} after {result.steps[-1].step} steps")
    return 0


def _lora(args: argparse.Namespace) -> int:
    from ..export.merge import merge_checkpoint

    merge_checkpoint(args.base, args.adapter, args.output, layout=args.layout)
    write_stdout(f"wrote merged checkpoint {args.output}")
    return 0
