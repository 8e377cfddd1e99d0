"""The light runtime's CTC head: does a folder with the CTC branch slow the plain path, and what does the
one-pass design save?

Builds the full-size Fun-ASR-Nano-2512 encoder + adaptor (50 + 20 SAN-M blocks of 512, adaptor to 1024) and
CTC branch (5-block decoder, ``ctc_lo`` 512 -> 60515) with random weights, exports them as
``funasr-nano export gguf`` does (fp32; ``audio.onnx`` once without and once with the ``encoder_out``
output, and ``ctc.onnx``), and times in onnxruntime, rounds interleaved so that a busy machine slows every
variant alike (median and best of ``--repeats``):

* ``plain, no CTC``: ``audio.onnx`` of a folder without the branch, ``embeddings`` only;
* ``plain, CTC folder``: ``audio.onnx`` with the second output, ``embeddings`` only (what transcription
  without timestamps runs on a folder with the branch);
* ``CTC, one pass``: both outputs of one run, then ``ctc.onnx`` (word timestamps, the gate, hotwords_file);
* ``CTC, two passes``: the design we did not take: the encoder run again for the CTC head.

Usage:  python benchmarks/bench_light_ctc.py [--threads 2] [--repeats 7] [--seconds 5 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import statistics
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_server import cpu_info  # noqa: E402  (the CPU model and SIMD flags)


def build(folder: str):
    """Write the full-size audio graphs (without / with encoder_out) and the CTC graph under ``folder``."""
    import base64

    import torch

    from funasr_nano.export.onnx_audio import export_audio_onnx
    from funasr_nano.export.onnx_ctc import export_ctc_onnx
    from funasr_nano.models.fun_asr_nano.checkpoint import _frontend_from_yaml, hf_config_from_official
    from funasr_nano.models.fun_asr_nano.ctc import CtcBranch, CtcTokenizer, build_ctc_head
    from funasr_nano.models.fun_asr_nano.gguf_layout import AudioModel
    from funasr_nano.testing.tiny import (TinyConfig, ctc_tokenizer_ranks, llm_config_dict, official_config_yaml,
                                          official_ctc_config)
    from funasr_nano.training.tokenizer import build_tokenizer

    torch.manual_seed(0)
    full = TinyConfig.full_size()
    cfg = official_config_yaml(full)
    config = hf_config_from_official(cfg, llm_config_dict(full, build_tokenizer()), _frontend_from_yaml(cfg))
    model = AudioModel(config)
    head, blank = build_ctc_head(official_ctc_config(full, 58836), full.encoder_dim)
    with torch.no_grad():
        for module in (model, head):
            for name, tensor in module.named_parameters():
                if "norm" in name:
                    tensor.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    tensor.normal_(0.0, 0.02)
    vocab = os.path.join(folder, "multilingual.tiktoken")
    with open(vocab, "w", encoding="utf-8") as f:
        f.writelines(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(ctc_tokenizer_ranks()))
    for name, with_ctc in (("plain", False), ("ctc", True)):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        export_audio_onnx(model.eval(), os.path.join(folder, name), int8=False, encoder_out=with_ctc)
    export_ctc_onnx(CtcBranch(head=head.eval(), tokenizer=CtcTokenizer(vocab), blank_id=blank),
                    os.path.join(folder, "ctc"), int8=False)


def main() -> None:
    import soundfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 10.0])
    args = parser.parse_args()

    from funasr_nano.models.fun_asr_nano.frontend import Frontend, FrontendConfig
    from funasr_nano.models.onnx_audio import ENCODER_OUT, LOG_PROBS, OnnxGraph

    print(cpu_info(), f"{args.threads} threads")
    root = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "audio")
    speech = np.concatenate([soundfile.read(os.path.join(root, n), dtype="float32")[0]
                             for n in ("zh_binhai.wav", "zh_welcome.wav", "zh_mid.wav", "zh_long.wav")] * 2)
    frontend = Frontend(FrontendConfig())
    with tempfile.TemporaryDirectory() as folder:
        build(folder)
        plain = OnnxGraph(os.path.join(folder, "plain", "audio.onnx"), args.threads)
        with_ctc = OnnxGraph(os.path.join(folder, "ctc", "audio.onnx"), args.threads)
        ctc = OnnxGraph(os.path.join(folder, "ctc", "ctc.onnx"), args.threads)
        print("| audio | plain, no CTC | plain, CTC folder | CTC, one pass | CTC, two passes |")
        print("|---|---|---|---|---|")
        for seconds in args.seconds:
            features = np.ascontiguousarray(frontend.features(speech[: int(seconds * 16000)])[None], np.float32)

            def one_pass():
                _, encoder_out = with_ctc.run(["embeddings", ENCODER_OUT], features=features)
                ctc.run([LOG_PROBS], encoder_out=encoder_out)

            def two_passes():
                with_ctc.run(["embeddings"], features=features)
                encoder_out = with_ctc.run([ENCODER_OUT], features=features)[0]
                ctc.run([LOG_PROBS], encoder_out=encoder_out)

            variants = {"plain, no CTC": lambda: plain.run(["embeddings"], features=features),
                        "plain, CTC folder": lambda: with_ctc.run(["embeddings"], features=features),
                        "CTC, one pass": one_pass, "CTC, two passes": two_passes}
            assert np.array_equal(plain.run(["embeddings"], features=features)[0],
                                  with_ctc.run(["embeddings"], features=features)[0])
            times: dict[str, list[float]] = {name: [] for name in variants}
            for round_ in range(args.repeats + 1):  # the first round warms up
                order = list(variants) if round_ % 2 else list(reversed(variants))
                for name in order:
                    began = time.perf_counter()
                    variants[name]()
                    if round_:
                        times[name].append(time.perf_counter() - began)
            cells = [f"{1000 * statistics.median(t):.0f} ms (best {1000 * min(t):.0f})" for t in times.values()]
            print(f"| {seconds:g} s ({features.shape[1]} frames) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
