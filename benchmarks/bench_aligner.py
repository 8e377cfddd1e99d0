"""What Qwen3-ASR's word timestamps cost: Qwen3-ForcedAligner-0.6B at the released size (random weights)
on real speech.

Builds the full-size aligner (24-layer AuT encoder of 1024, 28-layer Qwen3 of 1024, 5000-bin classifier;
:meth:`funasr_nano.testing.tiny_qwen3_aligner.TinyAlignerConfig.full_size`) with random weights, and for
clips of 5, 10, 30 and 60 s (the real recordings of tests/data/audio, concatenated) with a Chinese
transcript of 4 characters per second times ``ForcedAligner.align_units`` (log-mel, encoder, one forward
pass of the LLM and classifier, the fix-up), best of ``--repeats``. The speed does not depend on the
weights' values, so random weights give the released model's cost.

Usage:  python benchmarks/bench_aligner.py [--threads 2] [--repeats 3] [--tiny]
(``--tiny``: the tiny test-size aligner, to check that the script runs.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_server import cpu_info  # noqa: E402  (the CPU model and SIMD flags)

TEXT = "我想问我在滨海新区有房欢迎大家来体验达摩院推出的语音识别模型"


def main() -> None:
    import torch

    from funasr_nano.audio.io import SAMPLE_RATE, load_audio
    from funasr_nano.models.qwen3_asr import aligner_checkpoint
    from funasr_nano.models.qwen3_asr.aligner import ForcedAligner
    from funasr_nano.testing import tiny_qwen3_aligner as tiny
    from funasr_nano.testing.tiny_qwen3_asr import write_official_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny test-size aligner (checks the script runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = tiny.TinyAlignerConfig() if args.tiny else tiny.TinyAlignerConfig.full_size()
    model, official = tiny.build_random_aligner(config)
    with tempfile.TemporaryDirectory() as folder:  # the tokenizer only: the weights stay in memory
        write_official_tokenizer(folder)
        tokenizer = aligner_checkpoint.asr_checkpoint.load_tokenizer(folder)
    loaded = aligner_checkpoint.LoadedAligner(
        model=model.eval().requires_grad_(False), tokenizer=tokenizer, layout="official", path="(random)",
        timestamp_token_id=official["timestamp_token_id"], timestamp_segment_time=80.0,
        classify_num=config.classify_num, feature_config=dict(tiny.asr.PREPROCESSOR_CONFIG))
    aligner = ForcedAligner(loaded)
    root = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "audio")
    speech = np.concatenate([load_audio(os.path.join(root, name)) for name in sorted(os.listdir(root))])
    params = sum(p.numel() for p in model.parameters())
    print(f"CPU: {cpu_info()}; torch {torch.__version__}, {args.threads} threads; "
          f"aligner {'tiny' if args.tiny else 'full size'} ({params / 1e6:.0f} M parameters, random weights)")
    print("| audio | units | align_units (best of %d) | per audio second |" % args.repeats)
    print("|---|---|---|---|")
    for seconds in (5, 10, 30, 60):
        waveform = np.resize(speech, seconds * SAMPLE_RATE).astype(np.float32)
        text = (TEXT * (seconds // 8 + 1))[:4 * seconds]
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            units = aligner.align_units(waveform, text, "zh")
            times.append(time.perf_counter() - began)
        best = min(times)
        print(f"| {seconds} s | {len(units)} | {best * 1000:.0f} ms | {best * 1000 / seconds:.1f} ms |")


if __name__ == "__main__":
    main()
