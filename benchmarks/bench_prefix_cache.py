"""The llama.cpp engine's prompt-prefix cache and KV sizing on the full-size model: what the cache saves
of the prefill, measured in one process on one GGUF folder.

Builds (or reuses) the full-size Fun-ASR-Nano-2512 architecture with random weights and its GGUF folder
(``benchmarks/bench_transcribe.py`` builds both), loads it once on the llama.cpp engine, and runs the
same 5 s clip through two engines on the same GGUF file, one with the prefix cache (default) and one
without (``prefix_cache=0``), alternating, best of ``--repeats``:

  prefill_s  the prompt through the LLM and the first token (``generate`` with one new token on the
             pipeline's own LLM input: system turn + instruction + audio positions + assistant header);
             with the cache, the prefix (system + instruction up to the audio slot) comes from the cache
  e2e_s      ``model.transcribe(clip)`` with ``--new-tokens`` tokens (end-of-turn suppressed), model loaded
  kv_cells   KV cache cells the engine allocated (the fixed size used to be 2,048)

Usage:  python benchmarks/bench_prefix_cache.py [--gguf-type q8_0] [--threads 2] [--new-tokens 16]
            [--repeats 5] [--out bench-out]
Run it alone on the machine (llama.cpp's threads spin).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def cpu_info() -> str:
    model, flags = "?", ""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
        for line in info:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    keep = [f for f in flags.split() if f.startswith(("avx", "fma", "f16c", "amx", "sse4", "vnni"))]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(keep)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf-type", default="q8_0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--folder", default=None, help="a GGUF folder and --clip instead of the full-size model")
    parser.add_argument("--clip", default=None)
    args = parser.parse_args()
    from bench_transcribe import ensure_checkpoint, ensure_gguf, make_clips

    from funasr_nano import DecodingOptions, load_model
    from funasr_nano.engines.base import Engine
    from funasr_nano.engines.llamacpp import LlamaCppEngine
    from funasr_nano.pipeline.speech_model import SpeechModel

    print("cpu:", cpu_info(), flush=True)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.folder:
        folder, clip = args.folder, args.clip
    else:
        folder = ensure_gguf(out, ensure_checkpoint(out, "full"), "full", args.gguf_type)
        clip = out / "clip_5s.wav"
        clip = clip if clip.exists() else make_clips(out, [5])[5]
    model = load_model(folder, n_threads=args.threads)
    cached = model.engine
    plain = LlamaCppEngine(cached.model_path, cached.stop_token_ids, n_threads=args.threads, prefix_cache=0)

    class Recorder(Engine):  # the pipeline's LLM input, for timing the engine alone
        name = "recorder"

        def __init__(self, inner):
            super().__init__(inner.stop_token_ids)
            self.inner, self.inputs = inner, []

        hidden_size = property(lambda self: self.inner.hidden_size)
        max_positions = property(lambda self: self.inner.max_positions)

        def generate(self, inputs, options, **kwargs):
            self.inputs = list(inputs)
            return self.inner.generate(inputs, options, **kwargs)

    options = DecodingOptions(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, repetition_guard=False)
    recorder = Recorder(cached)
    models = {"cache on": SpeechModel(model.family, recorder, model.adapters),
              "cache off": SpeechModel(model.family, plain, model.adapters)}
    models["cache on"].transcribe(clip, options=options)  # warm-up; the prefix is cached from here on
    models["cache off"].transcribe(clip, options=options)
    item = recorder.inputs[0]
    one = DecodingOptions(max_new_tokens=1, min_new_tokens=1, repetition_guard=False)
    best = {name: {"prefill_s": float("inf"), "e2e_s": float("inf")} for name in models}
    engines = {"cache on": cached, "cache off": plain}
    for _ in range(args.repeats):
        for name, engine in engines.items():
            began = time.perf_counter()
            engine.generate([item], one)
            best[name]["prefill_s"] = min(best[name]["prefill_s"], time.perf_counter() - began)
            began = time.perf_counter()
            models[name].transcribe(clip, options=options)
            best[name]["e2e_s"] = min(best[name]["e2e_s"], time.perf_counter() - began)
    prefix = len(item.parts[0])
    rows = []
    for name, engine in engines.items():
        row = {"engine": name, "gguf": args.gguf_type, "threads": args.threads, "prompt_positions": item.length,
               "cached_prefix_positions": prefix if engine.prefix_cache else 0,
               "prefill_s": round(best[name]["prefill_s"], 4), "e2e_s": round(best[name]["e2e_s"], 3),
               "new_tokens": args.new_tokens, "kv_cells": engine.kv_cells,
               "prefix_hits": engine.prefix_hits, "prefix_misses": engine.prefix_misses}
        rows.append(row)
        print(json.dumps(row), flush=True)
    on, off = best["cache on"], best["cache off"]
    print(f"\nprefill saved: {off['prefill_s'] - on['prefill_s']:.4f} s of {off['prefill_s']:.4f} s "
          f"({100 * (1 - on['prefill_s'] / off['prefill_s']):.1f} %); end to end {off['e2e_s']:.3f} -> {on['e2e_s']:.3f} s "
          f"({100 * (1 - on['e2e_s'] / off['e2e_s']):.1f} %); prompt {item.length} positions, {prefix} cached; "
          f"KV cache {cached.kv_cells} cells (was 2,048)")
    print("\n| prefix cache | prompt positions | cached | prefill s | e2e s (16 tok) | KV cells |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['engine']} | {row['prompt_positions']} | {row['cached_prefix_positions']} | {row['prefill_s']} | "
              f"{row['e2e_s']} | {row['kv_cells']} |")
    plain.close()
    model.close()


if __name__ == "__main__":
    main()
