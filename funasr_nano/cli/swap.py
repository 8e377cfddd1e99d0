"""``funasr-nano swap BASE --llm LLM_DIR OUT``: BASE's audio encoder in front of another causal LLM, with a
new adaptor sized for it (:mod:`funasr_nano.export.swap`)."""

from __future__ import annotations

import argparse

from .output import write_stdout


def add_parsers(commands, parents: list[argparse.ArgumentParser]) -> None:
    from ..export.swap import SwapOptions

    defaults = SwapOptions()
    swap = commands.add_parser(
        "swap", parents=parents,
        help="put BASE's audio encoder in front of another causal LLM (new adaptor; train it next)",
        description="Write a checkpoint with BASE's encoder and frontend, a freshly initialised adaptor sized "
                    "for the LLM's hidden size, and the LLM's weights, config and tokenizer. Train the adaptor "
                    "with `funasr-nano train` (train_adaptor: true) before use.")
    swap.add_argument("base", metavar="BASE", help="Fun-ASR-Nano checkpoint folder (any layout)")
    swap.add_argument("--llm", required=True, metavar="LLM_DIR",
                      help="a transformers causal LM folder (config.json, weights, tokenizer with a chat template)")
    swap.add_argument("output", metavar="OUT", help="folder for the new checkpoint (transformers layout)")
    swap.add_argument("--adaptor-layers", type=int, default=defaults.adaptor_layers, metavar="N",
                      help="Transformer blocks in the adaptor (default: BASE's)")
    swap.add_argument("--adaptor-ffn", type=int, default=defaults.adaptor_ffn, metavar="D",
                      help="the adaptor projector's hidden width (default: BASE's)")
    swap.add_argument("--keep-adaptor", action="store_true",
                      help="keep BASE's trained adaptor (the LLM's hidden size must equal BASE's)")
    swap.add_argument("--seed", type=int, default=defaults.seed, help="seed of the new adaptor's initialisation")
    swap.set_defaults(run=_swap)


def _swap(args) -> int:
    from ..export.swap import SwapOptions, swap_llm

    options = SwapOptions(adaptor_layers=args.adaptor_layers, adaptor_ffn=args.adaptor_ffn,
                          keep_adaptor=args.keep_adaptor, seed=args.seed)
    write_stdout(swap_llm(args.base, args.llm, args.output, options))
    return 0
