"""Speech translation side by side: unified (one pass) vs cascade (ASR, then text translation).

For every ``translate`` line of a manifest (audio + English reference), runs both modes through
``SpeechModel.translate_stream`` and reports, per mode:

  BLEU, chrF       sacrebleu corpus scores against the references
  first_s          seconds from the call to the first translated sentence (mean over utterances)
  total_s          seconds to the end (mean)
  rtf              total seconds / audio seconds

Usage:
  python benchmarks/bench_translate.py [--model DIR] [--manifest M] [--translator DIR] [--limit N]
  python benchmarks/bench_translate.py --size full [--threads 2] [--out bench-out/translate-full]
      [--workers transcribe,unified,cascade-llama,cascade-hf,official,together] [--lock /tmp/cpu.lock]
      (full-size random models, each mode in a fresh process: see benchmarks/translate_full.py)

Defaults: the embedded demo model and its shipped held-out subset (tests/data/demo_heldout). ``--translator`` sets the cascade's
text translator (a chat LLM or Marian/NLLB folder); without it the cascade uses the speech model's
own LLM on the text-only translation task.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_mode(model, examples, mode, translator, config):
    from funasr_nano.pipeline.translate import SentenceTranslated, TranslationFinished, translate_stream

    hypotheses, firsts, totals, audio_seconds = [], [], [], 0.0
    for example in examples:
        began = time.perf_counter()
        first = None
        for event in translate_stream(model, example.audio, dataclasses.replace(config, mode=mode), translator=translator):
            if isinstance(event, SentenceTranslated) and first is None:
                first = time.perf_counter() - began
            elif isinstance(event, TranslationFinished):
                result = event.translation
        totals.append(time.perf_counter() - began)
        firsts.append(first if first is not None else totals[-1])
        hypotheses.append(result.text)
        audio_seconds += result.duration
    return hypotheses, firsts, totals, audio_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="speech model folder (default: the embedded demo model)")
    parser.add_argument("--manifest", help="manifest with translate lines (default: the demo model's held-out set)")
    parser.add_argument("--translator", help="cascade text translator folder (default: the speech model's LLM)")
    parser.add_argument("--limit", type=int, help="use the first N utterances")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--size", choices=("demo", "full"), default="demo",
                        help="demo: the demo model on its held-out set; full: full-size random models (timing only)")
    parser.add_argument("--out", default=str(ROOT / "bench-out" / "translate-full"), help="--size full: model folder")
    parser.add_argument("--workers", default="transcribe,unified,cascade-llama,cascade-hf,official,together",
                        help="--size full: which workers to run")
    parser.add_argument("--lock", help="--size full: run the workers in groups, each group under flock -x LOCK "
                                       "(exclusive holds of about 7 minutes at most)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quant", help=argparse.SUPPRESS)
    parser.add_argument("--batch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size == "full":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from translate_full import main as full_main

        if args.threads == os.cpu_count() and not args.worker and not args.batch:
            args.threads = 2
        return full_main(args)

    import sacrebleu
    import torch

    from funasr_nano import load_model
    from funasr_nano.manifests import read_manifest
    from funasr_nano.options import TranslationOptions
    from funasr_nano.pipeline.translate import resolve_translator

    torch.set_num_threads(args.threads)
    manifest = args.manifest or str(ROOT / "tests" / "data" / "demo_heldout" / "manifest.jsonl")
    examples = [e for e in read_manifest(manifest) if e.task == "translate" and e.audio]
    if args.limit:
        examples = examples[: args.limit]
    if not examples:
        raise SystemExit(f"{manifest}: no translate lines with audio")
    model = load_model(args.model)
    config = TranslationOptions()
    references = [e.target for e in examples]
    rows = []
    for mode in ("unified", "cascade"):
        translator = resolve_translator(model, mode, args.translator if mode == "cascade" else None)
        run_mode(model, examples[:1], mode, translator, config)  # warm-up
        hypotheses, firsts, totals, seconds = run_mode(model, examples, mode, translator, config)
        rows.append(dict(
            mode=mode, utterances=len(examples),
            bleu=sacrebleu.corpus_bleu(hypotheses, [references]).score,
            chrf=sacrebleu.corpus_chrf(hypotheses, [references]).score,
            first_s=statistics.mean(firsts), total_s=statistics.mean(totals), rtf=sum(totals) / seconds,
            examples=[{"reference": r, "hypothesis": h} for r, h in list(zip(references, hypotheses))[:3]],
        ))
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    print(f"\nmodel: {args.model or 'embedded demo'}; manifest: {manifest}; cascade translator: "
          f"{args.translator or 'the speech model LLM (text_translate)'}; machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, torch threads {args.threads}")
    print("| mode | passes | BLEU | chrF | first sentence s | total s | RTF |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        passes = "1 (speech LLM)" if r["mode"] == "unified" else "2 (ASR + text)"
        print(f"| {r['mode']} | {passes} | {r['bleu']:.1f} | {r['chrf']:.1f} | {r['first_s']:.3f} | "
              f"{r['total_s']:.3f} | {r['rtf']:.3f} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    sys.exit(main())
