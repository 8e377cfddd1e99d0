"""How often the llama.cpp engine at each GGUF type gives the transformers engine's output.

Exports the embedded demo model (trained, so its outputs mean something) at each type, transcribes the
shipped held-out clips (``tests/data/demo_heldout/*.flac``) with both engines (greedy, a fixed number of new
tokens, repetition guard off) and counts the clips whose tokens are identical, and the tokens that agree
position by position.

Usage:  python benchmarks/gguf_agreement.py [--types f32 f16 bf16 q8_0 q4_k_m] [--new-tokens 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    from funasr_nano import DecodingOptions, load_model
    from funasr_nano.export.gguf_folder import export_gguf

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", nargs="+", default=["f32", "f16", "bf16", "q8_0", "q4_k_m"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    clips = sorted((ROOT / "tests" / "data" / "demo_heldout").glob("*.flac"))
    options = DecodingOptions(max_new_tokens=args.new_tokens, repetition_guard=False)
    reference_model = load_model(engine="transformers")
    reference = [reference_model.transcribe(clip, options=options).tokens for clip in clips]
    print(f"demo model, {len(clips)} held-out clips, up to {args.new_tokens} new tokens, greedy")
    print("| GGUF type | clips identical | tokens agreeing |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for out_type in args.types:
            folder = pathlib.Path(tmp) / out_type
            export_gguf(None, folder, out_type)
            model = load_model(folder, n_threads=args.threads)
            outputs = [model.transcribe(clip, options=options).tokens for clip in clips]
            model.close()
            same = sum(out == ref for out, ref in zip(outputs, reference))
            agreeing = sum(a == b for out, ref in zip(outputs, reference) for a, b in zip(out, ref))
            total = sum(len(ref) for ref in reference)
            print(f"| {out_type} | {same}/{len(clips)} | {agreeing}/{total} |", flush=True)


if __name__ == "__main__":
    main()
