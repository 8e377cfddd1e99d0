"""Cost of choosing one token on the llama.cpp engine's greedy path (engines/sampling.py): ``pick_token`` (arg-max
plus one float32 log-sum-exp for the token's log-probability) against a full float64 ``log_softmax`` of the
row (what the greedy path did before), on a random row of Qwen3's 151,936-entry vocabulary; milliseconds per
token, best of --repeats rounds of --tokens calls, with the largest difference of the two log-probabilities.

Usage:  python benchmarks/bench_sampling.py [--tokens 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_server import cpu_info  # noqa: E402  (the CPU model and SIMD flags)

from funasr_nano.engines.sampling import log_softmax, pick_token  # noqa: E402
from funasr_nano.options import DecodingOptions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logits = (np.random.default_rng(0).standard_normal(151936) * 8).astype(np.float32)
    options = DecodingOptions()

    def full(row):
        logprobs = log_softmax(np.array(row, dtype=np.float64))
        token = int(np.argmax(logprobs))
        return token, float(logprobs[token])

    timings = {}
    for name, fn in (("pick_token", lambda: pick_token(logits, 20, options, [1, 2], None)),
                     ("float64 log_softmax", lambda: full(logits))):
        best = float("inf")
        for _ in range(args.repeats):
            began = time.perf_counter()
            for _ in range(args.tokens):
                fn()
            best = min(best, (time.perf_counter() - began) / args.tokens)
        timings[name] = best
    difference = abs(pick_token(logits, 20, options, [1, 2], None)[1] - full(logits)[1])
    print(f"CPU: {cpu_info()}")
    for name, seconds in timings.items():
        print(f"{name}: {seconds * 1000:.3f} ms per token")
    print(f"log-probability difference: {difference:.2e}")


if __name__ == "__main__":
    main()
