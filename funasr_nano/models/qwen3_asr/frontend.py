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

Two implementations of the same features: :class:`Frontend` runs transformers' feature extractor (the torch
path, the reference); :class:`LogMelFrontend` computes them in numpy for the light runtime (no torch, no
transformers), equal to the extractor's to float32 rounding (``tests/test_qwen3_asr_light.py``). No
well-kept non-torch library gives Whisper's log-mel as it is: kaldi-native-fbank's ``OnlineWhisperFbank``
frames the audio the Kaldi way (Povey window, pre-emphasis, no centred reflect padding), librosa would
bring numba and scipy for one STFT.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ...audio.io import SAMPLE_RATE
from ...errors import CheckpointError

if TYPE_CHECKING:
    import torch

# Whisper's log-mel (``WhisperFeatureExtractor``): mel bands up to this frequency, power floor before log10,
# dynamic range kept below the clip's maximum (log10 units), then ``(x + OFFSET) / SCALE``
MEL_MAX_HZ = 8000.0
POWER_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0
LOG_OFFSET = 4.0
LOG_SCALE = 4.0


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


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (Auditory Toolbox; librosa's default, ``htk=False``): linear below 1 kHz
    (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = 200.0 * mel / 3.0
    log = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log, linear)


def mel_filter_bank(n_fft: int = 400, n_mels: int = 128, sampling_rate: int = SAMPLE_RATE,
                    max_hz: float = MEL_MAX_HZ) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)`` float64 triangular filters on Slaney's mel scale from 0 Hz to ``max_hz``,
    each divided by its width in Hz / 2 (Slaney's area normalisation): Whisper's filters
    (``librosa.filters.mel(sr, n_fft, n_mels)``, transformers' ``mel_filter_bank(norm="slaney",
    mel_scale="slaney")``)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(max_hz), n_mels + 2))
    bins = np.linspace(0, sampling_rate // 2, n_fft // 2 + 1)
    width = np.diff(edges)
    offset = edges[None, :] - bins[:, None]  # (bins, n_mels + 2)
    rising = -offset[:, :-2] / width[:-1]
    falling = offset[:, 2:] / width[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


class LogMelFrontend:
    """Whisper-style log-mel in numpy: the features of :class:`Frontend` without torch or transformers.

    A centred STFT (the signal reflect-padded by ``n_fft // 2`` on both sides, a periodic Hann window of
    ``n_fft`` samples, one frame per ``hop_length``), power spectrum, :func:`mel_filter_bank`, ``log10`` of
    the power floored at 1e-10, floored again at the clip's maximum minus 8, then ``(x + 4) / 4``; the last
    STFT frame is dropped (``samples // hop_length`` frames), as ``WhisperFeatureExtractor`` and
    ``Qwen3ASRFeatureExtractor`` compute them in float32. Holds no per-call state (safe across threads).
    """

    def __init__(self, config: FrontendConfig = FrontendConfig()):
        self.config = config
        n = np.arange(config.n_fft)
        self._window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.n_fft)).astype(np.float32)
        self._filters = mel_filter_bank(config.n_fft, config.feature_size).astype(np.float32).T.copy()

    def num_frames(self, samples: int) -> int:
        """Mel frames of ``samples`` 16 kHz samples (as :meth:`Frontend.num_frames`)."""
        return samples // self.config.hop_length

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """``(samples,)`` 16 kHz audio -> ``(feature_size, frames)`` float32 log-mel, ``frames`` =
        :meth:`num_frames` (no padding; the peak normalised first, :func:`normalize_peak`)."""
        config = self.config
        signal = normalize_peak(waveform)
        pad = config.n_fft // 2
        padded = np.pad(signal, pad, mode="reflect") if signal.size > 1 else np.pad(signal, pad)
        frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[::config.hop_length]
        frames = frames[: self.num_frames(signal.size)]  # the last, partial frame dropped
        spectrum = np.fft.rfft(frames * self._window, axis=-1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        mel = self._filters @ power.T  # (feature_size, frames)
        log = np.log10(np.maximum(mel, POWER_FLOOR))
        if log.size:
            log = np.maximum(log, log.max() - DYNAMIC_RANGE)
        return ((log + LOG_OFFSET) / LOG_SCALE).astype(np.float32)
