"""What word timestamps cost: the CTC branch at the released size (random weights) on real speech.

Builds the full-size SAN-M encoder (50 + 20 blocks of 512) and CTC branch (5-block decoder, ``ctc_lo``
512 -> 60515) of Fun-ASR-Nano-2512 with random weights, and for clips of 5, 10 and 30 s (the real
recordings of tests/data/audio, concatenated) times, best of ``--repeats``:

* ``encoder``: fbank + LFR + encoder (``FunAsrNanoModel.encoder_output``; the pipeline runs it again
  for the CTC head, beside the LLM's own pass);
* ``ctc head``: decoder + ``ctc_lo`` + log-softmax (what ``no_speech_prob`` and the hotword read-out need);
* ``align``: the CTC tokenizer, the forced alignment of a transcript of 5 tokens per second (Chinese:
  about one token per character) and the words.

Usage:  python benchmarks/bench_timestamps.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def cpu_info() -> str:
    model, flags = "?", ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    keep = [f for f in flags.split() if f.startswith(("avx", "fma", "f16c", "amx", "sse4", "vnni"))]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(keep)}"


def best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    import soundfile
    import torch
    from transformers.models.fun_asr_nano.modeling_fun_asr_nano import FunAsrNanoEncoder

    from funasr_nano.models.alignment import forced_align, words_from_spans
    from funasr_nano.models.fun_asr_nano.checkpoint import _frontend_from_yaml, hf_config_from_official
    from funasr_nano.models.fun_asr_nano.ctc import CtcBranch, CtcTokenizer, build_ctc_head
    from funasr_nano.models.fun_asr_nano.frontend import Frontend
    from funasr_nano.testing.tiny import (TinyConfig, ctc_tokenizer_ranks, llm_config_dict, official_config_yaml,
                                          official_ctc_config)
    from funasr_nano.training.tokenizer import build_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 10.0, 30.0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(cpu_info(), f"torch {torch.__version__}, {args.threads} threads")

    full = TinyConfig.full_size()
    cfg = official_config_yaml(full)
    frontend = _frontend_from_yaml(cfg)
    hf_config = hf_config_from_official(cfg, llm_config_dict(full, build_tokenizer()), frontend)
    hf_config.audio_config._attn_implementation = "sdpa"
    encoder = FunAsrNanoEncoder(hf_config.audio_config).eval()
    head, blank = build_ctc_head(official_ctc_config(full, 58836), full.encoder_dim)
    head.eval()
    # the tiny CTC tokenizer (the real one is not shipped): one token per CJK character, as the real BPE
    import base64
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".tiktoken", delete=False) as f:
        f.writelines(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(ctc_tokenizer_ranks()))
    ctc = CtcBranch(head=head, tokenizer=CtcTokenizer(f.name), blank_id=blank)
    features = Frontend(frontend)

    root = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "audio")
    pieces = [soundfile.read(os.path.join(root, n), dtype="float32")[0]
              for n in ("zh_binhai.wav", "zh_welcome.wav", "zh_mid.wav", "zh_long.wav")]
    speech = np.concatenate(pieces * 4)
    text = "我想问我在滨海新区有房欢迎大家来体验达摩院推出的语音识别模型" * 10

    print("| audio | encoder | CTC head | align + words | CTC head + align per audio second |")
    print("|---|---|---|---|---|")
    for seconds in args.seconds:
        waveform = speech[: int(seconds * 16000)]
        transcript = text[: int(seconds * 5)]
        with torch.inference_mode():
            fbank = features(waveform)[None]
            mask = torch.ones(fbank.shape[:2], dtype=torch.bool)
            run_encoder = lambda: encoder(input_features=fbank, input_features_mask=mask).last_hidden_state  # noqa: E731
            t_encoder = best(run_encoder, args.repeats)
            encoder_out = run_encoder()[0]
            t_head = best(lambda: ctc.log_probs(encoder_out), args.repeats)
            log_probs = ctc.log_probs(encoder_out).numpy()

        def align():
            spans = forced_align(log_probs, ctc.tokenizer.encode(transcript), blank)
            return words_from_spans(spans, ctc.tokenizer.token_bytes, frame_seconds=0.06)

        t_align = best(align, args.repeats)
        assert len(align()) == len(transcript)
        print(f"| {seconds:g} s ({log_probs.shape[0]} frames, {len(transcript)} tokens) | {1000 * t_encoder:.0f} ms | "
              f"{1000 * t_head:.0f} ms | {1000 * t_align:.0f} ms | {1000 * (t_head + t_align) / seconds:.1f} ms |")


if __name__ == "__main__":
    main()
