"""The ONNX audio path (``audio.onnx`` / ``audio-int8.onnx`` of ``funasr-nano export gguf``) against the torch
encoder + adaptor: embedding error, speed, the adaptor's activation range (what fp16 would do), and token
agreement of the light runtime with the transformers engine.

For a source checkpoint and its GGUF-layout folder, on the real recordings (tests/data/audio) and, when given,
longer clips:

  error    max |x - x_torch_fp32| and that over max |x_torch_fp32|, for ONNX fp32, ONNX int8 with QUInt8
           weights (what export writes) and with QInt8 weights (made here with the same quantize_dynamic),
           torch's dynamic int8 (encoder_precision="int8") and torch fp16 (the model in half precision)
  speed    fbank + LFR + encoder + adaptor, best of --repeats, at each --threads (torch and onnxruntime)
  range    std and max |x| of the adaptor output, and the largest |activation| of any Linear layer inside
           the encoder and adaptor (fp16's largest finite value is 65504; its spacing near 1024 is 1.0)
  tokens   with --agreement: transcripts of the recordings and the demo's held-out clips by the
           transformers engine (source) vs the light runtime (folder) at fp32 and int8, greedy

Usage:  python benchmarks/bench_onnx_audio.py --source DIR --folder GGUF_DIR [--clips a.wav ...]
            [--threads 1 2] [--repeats 3] [--agreement]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import tempfile
import time

import numpy as np
from bench_transcribe import cpu_flags  # noqa: E402  (this folder is on sys.path when run as a script)

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDINGS = [ROOT / "tests" / "data" / "audio" / f"{n}.wav" for n in ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")]


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def activation_range(family, wave) -> float:
    """The largest |output| of any Linear layer of the encoder and adaptor on ``wave``."""
    import torch

    largest = [0.0]

    def hook(module, inputs, output):
        largest[0] = max(largest[0], float(output.detach().abs().max()))

    inner = family.model.model
    handles = [m.register_forward_hook(hook) for part in (inner.audio_tower, inner.multi_modal_projector)
               for m in part.modules() if isinstance(m, torch.nn.Linear)]
    family.audio_embeddings(wave)
    for handle in handles:
        handle.remove()
    return largest[0]


def main() -> None:
    import torch

    from funasr_nano import load_audio, load_model
    from funasr_nano.export.onnx_audio import quantize_int8
    from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
    from funasr_nano.models.fun_asr_nano.model import FunAsrNanoModel
    from funasr_nano.models.onnx_audio import OnnxAudioEncoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="the checkpoint the folder was exported from")
    parser.add_argument("--folder", required=True, help="its GGUF-layout folder (with audio.onnx, audio-int8.onnx)")
    parser.add_argument("--clips", nargs="*", default=[])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agreement", action="store_true", help="also compare transcripts (tokens)")
    parser.add_argument("--skip-speed", action="store_true", help="errors only (e.g. on a busy machine)")
    args = parser.parse_args()

    print(f"CPU: {cpu_flags()}; load average {os.getloadavg()[0]:.2f}; best of {args.repeats}")
    clips = [pathlib.Path(c) for c in [*RECORDINGS, *args.clips]]
    waves = {c.name: load_audio(c) for c in clips}
    reference = FunAsrNanoModel(load_checkpoint(args.source))
    torch_int8 = FunAsrNanoModel(load_checkpoint(args.source), "int8")
    torch_fp16 = FunAsrNanoModel(load_checkpoint(args.source))
    torch_fp16.model.model.audio_tower.half()
    torch_fp16.model.model.multi_modal_projector.half()
    tmp = tempfile.mkdtemp(prefix="onnx-qint8-")
    qint8 = quantize_int8(os.path.join(args.folder, "audio.onnx"), os.path.join(tmp, "audio-qint8.onnx"), "QInt8")
    sessions = {name: OnnxAudioEncoder(file, n_threads=max(args.threads))
                for name, file in (("onnx fp32", os.path.join(args.folder, "audio.onnx")),
                                   ("onnx int8 QUInt8", os.path.join(args.folder, "audio-int8.onnx")),
                                   ("onnx int8 QInt8", qint8))}

    def onnx_embeddings(session, wave):
        features = reference.features(wave).numpy()
        return session(features=features[None])[0][: reference.audio_positions(wave.size)]

    def fp16_embeddings(wave):
        inner = torch_fp16.model.model
        features = torch_fp16.features(wave)[None].half()
        mask = torch.ones(features.shape[:2], dtype=torch.bool)
        with torch.inference_mode():
            hidden = inner.audio_tower(input_features=features, input_features_mask=mask).last_hidden_state
            out = inner.multi_modal_projector(hidden, mask)[0].float().numpy()
        return out[: reference.audio_positions(wave.size)]

    print("\n| clip | s | max abs (std) of embeddings | largest Linear activation | " + " | ".join(
        f"{n} max abs / rel" for n in [*sessions, "torch int8", "torch fp16"]) + " |")
    print("|---" * (4 + len(sessions) + 2) + "|")
    for name, wave in waves.items():
        torch.set_num_threads(max(args.threads))
        ref = reference.audio_embeddings(wave).numpy()
        peak = float(np.abs(ref).max())
        cells = []
        candidates = {n: onnx_embeddings(s, wave) for n, s in sessions.items()}
        candidates["torch int8"] = torch_int8.audio_embeddings(wave).numpy()
        candidates["torch fp16"] = fp16_embeddings(wave)
        for got in candidates.values():
            error = float(np.abs(got - ref).max())
            cells.append(f"{error:.2e} / {error / peak:.1e}")
        print(f"| {name} | {wave.size / 16000:.1f} | {peak:.1f} ({ref.std():.2f}) | "
              f"{activation_range(reference, wave):.0f} | " + " | ".join(cells) + " |")

    print("\n| clip | threads | torch fp32 s | torch int8 s | onnx fp32 s | onnx int8 (QUInt8) s |")
    print("|---|---|---|---|---|---|")
    for name, wave in ({} if args.skip_speed else waves).items():
        for threads in args.threads:
            torch.set_num_threads(threads)
            timed = [best(lambda: reference.audio_embeddings(wave), args.repeats),
                     best(lambda: torch_int8.audio_embeddings(wave), args.repeats)]
            for key in ("onnx fp32", "onnx int8 QUInt8"):
                session = OnnxAudioEncoder(sessions[key].file, n_threads=threads)
                onnx_embeddings(session, wave)
                timed.append(best(lambda: onnx_embeddings(session, wave), args.repeats))
            print(f"| {name} | {threads} | " + " | ".join(f"{t:.3f}" for t in timed) + " |")

    if args.agreement:
        from funasr_nano.manifests import read_manifest

        heldout = ROOT / "tests" / "data" / "demo_heldout"
        audio = [str(c) for c in clips]
        if (heldout / "manifest.jsonl").exists() and "demo" in str(args.source):
            audio += [e.audio for e in read_manifest(heldout / "manifest.jsonl") if e.task == "transcribe"]
        torch_model = load_model(args.source, engine="transformers", n_threads=max(args.threads))
        expected = [torch_model.transcribe(a, max_new_tokens=64).tokens for a in audio]
        for precision in ("fp32", "int8"):
            light = load_model(args.folder, n_threads=max(args.threads), encoder_precision=precision)
            got = [light.transcribe(a, max_new_tokens=64).tokens for a in audio]
            same = sum(g == e for g, e in zip(got, expected))
            tokens = sum(len(e) for e in expected)
            agree = sum(sum(a == b for a, b in zip(g, e)) for g, e in zip(got, expected))
            print(f"agreement, light {os.path.basename(args.folder.rstrip('/'))} ONNX {precision} vs transformers: "
                  f"{same}/{len(audio)} clips identical, {agree}/{tokens} tokens at the same position")
            light.close()


if __name__ == "__main__":
    main()
