"""Frontend: waveform -> Whisper-style 128-bin log-mel features, as the reference package computes them.

The reference (``qwen-asr`` 0.0.6, ``Qwen3ASRProcessor``) runs transformers' ``WhisperFeatureExtractor``
with the checkpoint's ``preprocessor_config.json`` (400-sample Hann window, 160-sample hop, 128 Slaney mel
bins, ``log10``, clamped 8 below the clip's maximum, ``(x + 4) / 4``) on each clip padded to the longest
of its batch, one frame per 10 ms (``samples // 160`` frames). transformers' ``Qwen3ASRFeatureExtractor``
computes the same features; it also right-pads the frames to a multiple of the encoder chunk
(``2 * n_window`` frames) with a mask, which its encoder needs. Two settings differ from its defaults, to
stay with the reference: ``min_length=0`` (qwen-asr 0.0.6 does not zero-pad clips shorter than 0.5 s) and
no padding to 30 s.

Before analysis, audio whose peak exceeds 1 is divided by its peak, as the reference's
``float_range_normalize`` (``qwen_asr/inference/utils.py``) does; audio in [-1, 1] is unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch

from ...audio.io import SAMPLE_RATE
from ...errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """Feature settings (``preprocessor_config.json``) plus the encoder's chunk size."""

    feature_size: int = 128  # mel bins
    n_fft: int = 400  # 25 ms window
    hop_length: int = 160  # 10 ms per frame
    n_window: int = 50  # the encoder takes chunks of 2 * n_window frames

    @classmethod
    def from_checkpoint(cls, config: Mapping[str, Any], n_window: int) -> "FrontendConfig":
        """From a parsed ``preprocessor_config.json`` (or a processor's feature extractor settings).

        Raises:
            CheckpointError: a sampling rate other than 16 kHz.
        """
        rate = int(config.get("sampling_rate", SAMPLE_RATE))
        if rate != SAMPLE_RATE:
            raise CheckpointError(f"preprocessor_config.json: sampling_rate {rate}; only {SAMPLE_RATE} Hz is supported")
        return cls(feature_size=int(config.get("feature_size", 128)), n_fft=int(config.get("n_fft", 400)),
                   hop_length=int(config.get("hop_length", 160)), n_window=n_window)


def normalize_peak(waveform: np.ndarray) -> np.ndarray:
    """``waveform`` divided by its peak when the peak exceeds 1, then clipped to [-1, 1] (the
    reference's ``float_range_normalize``); float32."""
    waveform = np.asarray(waveform, dtype=np.float32)
    peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
    if peak > 1.0:
        waveform = np.clip(waveform / peak, -1.0, 1.0)
    return waveform


class Frontend:
    """Log-mel features for the Qwen3-ASR encoder. Holds no per-call state (safe across threads)."""

    def __init__(self, config: FrontendConfig = FrontendConfig()):
        from transformers import Qwen3ASRFeatureExtractor

        self.config = config
        self._extractor = Qwen3ASRFeatureExtractor(
            feature_size=config.feature_size, sampling_rate=SAMPLE_RATE, hop_length=config.hop_length,
            n_fft=config.n_fft, n_window=config.n_window, min_length=0, dither=0.0)

    def num_frames(self, samples: int) -> int:
        """Mel frames of ``samples`` 16 kHz samples: one per hop (the last, partial STFT frame dropped)."""
        return samples // self.config.hop_length

    def __call__(self, waveform: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(samples,)`` 16 kHz audio -> ``(features, mask)``.

        Returns:
            features: ``(1, feature_size, padded_frames)`` float32 log-mel, right-padded with zeros to a
                multiple of ``2 * n_window`` frames; mask: ``(1, padded_frames)`` int, 1 on the
                :meth:`num_frames` real frames.
        """
        out = self._extractor(normalize_peak(waveform), sampling_rate=SAMPLE_RATE, padding="longest",
                              return_attention_mask=True, return_tensors="pt")
        return out["input_features"].float(), out["attention_mask"]
