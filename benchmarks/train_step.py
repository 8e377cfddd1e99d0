"""Time per training step of the tiny test model (the one tests/test_train.py trains) on this machine.

    python benchmarks/train_step.py [--steps 30] [--threads 1] [--batch-size 10]

Voices 20 Tatoeba sentences with espeak-ng (needs espeak-ng), writes a tiny random checkpoint, and
times optimizer steps (after 3 warm-up steps) for two setups: everything trained (as the overfit
test) and adaptor + LoRA on a frozen LLM. Prints seconds per step.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

import torch

from funasr_nano.training.synth import Sentence, SynthConfig, synthesize
from funasr_nano.testing.tiny import write_tiny_checkpoint
from funasr_nano.training.trainer import TrainConfig, Trainer

SENTENCES = ("我答应了。", "我会做的。", "我买了。", "我来啦。", "我正在吃东西。", "我更快。", "我单身。", "我困了。",
             "我三十岁。", "别理汤姆。", "他长得高吗？", "那是爱吗？", "快点。", "我忘了。", "我放弃。", "你好。",
             "谢谢你。", "我很好。", "明天见。", "下雨了。")
SETUPS = {
    "full (encoder + adaptor + LLM)": dict(train_encoder=True, train_adaptor=True, train_llm=True),
    "adaptor + LoRA (r=8)": dict(train_adaptor=True, lora={"r": 8, "lora_alpha": 16, "lora_dropout": 0.05}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = synthesize([Sentence(s) for s in SENTENCES], os.path.join(tmp, "data"), SynthConfig(seed=1)).manifest
        base = write_tiny_checkpoint(os.path.join(tmp, "base"), "official", seed=3)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
              f"{len(SENTENCES)} utterances of 1-2 s")
        for name, setup in SETUPS.items():
            config = TrainConfig(model=base, train_manifests=(manifest,), output_dir=os.path.join(tmp, "out"),
                                 batch_size=args.batch_size, max_steps=args.steps + 3, warmup_steps=1, log_every=0,
                                 **setup)
            trainer = Trainer(config)
            for _ in range(3):  # warm-up (feature cache, allocator)
                trainer.train_step()
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                trainer.train_step()
                times.append(time.perf_counter() - start)
            print(f"{name}: {statistics.median(times) * 1000:.1f} ms/step median "
                  f"({min(times) * 1000:.1f}-{max(times) * 1000:.1f}), {trainer.num_trainable} trainable parameters")


if __name__ == "__main__":
    main()
