"""Step 1 of the demo recipe: split the text corpora into training and held-out sentences.

Inputs: Tatoeba's English-Mandarin pairs (``english<TAB>chinese<TAB>attribution``, CC-BY 2.0 FR) and the
AISHELL-1 test-set transcripts (Chinese only, Apache-2.0). Outputs, in ``WORK/text/``:

* ``test.tsv``: the held-out Tatoeba pairs (``english<TAB>chinese``), drawn with a fixed seed;
* ``train.tsv``: every other Tatoeba pair whose Chinese **and** English differ from every held-out
  pair's (Tatoeba has one sentence in several pairs; the split is by sentence, not by pair);
* ``aishell.txt``: AISHELL-1 sentences (transcription only), minus any held-out Chinese sentence.

Usage: ``python recipes/demo/prepare.py WORK [--test-size 300] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import os
import random

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
TATOEBA = os.path.join(SHARED, "tatoeba-cmn-eng", "cmn.txt")
AISHELL = os.path.join(SHARED, "aishell1-test-text", "aishell1_test.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", help="work folder")
    parser.add_argument("--tatoeba", default=TATOEBA)
    parser.add_argument("--aishell", default=AISHELL)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pairs = []
    with open(args.tatoeba, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 2 and fields[0].strip() and fields[1].strip():
                pairs.append((fields[0].strip(), fields[1].strip()))
    rng = random.Random(args.seed)
    test_indices = set(rng.sample(range(len(pairs)), args.test_size))
    test = [pairs[i] for i in sorted(test_indices)]
    held_zh = {zh for _, zh in test}
    held_en = {en for en, _ in test}
    train = [p for i, p in enumerate(pairs) if i not in test_indices and p[1] not in held_zh and p[0] not in held_en]
    aishell = []
    with open(args.aishell, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"].strip()
            if text and text not in held_zh:
                aishell.append(text)

    out = os.path.join(args.work, "text")
    os.makedirs(out, exist_ok=True)
    for name, rows in (("train.tsv", train), ("test.tsv", test)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.writelines(f"{en}\t{zh}\n" for en, zh in rows)
    with open(os.path.join(out, "aishell.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{text}\n" for text in aishell)
    print(f"train {len(train)} pairs, test {len(test)} pairs (dropped {len(pairs) - len(train) - len(test)} "
          f"sharing a held-out sentence), aishell {len(aishell)} sentences -> {out}")


if __name__ == "__main__":
    main()
