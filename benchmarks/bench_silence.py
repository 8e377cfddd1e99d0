"""The silence gate's measure on real and synthetic audio: silero-vad's ``no_speech_prob``
(1 - the highest speech probability of a 32 ms window, what the gate uses without a CTC head).

Inputs: the four real recordings of tests/data/audio (speech), espeak-ng speech (3 sentences), 30 s of
digital silence, of white noise at -20 and -40 dBFS, of pink and brown noise (sox ``synth``), and of
a 440 Hz tone; prints ``no_speech_prob`` and whether the default threshold (0.5) lets it through.

Usage:  python benchmarks/bench_silence.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np


def sox_noise(kind: str, seconds: float, gain_db: float) -> np.ndarray:
    import soundfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "noise.wav")
        subprocess.run(["sox", "-R", "-n", "-r", "16000", "-c", "1", "-b", "16", path, "synth", str(seconds), kind,
                        "gain", str(gain_db)], check=True)
        return soundfile.read(path, dtype="float32")[0]


def main() -> None:
    import soundfile

    from funasr_nano.audio.vad import speech_probabilities
    from funasr_nano.training.synth import synthesize_one

    root = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "audio")
    inputs = {name: soundfile.read(os.path.join(root, name), dtype="float32")[0] for name in sorted(os.listdir(root))}
    with tempfile.TemporaryDirectory() as folder:
        for number, sentence in enumerate(["今天天气很好。", "我们明天去北京。", "请把门关上。"]):
            path = os.path.join(folder, f"{number}.wav")
            synthesize_one(sentence, path, "cmn", 160, 50)
            inputs[f"espeak-ng: {sentence}"] = soundfile.read(path, dtype="float32")[0]
    rng = np.random.default_rng(0)
    inputs["silence, 30 s"] = np.zeros(30 * 16000, np.float32)
    inputs["white noise -20 dBFS, 30 s"] = (0.1 * rng.standard_normal(30 * 16000)).astype(np.float32)
    inputs["white noise -40 dBFS, 30 s"] = (0.01 * rng.standard_normal(30 * 16000)).astype(np.float32)
    inputs["pink noise (sox), 30 s"] = sox_noise("pinknoise", 30, -10)
    inputs["brown noise (sox), 30 s"] = sox_noise("brownnoise", 30, -10)
    inputs["440 Hz tone, 30 s"] = (0.3 * np.sin(2 * np.pi * 440 * np.arange(30 * 16000) / 16000)).astype(np.float32)
    print("| input | no_speech_prob (silero) | gate at 0.5 |")
    print("|---|---|---|")
    for name, waveform in inputs.items():
        probs = speech_probabilities(waveform)
        value = float(1.0 - probs.max())
        print(f"| {name} | {value:.3f} | {'dropped' if value > 0.5 else 'kept'} |")


if __name__ == "__main__":
    main()
