"""Time per training step of the tiny test model (the one tests/test_train.py trains) on this machine.

    python benchmarks/train_step.py [--steps 30] [--threads 1] [--batch-size 10] [--num-workers 2]
                                    [--feature-cache 0]

Voices 20 Tatoeba sentences with espeak-ng (needs espeak-ng), writes a tiny random checkpoint, and
times optimizer steps (after 3 warm-up steps) for two setups: everything trained (as the overfit
test) and adaptor + LoRA on a frozen LLM. Prints ms per step and steps/s, with the CPU and its flags.

``--feature-cache 0`` recomputes the fbank of every clip at every step (a corpus larger than the
cache); ``--num-workers N`` computes it in N DataLoader worker processes ahead of the step (the
``num_workers`` training setting; leave it out to use the default, or on a version without it).
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
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default: the config's default)")
    parser.add_argument("--feature-cache", type=int, help="feature_cache_size (default: the config's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = synthesize([Sentence(s) for s in SENTENCES], os.path.join(tmp, "data"), SynthConfig(seed=1)).manifest
        base = write_tiny_checkpoint(os.path.join(tmp, "base"), "official", seed=3)
        options = {name: value for name, value in (("num_workers", args.num_workers),
                                                    ("feature_cache_size", args.feature_cache)) if value is not None}
        print(f"CPU {cpu_model()}, flags {' '.join(cpu_flags())}")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
              f"{len(SENTENCES)} utterances of 1-2 s, {options or 'default data loading'}")
        for name, setup in SETUPS.items():
            config = TrainConfig(model=base, train_manifests=(manifest,), output_dir=os.path.join(tmp, "out"),
                                 batch_size=args.batch_size, max_steps=args.steps + 3, warmup_steps=1, log_every=0,
                                 **setup, **options)
            trainer = Trainer(config)
            for _ in range(3):  # warm-up (feature cache, allocator)
                trainer.train_step()
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                trainer.train_step()
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            print(f"{name}: {median * 1000:.1f} ms/step median ({min(times) * 1000:.1f}-{max(times) * 1000:.1f}), "
                  f"{1 / median:.2f} steps/s, {trainer.num_trainable} trainable parameters")
            if hasattr(trainer, "close"):
                trainer.close()


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def cpu_flags() -> list[str]:
    """The vector/matrix extensions among /proc/cpuinfo's flags (those that change torch's speed)."""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c", "sse4")) or "vnni" in f)


if __name__ == "__main__":
    main()
