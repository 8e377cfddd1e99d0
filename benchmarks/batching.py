"""Throughput of batched vs one-by-one decoding on CPU (fp32), on the real recordings in tests/data/audio.

    python benchmarks/batching.py --size tiny            # the test-suite model
    python benchmarks/batching.py --size mid --batch-sizes 1 4 8

Writes a random checkpoint of the chosen size (no weights are downloaded; a random model of a given
shape runs at the speed of a trained one, but its output length differs, so the mean number of
generated tokens is printed), decodes N utterances with each batch size through
``SpeechModel.decode_waveforms`` and reports utterances/s, the speed-up over the first batch size, and
whether the tokens are identical to it.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np
import soundfile
import torch

from funasr_nano import DecodingOptions, load_model
from funasr_nano.models.fun_asr_nano.prompt import transcription_instruction
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint

SHARED = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "audio"
SIZES = {
    "tiny": TinyConfig(),
    # half of Fun-ASR-Nano's LLM width, 8 of its 28 layers, the real 151,936-token vocabulary; a 14-block
    # encoder of width 256 (about 110 M parameters)
    "mid": TinyConfig(encoder_dim=256, encoder_ffn=1024, encoder_blocks=10, encoder_tp_blocks=4, adaptor_ffn=1024,
                      llm_dim=512, llm_layers=8, llm_heads=8, llm_kv_heads=4, llm_head_dim=64, llm_ffn=1536,
                      vocab_size=151936, init_std=0.02),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--utterances", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per utterance")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds over all batch sizes; the fastest round of each is reported (busy machines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = SIZES[args.size]
    folder = tempfile.mkdtemp(prefix=f"funasr-nano-{args.size}-")
    model = load_model(write_tiny_checkpoint(folder, "official", config, seed=0))
    names = sorted(SHARED.glob("zh_*.wav"))
    waveforms = [soundfile.read(names[i % len(names)], dtype="float32")[0] for i in range(args.utterances)]
    options = DecodingOptions(max_new_tokens=args.new_tokens, repetition_guard=False)
    instruction = transcription_instruction()
    parameters = sum(p.numel() for p in model.family.model.parameters())
    print(f"model {args.size}: {parameters / 1e6:.1f} M parameters; {args.utterances} utterances of "
          f"{np.mean([w.size for w in waveforms]) / 16000:.1f} s, {args.new_tokens} new tokens max; "
          f"{args.threads} threads, CPU fp32")
    model.decode_waveforms(waveforms[:2], instruction, options, batch_size=2)  # warm-up
    best: dict[int, float] = {}
    reference, lengths = None, 0.0
    for _ in range(args.repeats):  # interleaved rounds, so load from other processes hits every size
        for batch_size in args.batch_sizes:
            start = time.perf_counter()
            tokens = model.decode_waveforms(waveforms, instruction, options, batch_size=batch_size)
            best[batch_size] = min(best.get(batch_size, float("inf")), time.perf_counter() - start)
            reference = reference or tokens
            assert tokens == reference, f"batch {batch_size} changed the tokens"
            lengths = np.mean([len(t) for t in tokens])
    base = best[args.batch_sizes[0]]
    print(f"tokens identical across batch sizes; mean generated length {lengths:.1f}")
    for batch_size, seconds in best.items():
        print(f"batch {batch_size:2d}: {seconds:6.2f} s (best of {args.repeats}), "
              f"{args.utterances / seconds:6.2f} utt/s, speed-up x{base / seconds:.2f}")


if __name__ == "__main__":
    main()
