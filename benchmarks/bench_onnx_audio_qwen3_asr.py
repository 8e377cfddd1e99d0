"""Qwen3-ASR's ONNX audio tower (``audio.onnx`` / ``audio-int8.onnx`` of ``funasr-nano export gguf``, one
attention window per call) against the torch tower (transformers' ``audio_tower`` + projector, windowed
attention): embedding error, speed, activation range.

On the real recordings (tests/data/audio), their 19 s concatenation (three attention windows) and any
--clips, for a source checkpoint (``--source DIR``, official or -hf layout) or random full-size weights
(``--full-size``: Qwen3-ASR-0.6B's 18-layer 896-wide AuT encoder, init std 0.02, seed 0):

  error    max |x - x_torch_fp32| and that over max |x_torch_fp32| on the same log-mel, for ONNX fp32, ONNX
           int8 with QUInt8 weights (what export writes) and with QInt8 weights (same quantize_dynamic), and
           the numpy log-mel + ONNX fp32 end to end against transformers' extractor + torch
  speed    the tower alone (log-mel given), best of --repeats, torch fp32 vs ONNX fp32 / int8, --threads
  range    std and max |x| of the projector output, largest |output| of any Linear layer (for fp16)

Usage:  python benchmarks/bench_onnx_audio_qwen3_asr.py (--source DIR | --full-size) [--clips a.wav ...]
            [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDINGS = [ROOT / "tests" / "data" / "audio" / f"{n}.wav" for n in ("zh_binhai", "zh_welcome", "zh_mid", "zh_long")]


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def full_size_audio_model(seed: int = 0):
    """Qwen3-ASR-0.6B's audio tower + projector (no thinker) with random weights (std 0.02, norms ~1)."""
    from funasr_nano.models.qwen3_asr.checkpoint import hf_config_from_official
    from funasr_nano.models.qwen3_asr.gguf_layout import AudioModel
    from funasr_nano.testing.tiny_qwen3_asr import TinyQwen3AsrConfig, official_config, randomize

    size = TinyQwen3AsrConfig.full_size()
    model = AudioModel(hf_config_from_official(official_config(size)))
    randomize(model, seed, size.init_std)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--source", help="a Qwen3-ASR checkpoint folder (official or -hf layout)")
    which.add_argument("--full-size", action="store_true", help="random Qwen3-ASR-0.6B audio tower")
    parser.add_argument("--clips", nargs="*", default=[], help="more 16 kHz clips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from funasr_nano.audio.io import load_audio
    from funasr_nano.export.onnx_audio import quantize_int8
    from funasr_nano.export.onnx_audio_qwen3_asr import export_qwen3_asr_audio_onnx
    from funasr_nano.models.onnx_audio import OnnxAudioEncoder
    from funasr_nano.models.qwen3_asr.frontend import Frontend, FrontendConfig, LogMelFrontend
    from funasr_nano.models.qwen3_asr.light import LightQwen3AsrModel
    from funasr_nano.models.qwen3_asr.prompt import num_audio_tokens

    torch.set_num_threads(args.threads)
    if args.source:
        from funasr_nano.models.qwen3_asr.checkpoint import load_checkpoint

        model = load_checkpoint(args.source).model
    else:
        model = full_size_audio_model()
    audio = model.config.audio_config
    frontend, numpy_frontend = Frontend(FrontendConfig(n_window=int(audio.n_window))), LogMelFrontend()
    tower, projector = model.model.audio_tower, model.model.multi_modal_projector

    def torch_tower(features, mask):
        with torch.inference_mode():
            return projector(tower(input_features=features, input_features_mask=mask).last_hidden_state).numpy()

    waves = {p.stem: load_audio(p) for p in RECORDINGS}
    waves["joined_19s"] = np.concatenate([waves["zh_binhai"], waves["zh_long"], waves["zh_mid"]])
    waves.update({pathlib.Path(p).stem: load_audio(p) for p in args.clips})
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads {args.threads}; "
          f"model: {args.source or 'random full-size Qwen3-ASR-0.6B audio tower'} "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters)")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_qwen3_asr_audio_onnx(model, tmp)
        print(f"export (fp32 + int8 QUInt8): {time.perf_counter() - start:.1f} s; audio.onnx.data "
              f"{os.path.getsize(os.path.join(tmp, 'audio.onnx.data')) / 1e6:.0f} MB, audio-int8 "
              f"{os.path.getsize(os.path.join(tmp, 'audio-int8.onnx.data')) / 1e6:.0f} MB")
        quantize_int8(os.path.join(tmp, "audio.onnx"), os.path.join(tmp, "audio-qint8.onnx"), "QInt8")

        class Tower(LightQwen3AsrModel):  # the window loop of the light model over one ONNX file
            def __init__(self, file):
                self.encoder = OnnxAudioEncoder(file, args.threads)
                self.chunk_frames, self.window_frames = 2 * int(audio.n_window), int(self.encoder.metadata["window_frames"])

        files = {"onnx fp32": "audio.onnx", "int8 QUInt8": "audio-int8.onnx", "int8 QInt8": "audio-qint8.onnx"}
        towers = {name: Tower(os.path.join(tmp, file)) for name, file in files.items()}
        print("\n| clip | positions | max |x| (std) | largest Linear | " + " | ".join(files) +
              " | numpy log-mel + onnx fp32 | torch s | " + " s | ".join(files) + " s |")
        print("|---" * (6 + 2 * len(files)) + "|")
        for name, wave in waves.items():
            features, mask = frontend(wave)
            real = features[0, :, :int(mask.sum())].numpy()
            expected = torch_tower(features, mask)
            assert expected.shape[0] == num_audio_tokens(real.shape[1], int(audio.n_window))
            largest = [0.0]
            hooks = [m.register_forward_hook(lambda m, i, o: largest.__setitem__(0, max(largest[0], float(o.abs().max()))))
                     for m in list(tower.modules()) + list(projector.modules()) if isinstance(m, torch.nn.Linear)]
            torch_tower(features, mask)
            for hook in hooks:
                hook.remove()
            scale = float(np.abs(expected).max())
            errors = []
            for tower_onnx in towers.values():
                error = float(np.abs(tower_onnx.encode(real) - expected).max())
                errors.append(f"{error:.2g} / {error / scale:.2g}")
            end = float(np.abs(towers["onnx fp32"].encode(numpy_frontend(wave)) - expected).max())
            times = [best(lambda: torch_tower(features, mask), args.repeats)]
            times += [best(lambda t=t: t.encode(real), args.repeats) for t in towers.values()]
            print(f"| {name} ({wave.size / 16000:.1f} s) | {expected.shape[0]} | {scale:.3g} ({expected.std():.3g}) | "
                  f"{largest[0]:.3g} | " + " | ".join(errors) + f" | {end:.2g} / {end / scale:.2g} | "
                  + " | ".join(f"{t:.3f}" for t in times) + " |")


if __name__ == "__main__":
    main()
