"""Speed and error of the encoder + adaptor at each ``encoder_precision`` (fp32, bf16, int8).

Loads the full-size random checkpoint that ``bench_transcribe.py`` writes (``bench-out/full-official``;
run that first, or pass ``--model``), and for a 5 s and a 30 s clip times ``audio_embeddings`` (fbank +
LFR + encoder + adaptor, best of --repeats) with 1 and 2 torch threads, and reports the embedding error
against fp32: max |x - x_fp32| and that over max |x_fp32|.

Usage:  python benchmarks/bench_encoder.py [--model bench-out/full-official] [--threads 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from funasr_nano import load_audio
    from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
    from funasr_nano.models.fun_asr_nano.model import ENCODER_PRECISIONS, FunAsrNanoModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "bench-out" / "full-official"))
    parser.add_argument("--clips", nargs="+", default=[str(ROOT / "bench-out" / f"clip_{s}s.wav") for s in (5, 30)])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    waves = {pathlib.Path(c).name: load_audio(c) for c in args.clips}
    rows = []
    reference = {}
    for precision in ENCODER_PRECISIONS:
        family = FunAsrNanoModel(load_checkpoint(args.model), precision)
        for name, wave in waves.items():
            out = family.audio_embeddings(wave)  # warm-up
            if precision == "fp32":
                reference[name] = out
            ref = reference[name]
            error = (out - ref).abs().max().item()
            for threads in args.threads:
                torch.set_num_threads(threads)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    family.audio_embeddings(wave)
                    times.append(time.perf_counter() - start)
                rows.append((precision, name, threads, min(times), error, error / ref.abs().max().item()))
        del family
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; best of {args.repeats}")
    print("| precision | clip | threads | encoder s | max abs error vs fp32 | relative |")
    print("|---|---|---|---|---|---|")
    for precision, name, threads, seconds, error, relative in rows:
        print(f"| {precision} | {name} | {threads} | {seconds:.3f} | {error:.2e} | {relative:.2e} |")


if __name__ == "__main__":
    main()
