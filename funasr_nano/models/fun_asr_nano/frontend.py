"""Frontend: waveform -> Kaldi fbank -> LFR-stacked features, as FunASR's ``WavFrontend`` computes them.

Reproduces ``funasr/frontends/wav_frontend.py`` (``WavFrontend.forward`` + ``apply_lfr``) for the
Fun-ASR-Nano configuration: 80 mel bins, 25 ms Hamming window, 10 ms shift, waveform scaled to 16-bit
range, no CMVN, then low frame rate (LFR) stacking of ``lfr_m`` = 7 frames every ``lfr_n`` = 6 frames,
so each output frame covers 60 ms and has 7 x 80 = 560 values. Fbank uses kaldi-native-fbank.
"""

from __future__ import annotations

import dataclasses

from typing import TYPE_CHECKING

import kaldi_native_fbank as knf
import numpy as np

from ...audio.io import SAMPLE_RATE

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """Feature extraction settings (the ``frontend_conf`` of an official ``config.yaml``)."""

    sample_rate: int = SAMPLE_RATE
    n_mels: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "hamming"
    lfr_m: int = 7  # frames stacked into one LFR frame
    lfr_n: int = 6  # hop between LFR frames, in fbank frames (6 x 10 ms = 60 ms)
    # FunASR's WavFrontend defaults to dither=1.0, which adds random noise; inference here is
    # deterministic, so dither is 0 unless a caller asks for it (training augmentation).
    dither: float = 0.0

    def __post_init__(self):
        if self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"only {SAMPLE_RATE} Hz frontends are supported, got {self.sample_rate}")
        if self.lfr_m < 1 or self.lfr_n < 1:
            raise ValueError(f"lfr_m and lfr_n must be >= 1, got {self.lfr_m}, {self.lfr_n}")

    @property
    def feature_dim(self) -> int:
        """Values per LFR frame: ``n_mels * lfr_m`` (560 for Fun-ASR-Nano)."""
        return self.n_mels * self.lfr_m

    @property
    def seconds_per_frame(self) -> float:
        """Duration of one LFR frame in seconds (0.06 for Fun-ASR-Nano)."""
        return self.frame_shift_ms * self.lfr_n / 1000.0


def compute_fbank(waveform: np.ndarray, config: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """Kaldi-compatible log-mel filterbank.

    Args:
        waveform: ``(samples,)`` float32 in [-1, 1] at 16 kHz; scaled by 32768 before analysis as
            FunASR's ``WavFrontend`` does (``upsacle_samples=True``).

    Returns:
        ``(frames, n_mels)`` float32, one frame every 10 ms (``snip_edges``: frames = 1 + (N - 400) // 160).
    """
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(config.sample_rate)
    opts.frame_opts.frame_length_ms = float(config.frame_length_ms)
    opts.frame_opts.frame_shift_ms = float(config.frame_shift_ms)
    opts.frame_opts.dither = float(config.dither)
    opts.frame_opts.window_type = config.window
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = config.n_mels
    opts.energy_floor = 0.0
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(float(config.sample_rate), (np.asarray(waveform, np.float32) * 32768.0).tolist())
    fbank.input_finished()
    frames = fbank.num_frames_ready
    if frames == 0:
        return np.zeros((0, config.n_mels), dtype=np.float32)
    return np.stack([fbank.get_frame(i) for i in range(frames)]).astype(np.float32, copy=False)


def apply_lfr(fbank: np.ndarray, lfr_m: int = 7, lfr_n: int = 6) -> np.ndarray:
    """Low frame rate stacking, as FunASR's ``apply_lfr``.

    The sequence is padded on the left with ``(lfr_m - 1) // 2`` copies of the first frame and on the
    right with copies of the last frame; output frame ``i`` concatenates padded frames
    ``i * lfr_n ... i * lfr_n + lfr_m - 1``.

    Args:
        fbank: ``(frames, n_mels)``.

    Returns:
        ``(ceil(frames / lfr_n), n_mels * lfr_m)`` float32.
    """
    frames = fbank.shape[0]
    if frames == 0:
        return np.zeros((0, fbank.shape[1] * lfr_m), dtype=np.float32)
    out_frames = -(-frames // lfr_n)
    left = (lfr_m - 1) // 2
    needed = (out_frames - 1) * lfr_n + lfr_m  # padded rows the last output frame reads
    right = max(0, needed - left - frames)
    padded = np.concatenate([np.repeat(fbank[:1], left, 0), fbank, np.repeat(fbank[-1:], right, 0)])
    index = np.arange(out_frames)[:, None] * lfr_n + np.arange(lfr_m)[None, :]  # (out_frames, lfr_m)
    return padded[index].reshape(out_frames, -1).astype(np.float32, copy=False)


class Frontend:
    """Callable feature extractor: ``(samples,)`` 16 kHz waveform -> ``(frames, 560)`` LFR features.

    Stateless and thread-safe.
    """

    def __init__(self, config: FrontendConfig = FrontendConfig()):
        self.config = config

    def __call__(self, waveform: np.ndarray) -> "torch.Tensor":
        """Returns ``(frames, n_mels * lfr_m)`` float32, 60 ms per frame for the default config."""
        import torch

        return torch.from_numpy(self.features(waveform))

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """As :meth:`__call__`, as a numpy array (the light runtime, without torch)."""
        fbank = compute_fbank(waveform, self.config)
        return apply_lfr(fbank, self.config.lfr_m, self.config.lfr_n)

    def num_frames(self, num_samples: int) -> int:
        """Number of LFR frames for a waveform of ``num_samples`` samples."""
        window = int(self.config.sample_rate * self.config.frame_length_ms / 1000)
        shift = int(self.config.sample_rate * self.config.frame_shift_ms / 1000)
        fbank_frames = 0 if num_samples < window else 1 + (num_samples - window) // shift
        return -(-fbank_frames // self.config.lfr_n)
