"""Step 3 of the demo recipe: the compact tokenizer and the randomly initialised model to train.

The tokenizer is a byte-level BPE learned from the *training* text only (Chinese and English sides of
``train.tsv``, and the AISHELL-1 sentences), with Qwen's pre-tokenizer, special tokens and ChatML
template (:func:`funasr_nano.training.tokenizer.train_tokenizer`), except that every Chinese character is its own
token (``cjk_chars``): one token per spoken syllable is what the training's CTC loss aligns best, and a
small LLM need not learn which characters a merged word token holds. The model is the Fun-ASR-Nano
architecture (SAN-M encoder, Transformer adaptor, Qwen3 LLM) at the size of :data:`DEMO_SIZE`, with
the usual initialisation for training from scratch (weights N(0, 0.02), norms 1, biases 0), written
in the official layout (``config.yaml`` + ``model.pt`` + ``Qwen3-0.6B/``).

Usage: ``python recipes/demo/build_model.py WORK`` -> ``WORK/init``
"""

from __future__ import annotations

import argparse
import os

import torch

from funasr_nano.export.checkpoint import write_official
from funasr_nano.testing.tiny import TinyConfig, build_random_model
from funasr_nano.training.tokenizer import train_tokenizer

# Small enough to train on two CPU cores in about an hour and to ship in < 30 MB (fp16); see
# README: The embedded demo model. use_low_frame_rate False: every adaptor frame (60 ms) enters the LLM, which is
# easier to learn from scratch than the official "first quarter of the frames" cut.
DEMO_SIZE = TinyConfig(
    encoder_dim=192, encoder_heads=4, encoder_ffn=768, encoder_blocks=6, encoder_tp_blocks=0,
    adaptor_ffn=512, adaptor_heads=4, adaptor_layers=1,
    llm_dim=256, llm_layers=4, llm_heads=4, llm_kv_heads=2, llm_head_dim=64, llm_ffn=768,
    use_low_frame_rate=False, init_std=0.02,
)
VOCAB_SIZE = 6000  # byte symbols + merges; the corpus has ~3,300 distinct Chinese characters


def corpus(text_dir: str):
    with open(os.path.join(text_dir, "train.tsv"), encoding="utf-8") as f:
        for line in f:
            english, chinese = line.rstrip("\n").split("\t")[:2]
            yield chinese
            yield english
    with open(os.path.join(text_dir, "aishell.txt"), encoding="utf-8") as f:
        for line in f:
            yield line.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", help="work folder (reads WORK/text, writes WORK/init)")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tokenizer = train_tokenizer(corpus(os.path.join(args.work, "text")), args.vocab_size, cjk_chars=True)
    model, tokenizer, cfg = build_random_model(DEMO_SIZE, seed=args.seed, tokenizer=tokenizer)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("norm.weight"):
                tensor.fill_(1.0)
            elif name.endswith(".bias"):
                tensor.zero_()
    model.tie_weights()
    # The encoder's dropout: the official 0.1 (training only).
    out = os.path.join(args.work, "init")
    write_official(out, model, tokenizer, cfg)
    params = sum(p.numel() for p in model.parameters())
    print(f"tokenizer {len(tokenizer)} tokens; model {params / 1e6:.2f} M parameters -> {out}")


if __name__ == "__main__":
    main()
