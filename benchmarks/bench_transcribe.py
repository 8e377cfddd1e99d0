"""Speed of one-utterance transcription: our engines vs the official FunASR implementation, same weights.

Builds the full-size Fun-ASR-Nano-2512 architecture (70-block SAN-M encoder, 2-block adaptor,
Qwen3-0.6B; 0.8 B parameters) with random weights in the official layout (speed does not depend on the
weights' values), exports it to GGUF folders (``funasr-nano export gguf``) at the requested types, and
for a 5 s and a 30 s clip made from the real recordings in tests/data/audio measures, in a fresh process
per (implementation, clip, threads):

  encoder_s    fbank + LFR + encoder + adaptor
  prefill_s    the prompt through the LLM and the first token (system + instruction + audio positions)
  decode_tok_s generated tokens per second after the first (fixed count: end-of-turn suppressed)
  e2e_s        the public call end to end (file path in, text out, model loaded), best of --repeats,
               for each count of --new-tokens
  rtf          e2e_s / audio seconds
  peak_rss_mb  the process's peak resident memory (load included)
  cold_s       the CLI from process start to the first transcript (`funasr-nano transcribe -q --model DIR
               clip`, 16 tokens at most; not measured for the official implementation)

A GGUF type runs on the light runtime (ONNX encoder + llama.cpp, no torch imported in its process); append
``@int8`` for its int8 ONNX encoder (``q8_0@int8``), else ``--encoder-precision`` applies (fp32: audio.onnx).

It also measures this machine's memory bandwidth (numpy copy of 512 MiB, read + write bytes) and prints
decode tok/s as a fraction of the bound ``bandwidth / bytes of LLM weights read per token`` (with tied
embeddings the output layer reads the whole embedding table every token, so: all LLM weights).

Usage:  python benchmarks/bench_transcribe.py [--impls transformers,f16,q8_0,q8_0@int8,q4_k_m,official]
            [--new-tokens 16 64] [--threads 1 2] [--clips 5 30] [--repeats 3] [--out bench-out]
The official implementation needs the parity extra (`pip install funasr==1.4.16`); the GGUF types need
the llama extra. Never run it beside another multi-threaded job: llama.cpp's threads spin.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT / "tests" / "data"  # the recordings shipped with the tests (tests/data/README.md)
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_k_m", "q4_0", "q5_k_m", "q6_k")


def make_clips(out: pathlib.Path, seconds_list) -> dict[int, pathlib.Path]:
    import numpy as np
    import soundfile

    names = ["zh_binhai.wav", "zh_welcome.wav", "zh_mid.wav", "zh_long.wav"]
    audio = [soundfile.read(SHARED / "audio" / n, dtype="float32")[0] for n in names]
    joined = np.concatenate(audio * 2)
    clips = {}
    for seconds in seconds_list:
        path = out / f"clip_{seconds}s.wav"
        soundfile.write(path, joined[: seconds * 16000], 16000)
        clips[seconds] = path
    return clips


def ensure_checkpoint(out: pathlib.Path, size: str) -> pathlib.Path:
    """The random checkpoint, with the demo model's trained BPE tokenizer: its official prompt is 30 text
    tokens, as Qwen3's is ~23 (the byte-only test tokenizer would make it 72 and inflate the prefill)."""
    from transformers import AutoTokenizer

    from funasr_nano.export.checkpoint import write_official
    from funasr_nano.load import DEFAULT_MODEL
    from funasr_nano.testing.tiny import TinyConfig, build_random_model

    path = out / f"{size}-official"
    if not (path / "model.pt").exists():
        print(f"writing the {size} random checkpoint to {path} ...", file=sys.stderr)
        config = TinyConfig.full_size() if size == "full" else TinyConfig(vocab_size=151936, init_std=0.02)
        model, tokenizer, cfg = build_random_model(config, 0, AutoTokenizer.from_pretrained(DEFAULT_MODEL))
        write_official(str(path), model, tokenizer, cfg)
    return path


def ensure_gguf(out: pathlib.Path, checkpoint: pathlib.Path, size: str, out_type: str) -> pathlib.Path:
    from funasr_nano.export.gguf_folder import export_gguf

    path = out / f"{size}-gguf-{out_type}"
    if not (path / f"llm-{out_type}.gguf").exists():
        print(f"exporting {out_type} to {path} ...", file=sys.stderr)
        export_gguf(checkpoint, path, out_type)
    return path


def memory_bandwidth(threads: int, seconds: float = 2.0) -> float:
    """Bytes per second moved by a torch copy of 512 MiB on ``threads`` threads (read + write bytes),
    best of the copies made in ``seconds``."""
    import torch

    torch.set_num_threads(threads)
    a = torch.ones(128 * 2**20, dtype=torch.float32)
    b = torch.empty_like(a)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        b.copy_(a)
        best = max(best, 2 * a.numel() * a.element_size() / (time.perf_counter() - t))
    return best


def cpu_flags() -> str:
    """The CPU model, core count and the SIMD flags that change every figure (AVX2, AVX-512, VNNI, AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile") if f in flags]
    return f"{model}; {os.cpu_count()} cores; {' '.join(shown)}"


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: reset at exec, unlike getrusage's ru_maxrss, which a
    child inherits from the process that forked it)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def worker_ours(model_dir, clip, new_tokens, repeats, threads, encoder_precision="fp32"):
    import contextlib

    from funasr_nano import DecodingOptions, load_audio, load_model
    from funasr_nano.pipeline.decoding import generate

    model = load_model(model_dir, n_threads=threads, encoder_precision=encoder_precision)
    if model.engine.name == "llama.cpp":  # the light runtime: no torch in this process
        no_grad = contextlib.nullcontext()
    else:
        import torch

        no_grad = torch.inference_mode()
    model.transcribe(clip, options=DecodingOptions(max_new_tokens=2, repetition_guard=False))  # warm-up
    wave = load_audio(clip)
    encoder_s = _best(lambda: model.audio_embeddings(wave), repeats)
    family = model.family
    llm_input = family.llm_input(family.transcription_prompt(None, (), True), family.audio_embeddings(wave))
    fixed = lambda n: DecodingOptions(max_new_tokens=n, min_new_tokens=n, repetition_guard=False)  # noqa: E731
    with no_grad:
        prefill_s = _best(lambda: generate(model.engine, [llm_input], fixed(1)), repeats)
        longest = max(new_tokens)
        generate_s = _best(lambda: generate(model.engine, [llm_input], fixed(longest)), repeats)
    e2e = {n: _best(lambda: model.transcribe(clip, options=fixed(n)), repeats) for n in new_tokens}
    if model.engine.name == "llama.cpp":
        weight_bytes = os.path.getsize(model.engine.model_path)
    else:
        weight_bytes = sum(p.numel() * p.element_size() for p in family.model.model.language_model.parameters())
    return dict(encoder_s=encoder_s, prefill_s=prefill_s, generate_s=generate_s, decoded=longest,
                e2e=e2e, prompt_len=llm_input.length, weight_bytes=weight_bytes)


def worker_official(model_dir, clip, new_tokens, repeats, threads, encoder_precision="fp32"):
    import soundfile
    import torch
    from funasr import AutoModel

    # AutoModel sets torch's thread count to its `ncpu` (default 4): give it the same as ours
    auto = AutoModel(model=str(model_dir), device="cpu", disable_update=True, disable_log=True, ncpu=threads)
    torch.set_num_threads(threads)
    model, tokenizer, frontend = auto.model, auto.kwargs["tokenizer"], auto.kwargs["frontend"]

    def kwargs(n, minimum=True):
        return dict(key=["utt"], tokenizer=tokenizer, frontend=frontend, device="cpu", max_length=n,
                    llm_kwargs={"min_new_tokens": n} if minimum else {}, llm_dtype="fp32")

    model.inference([clip], **kwargs(2, False))  # warm-up
    wave = torch.from_numpy(soundfile.read(clip, dtype="float32")[0])

    def encode():
        with torch.no_grad():
            feats, lens = frontend(wave[None], torch.tensor([wave.numel()]))
            out, out_lens = model.encode(feats, lens)
            return model.audio_adaptor(out, out_lens)

    encoder_s = _best(encode, repeats)
    captured = {}
    generate = model.llm.generate

    def capture(*args, **kw):
        captured.update(kw)
        return generate(*args, **kw)

    model.llm.generate = capture
    model.inference([clip], **kwargs(2))
    del model.llm.generate
    embeds, mask = captured["inputs_embeds"], captured["attention_mask"]
    longest = max(new_tokens)

    def decode(n):
        with torch.no_grad():
            return model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=n,
                                      min_new_tokens=n, pad_token_id=model.llm.config.eos_token_id)

    prefill_s = _best(lambda: decode(1), repeats)
    generate_s = _best(lambda: decode(longest), repeats)
    e2e = {n: _best(lambda: model.inference([clip], **kwargs(n)), repeats) for n in new_tokens}
    weight_bytes = sum(p.numel() * p.element_size() for p in model.llm.parameters())
    return dict(encoder_s=encoder_s, prefill_s=prefill_s, generate_s=generate_s, decoded=longest,
                e2e=e2e, prompt_len=int(embeds.shape[1]), weight_bytes=weight_bytes)


def run_worker(args) -> None:
    import soundfile

    if args.worker in ("official", "transformers"):  # the light runtime's process never imports torch
        import torch

        torch.set_num_threads(args.threads[0])
    worker = worker_official if args.worker == "official" else worker_ours
    result = worker(args.model, args.clip, args.new_tokens, args.repeats, args.threads[0], args.encoder_precision)
    seconds = soundfile.info(args.clip).duration
    result["decode_tok_s"] = (result["decoded"] - 1) / max(result["generate_s"] - result["prefill_s"], 1e-9)
    result["rtf"] = {n: s / seconds for n, s in result["e2e"].items()}
    result["peak_rss_mb"] = peak_rss_mb()
    kind = "" if args.worker in ("official", "transformers") else "light "
    impl = f"{kind}{args.worker}" if args.encoder_precision == "fp32" or args.worker == "official" else \
        f"{kind}{args.worker} + {args.encoder_precision} encoder"
    result.update(impl=impl, clip_s=seconds, threads=args.threads[0])
    print(json.dumps(result))


def cold_start(impl: str, folder, clip, threads: int, encoder_precision: str) -> float | None:
    """Seconds from process start to the first transcript of the CLI (``None`` for the official code)."""
    if impl == "official":
        return None
    cmd = [sys.executable, "-m", "funasr_nano.cli", "transcribe", "-q", "--model", str(folder), "--threads",
           str(threads), "--max-new-tokens", "16", "--encoder-precision", encoder_precision, str(clip)]
    if impl == "transformers":
        cmd[cmd.index("--model"):cmd.index("--model")] = ["--engine", "transformers"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"the CLI failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - start


def print_report(rows: list[dict], title: str, bandwidth: dict, repeats: int, tokens, *, baseline: str,
                 prompt_column: bool = False) -> None:
    """The README table of ``rows`` (one per implementation, clip and thread count; ``prompt_column``: with
    the prompt length), then each row's end-to-end speed-up over ``baseline``'s row of the same clip and
    threads."""
    print(f"\n{title}; CPU: {cpu_flags()}, "
          f"load average {os.getloadavg()[0]:.2f}; memory bandwidth (torch copy, read + write) "
          + ", ".join(f"{b / 1e9:.1f} GB/s on {t} thread(s)" for t, b in bandwidth.items()) + "; "
          f"best of {repeats}")
    prompt = " prompt |" if prompt_column else ""
    print(f"| impl | clip | threads |{prompt} encoder s | prefill s | decode tok/s | of bound | "
          + " | ".join(f"e2e s ({n} tok)" for n in tokens) + " | " + " | ".join(f"RTF ({n})" for n in tokens)
          + " | peak RSS MB | cold start s |")
    print("|---" * (9 + prompt_column + 2 * len(tokens)) + "|")
    for r in rows:
        e2e = " | ".join(f"{r['e2e'][str(n)]:.2f}" for n in tokens)
        rtf = " | ".join(f"{r['rtf'][str(n)]:.3f}" for n in tokens)
        prompt = f" {r['prompt_len']} |" if prompt_column else ""
        print(f"| {r['impl']} | {r['clip_s']:.0f} s | {r['threads']} |{prompt} {r['encoder_s']:.3f} | "
              f"{r['prefill_s']:.3f} | {r['decode_tok_s']:.1f} | {100 * r['bound_fraction']:.0f} % | {e2e} | {rtf} | "
              f"{r['peak_rss_mb']:.0f} | " + ("-" if r.get("cold_s") is None else f"{r['cold_s']:.2f}") + " |")
    reference = {(r["clip_s"], r["threads"]): r for r in rows if r["impl"] == baseline}
    width = max((len(r["impl"]) for r in rows), default=12)
    for r in rows:
        base = reference.get((r["clip_s"], r["threads"]))
        if base is not None and r is not base:
            ratios = ", ".join(f"{base['e2e'][str(n)] / r['e2e'][str(n)]:.1f}x ({n} tok)" for n in tokens)
            print(f"{r['impl']:>{width}} vs {baseline}, {r['clip_s']:.0f} s clip, {r['threads']} thread(s): {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--impls", default="transformers,f16,q8_0,q4_k_m,official",
                        help=f"comma-separated: transformers, official, or GGUF types {GGUF_TYPES}")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clips", type=int, nargs="+", default=[5, 30], help="clip lengths in seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoder-precision", default="fp32", choices=["fp32", "bf16", "int8"],
                        help="our encoder and adaptor's arithmetic (the official one is always fp32)")
    parser.add_argument("--size", default="full", choices=["full", "tiny"], help="tiny: a smoke test of the script")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = ensure_checkpoint(out, args.size)
    impls = args.impls.split(",")
    folders = {impl: (checkpoint if impl in ("transformers", "official")
                      else ensure_gguf(out, checkpoint, args.size, impl.split("@")[0])) for impl in impls}
    clips = make_clips(out, args.clips)
    bandwidth = {threads: memory_bandwidth(threads) for threads in args.threads}
    rows = []
    for seconds, clip in clips.items():
        for threads in args.threads:
            for impl in impls:
                worker, _, precision = impl.partition("@")
                precision = precision or args.encoder_precision
                cmd = [sys.executable, __file__, "--worker", worker, "--model", str(folders[impl]), "--clip", str(clip),
                       "--new-tokens", *map(str, args.new_tokens), "--repeats", str(args.repeats),
                       "--threads", str(threads), "--encoder-precision", precision]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{impl} on the {seconds} s clip failed")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["bound_fraction"] = row["decode_tok_s"] * row["weight_bytes"] / bandwidth[threads]
                row["cold_s"] = cold_start(worker, folders[impl], clip, threads, precision)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print_report(rows, f"{args.size} model", bandwidth, args.repeats, args.new_tokens, baseline="official")


if __name__ == "__main__":
    main()
