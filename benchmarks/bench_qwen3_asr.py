"""Speed of one-utterance Qwen3-ASR transcription: our transformers engine, our llama.cpp engine (GGUF
thinker) and the reference package ``qwen-asr`` (0.0.6, its transformers backend), same weights.

Builds the full-size Qwen3-ASR-0.6B architecture (18-layer 896-wide AuT encoder, 28-layer Qwen3 thinker
1024 wide, head_dim 128, 16/8 heads, FFN 3072, vocabulary 151,936, tied embeddings, mrope_section
[24, 20, 20]; sizes from the released config.json) with random weights in the official layout
(``funasr_nano.testing.tiny_qwen3_asr``; speed does not depend on the weights' values), exports it with
``funasr-nano export gguf`` at the requested types, and for a 5 s and a 30 s clip made from the real
recordings in tests/data/audio measures, in a fresh process per (implementation, clip, threads), the
fields of ``bench_transcribe.py``:

  encoder_s    log-mel + audio encoder + projector
  prefill_s    the prompt through the LLM and the first token
  decode_tok_s generated tokens per second after the first (fixed count: end of turn suppressed)
  e2e_s        the public call end to end (file path in, text out, model loaded), best of --repeats,
               for each count of --new-tokens
  rtf          e2e_s / audio seconds
  peak_rss_mb  the process's peak resident memory (load included)
  of bound     decode tok/s as a fraction of ``memory bandwidth / LLM weight bytes read per token``

Usage:  python benchmarks/bench_qwen3_asr.py [--impls transformers,q8_0,q4_k_m,qwen-asr] [--arch qwen3vl]
            [--new-tokens 16 64] [--threads 2] [--clips 5 30] [--repeats 3] [--out bench-out]
``qwen-asr`` runs in the reference venv of the parity tests (``funasr_nano.testing.qwen_asr_reference``,
created on first use). Never run it beside another multi-threaded job: llama.cpp's threads spin.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_transcribe import ROOT, _best, make_clips, memory_bandwidth, peak_rss_mb, print_report  # noqa: E402

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_k_m", "q4_0", "q5_k_m", "q6_k")
REFERENCE = "qwen-asr"


def ensure_checkpoint(out: pathlib.Path, size: str) -> pathlib.Path:
    from funasr_nano.testing.tiny_qwen3_asr import TinyQwen3AsrConfig, write_tiny_checkpoint

    path = out / f"qwen3-asr-{size}-official"
    if not (path / "model.safetensors").exists():
        print(f"writing the {size} random Qwen3-ASR checkpoint to {path} ...", file=sys.stderr)
        config = TinyQwen3AsrConfig.full_size() if size == "full" else TinyQwen3AsrConfig()
        write_tiny_checkpoint(str(path), "official", config, seed=0)
    return path


def ensure_gguf(out: pathlib.Path, checkpoint: pathlib.Path, size: str, out_type: str, arch: str) -> pathlib.Path:
    from funasr_nano.export.thinker_gguf import export_gguf_folder

    path = out / f"qwen3-asr-{size}-gguf-{arch}-{out_type}"
    if not (path / f"llm-{out_type}.gguf").exists():
        print(f"exporting {arch} {out_type} to {path} ...", file=sys.stderr)
        export_gguf_folder(checkpoint, path, out_type, arch=arch)
    return path


def worker_ours(model_dir, clip, new_tokens, repeats, threads):
    import torch

    from funasr_nano import DecodingOptions, load_audio, load_model
    from funasr_nano.pipeline.decoding import generate

    model = load_model(model_dir, n_threads=threads)
    model.transcribe(clip, options=DecodingOptions(max_new_tokens=2, repetition_guard=False))  # warm-up
    wave = load_audio(clip)
    family = model.family
    encoder_s = _best(lambda: family.audio_embeddings(wave), repeats)
    llm_input = family.llm_input(family.transcription_prompt(None, (), True), family.audio_embeddings(wave))
    fixed = lambda n: DecodingOptions(max_new_tokens=n, min_new_tokens=n, repetition_guard=False)  # noqa: E731
    longest = max(new_tokens)
    with torch.inference_mode():
        prefill_s = _best(lambda: generate(model.engine, [llm_input], fixed(1)), repeats)
        generate_s = _best(lambda: generate(model.engine, [llm_input], fixed(longest)), repeats)
    e2e = {n: _best(lambda: model.transcribe(clip, options=fixed(n)), repeats) for n in new_tokens}
    if model.engine.name == "llama.cpp":
        weight_bytes = os.path.getsize(model.engine.model_path)
    else:
        weight_bytes = sum(p.numel() * p.element_size() for p in family.model.model.language_model.parameters())
    return dict(encoder_s=encoder_s, prefill_s=prefill_s, generate_s=generate_s, decoded=longest, e2e=e2e,
                prompt_len=llm_input.length, weight_bytes=weight_bytes)


def worker_reference(model_dir, clip, new_tokens, repeats, threads):
    """qwen-asr's public ``Qwen3ASRModel.transcribe`` (transformers backend, fp32); its generate call
    is wrapped to force a fixed token count (``min_new_tokens``), as for ours."""
    import soundfile
    import torch
    from qwen_asr import Qwen3ASRModel

    torch.set_num_threads(threads)
    asr = Qwen3ASRModel.from_pretrained(str(model_dir), dtype=torch.float32, max_new_tokens=2)
    generate = asr.model.generate
    fixed = {"n": 2}

    def fixed_generate(*args, **kwargs):
        kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = fixed["n"]
        return generate(*args, **kwargs)

    asr.model.generate = fixed_generate
    asr.transcribe(audio=str(clip))  # warm-up
    wave, rate = soundfile.read(str(clip), dtype="float32")
    prompt = asr._build_text_prompt(context="", force_language=None)
    inputs = asr.processor(text=[prompt], audio=[wave], return_tensors="pt", padding=True)
    thinker = asr.model.thinker

    def encode():
        with torch.no_grad():
            features = asr.processor(text=[prompt], audio=[wave], return_tensors="pt", padding=True)
            return thinker.get_audio_features(features["input_features"],
                                              feature_attention_mask=features["feature_attention_mask"])

    encoder_s = _best(encode, repeats)

    def decode(n):
        fixed["n"] = n
        with torch.no_grad():
            return asr.model.generate(**inputs)

    longest = max(new_tokens)
    prefill_s = _best(lambda: decode(1), repeats)
    generate_s = _best(lambda: decode(longest), repeats)

    def e2e_call(n):
        fixed["n"] = n
        return asr.transcribe(audio=str(clip))

    e2e = {n: _best(lambda: e2e_call(n), repeats) for n in new_tokens}
    weight_bytes = sum(p.numel() * p.element_size() for p in thinker.model.parameters())
    return dict(encoder_s=encoder_s, prefill_s=prefill_s, generate_s=generate_s, decoded=longest, e2e=e2e,
                prompt_len=int(inputs["input_ids"].shape[1]), weight_bytes=weight_bytes)


def run_worker(args) -> None:
    import soundfile
    import torch

    torch.set_num_threads(args.threads[0])
    worker = worker_reference if args.worker == REFERENCE else worker_ours
    result = worker(args.model, args.clip, args.new_tokens, args.repeats, args.threads[0])
    seconds = soundfile.info(args.clip).duration
    result["decode_tok_s"] = (result["decoded"] - 1) / max(result["generate_s"] - result["prefill_s"], 1e-9)
    result["rtf"] = {n: s / seconds for n, s in result["e2e"].items()}
    result["peak_rss_mb"] = peak_rss_mb()
    result.update(impl=args.worker, clip_s=seconds, threads=args.threads[0])
    print(json.dumps(result))


def reference_python() -> str:
    from funasr_nano.testing.qwen_asr_reference import ensure_reference

    return ensure_reference()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--impls", default=f"transformers,q8_0,q4_k_m,{REFERENCE}",
                        help=f"comma-separated: transformers, {REFERENCE}, or GGUF types {GGUF_TYPES}")
    parser.add_argument("--arch", default="qwen3vl", choices=["qwen3vl", "qwen3"], help="the GGUF thinker's form")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--clips", type=int, nargs="+", default=[5, 30], help="clip lengths in seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="full", choices=["full", "tiny"], help="tiny: a smoke test of the script")
    parser.add_argument("--prepare-only", action="store_true", help="write the checkpoint and exports, then stop")
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
    unknown = [i for i in impls if i not in ("transformers", REFERENCE, *GGUF_TYPES)]
    if unknown:
        raise SystemExit(f"unknown implementations {unknown}")
    folders = {impl: (checkpoint if impl in ("transformers", REFERENCE) else
                      ensure_gguf(out, checkpoint, args.size, impl, args.arch)) for impl in impls}
    pythons = {impl: reference_python() if impl == REFERENCE else sys.executable for impl in impls}
    clips = make_clips(out, args.clips)
    if args.prepare_only:
        return
    bandwidth = {threads: memory_bandwidth(threads) for threads in args.threads}
    rows = []
    for seconds, clip in clips.items():
        for threads in args.threads:
            for impl in impls:
                cmd = [pythons[impl], __file__, "--worker", impl, "--model", str(folders[impl]), "--clip", str(clip),
                       "--new-tokens", *map(str, args.new_tokens), "--repeats", str(args.repeats),
                       "--threads", str(threads)]
                env = dict(os.environ, PYTHONPATH=str(ROOT)) if impl != REFERENCE else \
                    {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{impl} on the {seconds} s clip failed")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                if impl not in ("transformers", REFERENCE):
                    row["impl"] = f"llama.cpp {args.arch} {impl}"
                row["bound_fraction"] = row["decode_tok_s"] * row["weight_bytes"] / bandwidth[threads]
                print(json.dumps(row), flush=True)
                rows.append(row)
    print_report(rows, f"{args.size} Qwen3-ASR-0.6B", bandwidth, args.repeats, args.new_tokens, baseline=REFERENCE,
                 prompt_column=True)


if __name__ == "__main__":
    main()
