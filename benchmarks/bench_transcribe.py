"""Speed of one-utterance transcription: ours vs the official FunASR implementation, same weights.

Builds the full-size Fun-ASR-Nano-2512 architecture (70-block SAN-M encoder, 2-block adaptor,
Qwen3-0.6B; 0.8 B parameters) with random weights in the official layout (speed does not depend on the
weights' values), then, for a 5 s and a 30 s clip made from the real recordings in ../shared/audio,
measures in a fresh process per implementation:

  encoder_s    fbank + LFR + encoder + adaptor
  prefill_s    one LLM forward over the prompt (system + instruction + audio positions)
  decode_tok_s generated tokens per second after the first (fixed count: end-of-turn suppressed)
  e2e_s        the public call end to end (file path in, text out), best of --repeats
  rtf          e2e_s / audio seconds
  peak_rss_mb  the process's peak resident memory (load included)

Usage:  python benchmarks/bench_transcribe.py [--new-tokens 64] [--repeats 3] [--out bench-out]
Prints one JSON object per (implementation, clip) and a summary table. The official implementation
needs `pip install funasr==1.4.16` (the test extra).
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
SHARED = pathlib.Path(os.environ.get("FUNASR_NANO_SHARED", ROOT.parent / "shared"))


def make_clips(out: pathlib.Path) -> dict[str, pathlib.Path]:
    import numpy as np
    import soundfile

    names = ["zh_binhai.wav", "zh_welcome.wav", "zh_mid.wav", "zh_long.wav"]
    audio = [soundfile.read(SHARED / "audio" / n, dtype="float32")[0] for n in names]
    joined = np.concatenate(audio * 2)
    clips = {}
    for seconds in (5, 30):
        path = out / f"clip_{seconds}s.wav"
        soundfile.write(path, joined[: seconds * 16000], 16000)
        clips[f"{seconds}s"] = path
    return clips


def ensure_checkpoint(out: pathlib.Path, size: str) -> pathlib.Path:
    from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

    path = out / f"{size}-official"
    if not (path / "model.pt").exists():
        print(f"writing the {size} random checkpoint to {path} ...", file=sys.stderr)
        config = TinyConfig.full_size() if size == "full" else TinyConfig(vocab_size=151936, init_std=0.02)
        write_tiny_checkpoint(str(path), "official", config, seed=0)
    return path


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def worker_ours(model_dir, clip, new_tokens, repeats, dtype):
    import torch

    from funasr_nano import DecodingOptions, load_audio, load_model
    from funasr_nano.models.fun_asr_nano.prompt import build_prompt_ids, transcription_instruction

    model = load_model(model_dir, dtype=dtype)
    options = DecodingOptions(max_new_tokens=new_tokens, min_new_tokens=new_tokens, repetition_guard=False)
    model.transcribe(clip, options=DecodingOptions(max_new_tokens=2, repetition_guard=False))  # warm-up
    wave = load_audio(clip)
    encoder_s = _best(lambda: model.audio_embeddings(wave), repeats)
    audio = model.audio_embeddings(wave)
    embeds = model.inputs_embeds(build_prompt_ids(model.tokenizer, transcription_instruction(), audio.shape[0]), audio)

    def prefill():
        with torch.inference_mode():
            model.model(inputs_embeds=embeds.to(model.dtype), use_cache=True, logits_to_keep=1)

    prefill_s = _best(prefill, repeats)
    generate_s = _best(lambda: model.generate(embeds, options), repeats)
    e2e_s = _best(lambda: model.transcribe(clip, options=options), repeats)
    return dict(encoder_s=encoder_s, prefill_s=prefill_s, generate_s=generate_s, e2e_s=e2e_s,
                prompt_len=int(embeds.shape[1]), tokens=len(model.transcribe(clip, options=options).tokens))


def worker_official(model_dir, clip, new_tokens, repeats, dtype):
    import soundfile
    import torch
    from funasr import AutoModel

    threads = torch.get_num_threads()
    # AutoModel sets torch's thread count to its `ncpu` (default 4): give it the same as ours
    auto = AutoModel(model=str(model_dir), device="cpu", disable_update=True, disable_log=True, ncpu=threads)
    torch.set_num_threads(threads)
    model, tokenizer, frontend = auto.model, auto.kwargs["tokenizer"], auto.kwargs["frontend"]
    llm_dtype = {"fp32": "fp32", "bf16": "bf16"}[dtype]
    kwargs = dict(key=["utt"], tokenizer=tokenizer, frontend=frontend, device="cpu", max_length=new_tokens,
                  llm_kwargs={"min_new_tokens": new_tokens}, llm_dtype=llm_dtype)
    model.inference([clip], **{**kwargs, "max_length": 2, "llm_kwargs": {}})  # warm-up
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
    model.inference([clip], **kwargs)
    del model.llm.generate
    embeds, mask = captured["inputs_embeds"], captured["attention_mask"]

    def prefill():
        with torch.no_grad():
            model.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)

    prefill_s = _best(prefill, repeats)

    def decode():
        with torch.no_grad():
            return model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, pad_token_id=model.llm.config.eos_token_id)

    generate_s = _best(decode, repeats)
    e2e_s = _best(lambda: model.inference([clip], **kwargs), repeats)
    return dict(encoder_s=encoder_s, prefill_s=prefill_s, generate_s=generate_s, e2e_s=e2e_s,
                prompt_len=int(embeds.shape[1]), tokens=int(decode().shape[1]))


def run_worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    worker = {"ours": worker_ours, "official": worker_official}[args.worker]
    result = worker(args.model, args.clip, args.new_tokens, args.repeats, args.dtype)
    import soundfile

    seconds = soundfile.info(args.clip).duration
    result["decode_tok_s"] = (args.new_tokens - 1) / max(result["generate_s"] - result["prefill_s"], 1e-9)
    result["rtf"] = result["e2e_s"] / seconds
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(impl=args.worker, clip_s=seconds, new_tokens=args.new_tokens, dtype=args.dtype,
                  threads=torch.get_num_threads())
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--impls", default="ours,official")
    parser.add_argument("--size", default="full", choices=["full", "tiny"], help="tiny: a smoke test of the script")
    parser.add_argument("--worker", choices=["ours", "official"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = ensure_checkpoint(out, args.size)
    clips = make_clips(out)
    rows = []
    for name, clip in clips.items():
        for impl in args.impls.split(","):
            cmd = [sys.executable, __file__, "--worker", impl, "--model", str(checkpoint), "--clip", str(clip),
                   "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats), "--threads",
                   str(args.threads), "--dtype", args.dtype]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{impl} on {name} failed")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(row))
            rows.append(row)
    print(f"\n{args.size} model; machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{args.threads}, {args.dtype}, {args.new_tokens} generated tokens, best of {args.repeats}")
    print("| impl | clip | encoder s | prefill s | decode tok/s | end-to-end s | RTF | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['clip_s']:.0f} s | {r['encoder_s']:.3f} | {r['prefill_s']:.3f} | "
              f"{r['decode_tok_s']:.1f} | {r['e2e_s']:.2f} | {r['rtf']:.3f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
