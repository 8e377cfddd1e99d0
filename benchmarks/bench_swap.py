"""What swapping the LLM costs: adaptor and LLM parameters, prefill time, decode speed and peak memory of
Fun-ASR-Nano's encoder in front of other LLMs (``funasr-nano swap``), measured with random full-size weights
(speed and memory do not depend on the weights' values).

For each LLM of :data:`funasr_nano.testing.families.FULL_SIZE` (Qwen3-0.6B, Qwen3-1.7B, Qwen3-4B,
Llama-3.2-1B, Gemma-2-2B: the published architectures and vocabulary sizes):

  prepare NAME   (shared lock) a random bf16 LLM folder with its family's chat template (vocabulary: the
                 demo model's BPE, learned on Chinese, so the prompt has a realistic length), ``swap`` onto a
                 base with Fun-ASR-Nano-2512's encoder (70 SAN-M blocks, 512-d) and 2-block adaptor sizes,
                 then the GGUF layout with the LLM in q8_0 (bf16 GGUF quantized by llama.cpp's quantizer);
                 intermediate folders are deleted as soon as they are used
  measure NAME   (exclusive lock, a fresh process) load the GGUF folder with the llama.cpp engine on
                 ``--threads`` threads and measure on a real 6 s recording (tests/data/audio/zh_binhai.wav):
                   encoder_s     fbank + encoder + adaptor (torch, fp32)
                   prefill_s     the prompt (system, instruction, speech markers, audio positions) and the
                                 first token, best of 3
                   decode_tok_s  tokens per second after the first (64 tokens, end-of-turn suppressed), best of 3
                   peak_rss_mb   the process's peak resident memory (load included)
                 and writes OUT/NAME.json (with the adaptor and LLM parameter counts)
  table          the Markdown table of every OUT/*.json
  clean NAME     delete NAME's folders

Usage (one model at a time; each command well under 10 minutes; disk: ~3x the LLM's bf16 size at peak):
  flock -s /tmp/cpu.lock python benchmarks/bench_swap.py prepare Qwen3-0.6B
  flock -x /tmp/cpu.lock python benchmarks/bench_swap.py measure Qwen3-0.6B
  python benchmarks/bench_swap.py clean Qwen3-0.6B
  python benchmarks/bench_swap.py table
Options: --work DIR (default /tmp/bench-swap), --out DIR (default benchmarks/results/swap), --threads 2.
Needs the llama extra (gguf, llama-cpp-python).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import shutil
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT / "tests" / "data"  # the recordings shipped with the tests (tests/data/README.md)
sys.path.insert(0, str(ROOT))


def _base(work: pathlib.Path) -> pathlib.Path:
    """Fun-ASR-Nano-2512's encoder and adaptor sizes in front of a tiny Qwen3 (only the encoder is kept)."""
    from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

    path = work / "base"
    if not (path / "config.json").exists():
        full = TinyConfig.full_size()
        config = TinyConfig(encoder_dim=full.encoder_dim, encoder_heads=full.encoder_heads,
                            encoder_ffn=full.encoder_ffn, encoder_blocks=full.encoder_blocks,
                            encoder_tp_blocks=full.encoder_tp_blocks, adaptor_ffn=full.adaptor_ffn,
                            adaptor_heads=full.adaptor_heads, adaptor_layers=full.adaptor_layers, init_std=0.02)
        write_tiny_checkpoint(str(path), "hf", config)
    return path


def prepare(name: str, work: pathlib.Path) -> None:
    import torch
    from transformers import AutoTokenizer

    from funasr_nano.export.gguf import quantize_gguf
    from funasr_nano.export.gguf_folder import export_gguf
    from funasr_nano.export.swap import swap_llm
    from funasr_nano.load import DEFAULT_MODEL
    from funasr_nano.testing.families import build_family_tokenizer, full_size_config, write_family_llm

    family, config = full_size_config(name)
    llm_dir, swapped, folder = work / f"{name}-llm", work / f"{name}-swapped", work / f"{name}-gguf"
    if (folder / "config.json").exists():
        print(f"{folder} exists")
        return
    base = _base(work)
    start = time.perf_counter()
    if not (swapped / "config.json").exists():
        vocabulary = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
        tokenizer = build_family_tokenizer(family, vocabulary)
        write_family_llm(str(llm_dir), family, config, std=0.02, dtype=torch.bfloat16, tokenizer=tokenizer)
        print(f"random {name}: {time.perf_counter() - start:.0f} s")
        swap_llm(base, llm_dir, swapped)
        shutil.rmtree(llm_dir)
        print(f"swapped: {time.perf_counter() - start:.0f} s")
    export_gguf(swapped, folder, "bf16", dtype=torch.bfloat16, n_threads=2)
    print(f"bf16 GGUF: {time.perf_counter() - start:.0f} s")
    config_path = folder / "config.json"
    settings = json.loads(config_path.read_text(encoding="utf-8"))
    quantize_gguf(folder / "llm-bf16.gguf", folder / "llm-q8_0.gguf", "q8_0", n_threads=2)
    os.remove(folder / "llm-bf16.gguf")
    settings["llm_gguf"] = "llm-q8_0.gguf"
    config_path.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    shutil.rmtree(swapped)
    print(f"q8_0 GGUF folder {folder}: {time.perf_counter() - start:.0f} s")


def _parameters(folder: pathlib.Path) -> tuple[int, int]:
    """(adaptor parameters, LLM parameters) of a GGUF-layout folder."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    import torch

    with safe_open(folder / "audio.safetensors", "pt") as f:
        adaptor = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys() if "multi_modal_projector" in k)
    text_config = AutoConfig.from_pretrained(folder).text_config
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(text_config)
    return adaptor, sum(p.numel() for p in llm.parameters())  # tied embeddings counted once


def _numel(shape) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total


def _best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(name: str, work: pathlib.Path, out: pathlib.Path, threads: int, new_tokens: int = 64) -> dict:
    import torch

    from funasr_nano import DecodingOptions, load_audio, load_model
    from funasr_nano.pipeline.decoding import generate

    folder = work / f"{name}-gguf"
    torch.set_num_threads(threads)
    model = load_model(folder, n_threads=threads)
    clip = SHARED / "audio" / "zh_binhai.wav"
    wave = load_audio(str(clip))
    family = model.family
    fixed = lambda n: DecodingOptions(max_new_tokens=n, min_new_tokens=n, repetition_guard=False)  # noqa: E731
    model.transcribe(str(clip), options=fixed(2))  # warm-up
    encoder_s = _best(lambda: family.audio_embeddings(wave), 3)
    llm_input = family.llm_input(family.transcription_prompt(None, (), True), family.audio_embeddings(wave))
    with torch.inference_mode():
        prefill_s = _best(lambda: generate(model.engine, [llm_input], fixed(1)), 3)
        generate_s = _best(lambda: generate(model.engine, [llm_input], fixed(new_tokens + 1)), 3)
    adaptor, llm = _parameters(folder)
    result = dict(
        llm=name, family=family.model.config.text_config.model_type, hidden_size=family.model.config.text_config.hidden_size,
        adaptor_params=adaptor, llm_params=llm, gguf="q8_0", gguf_mb=round(os.path.getsize(family.checkpoint.llm_gguf) / 2**20),
        threads=threads, prompt_positions=llm_input.length, audio_positions=int(llm_input.parts[1].shape[0]),
        encoder_s=round(encoder_s, 3), prefill_s=round(prefill_s, 3),
        decode_tok_s=round(new_tokens / (generate_s - prefill_s), 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        machine=f"{platform.machine()} {os.cpu_count()} cores", clip=clip.name,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return result


def table(out: pathlib.Path) -> str:
    order = ["Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Llama-3.2-1B", "Gemma-2-2B"]
    rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.json"))]
    rows.sort(key=lambda r: order.index(r["llm"]) if r["llm"] in order else len(order))
    lines = ["| LLM (hidden) | adaptor params | LLM params | q8_0 GGUF | prompt positions | encoder+adaptor | "
             "prefill | decode | peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['llm']} ({r['hidden_size']}) | {r['adaptor_params'] / 1e6:.1f} M | {r['llm_params'] / 1e9:.2f} B | "
                     f"{r['gguf_mb'] / 1024:.2f} GiB | {r['prompt_positions']} ({r['audio_positions']} audio) | "
                     f"{r['encoder_s']:.2f} s | {r['prefill_s']:.2f} s | {r['decode_tok_s']:.1f} tok/s | "
                     f"{r['peak_rss_mb'] / 1024:.1f} GiB |")
    text = "\n".join(lines)
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare", "measure", "table", "clean"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/bench-swap"))
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results" / "swap")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "table":
        table(args.out)
        return
    if not args.name:
        parser.error(f"{args.command} needs an LLM name")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "prepare":
        prepare(args.name, args.work)
    elif args.command == "measure":
        measure(args.name, args.work, args.out, args.threads)
    else:
        for suffix in ("llm", "swapped", "gguf"):
            shutil.rmtree(args.work / f"{args.name}-{suffix}", ignore_errors=True)


if __name__ == "__main__":
    main()
