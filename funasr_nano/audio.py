"""Audio input: any file, bytes or array -> 16 kHz mono float32 samples.

Files are decoded with libsndfile (``soundfile``: wav, flac, ogg/vorbis, opus, mp3) and, for containers
libsndfile does not read (m4a/aac, webm, mp4, ...), with FFmpeg through ``av``. Resampling uses ``soxr``
(VHQ). Channels are averaged to mono.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Union

import numpy as np
import soundfile
import soxr

from .errors import AudioDecodeError, AudioTooShortError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz; the frontend and every released checkpoint use 16 kHz
MIN_DURATION = 0.1  # seconds; shorter input gives too few LFR frames to transcribe

AudioInput = Union[str, os.PathLike, bytes, bytearray, np.ndarray]


def describe_source(source: AudioInput) -> str:
    """A short name for ``source`` to put in log lines and error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{type(source).__name__}>"


def _decode_soundfile(data: Union[str, io.BytesIO]) -> tuple[np.ndarray, int]:
    samples, sample_rate = soundfile.read(data, dtype="float32", always_2d=True)
    return samples, sample_rate  # (frames, channels)


def _decode_av(data: Union[str, io.BytesIO]) -> tuple[np.ndarray, int]:
    import av  # imported lazily: only needed for containers libsndfile cannot read

    with av.open(data, mode="r") as container:
        if not container.streams.audio:
            raise AudioDecodeError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=None, rate=None)
        chunks = []
        sample_rate = None
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                sample_rate = out.sample_rate
                chunks.append(out.to_ndarray())  # (channels, frames) float32
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks or sample_rate is None:
        return np.zeros((0, 1), dtype=np.float32), SAMPLE_RATE
    return np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False), sample_rate


def _decode(source: Union[str, os.PathLike, bytes, bytearray]) -> tuple[np.ndarray, int]:
    name = describe_source(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise AudioDecodeError(f"{name}: no such file")
        opener = lambda: path  # noqa: E731 - both decoders accept a path
    else:
        payload = bytes(source)
        opener = lambda: io.BytesIO(payload)  # noqa: E731
    errors = []
    for decoder in (_decode_soundfile, _decode_av):
        try:
            return decoder(opener())
        except AudioDecodeError as error:
            errors.append(f"{decoder.__name__[8:]}: {error}")
        except Exception as error:  # decoder libraries raise many types for bad data
            errors.append(f"{decoder.__name__[8:]}: {error}")
    raise AudioDecodeError(f"{name}: cannot decode audio ({'; '.join(errors)})")


def load_audio(source: AudioInput, *, sample_rate: int | None = None) -> np.ndarray:
    """Read ``source`` and return 16 kHz mono float32 samples in [-1, 1].

    Args:
        source: a path (wav, flac, mp3, ogg, opus, m4a, webm, ...), the bytes of such a file, or a numpy
            array of samples shaped ``(samples,)`` or ``(samples, channels)``. Integer arrays are scaled
            by their type's range; float arrays are taken as already in [-1, 1].
        sample_rate: the sample rate of an array ``source`` in Hz (default 16000). Ignored for files and
            bytes, whose header says it.

    Returns:
        ``(samples,)`` float32 at 16 kHz.

    Raises:
        AudioDecodeError: the file is missing, corrupt or in an unsupported format (the message names it).
        AudioTooShortError: the audio is empty or shorter than 0.1 s.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        samples = source
        if samples.ndim == 1:
            samples = samples[:, None]
        elif samples.ndim != 2:
            raise AudioDecodeError(f"{name}: expected (samples,) or (samples, channels), got {samples.shape}")
        if np.issubdtype(samples.dtype, np.integer):
            samples = samples.astype(np.float32) / float(np.iinfo(source.dtype).max + 1)
        rate = SAMPLE_RATE if sample_rate is None else int(sample_rate)
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)):
        samples, rate = _decode(source)
    else:
        raise TypeError(f"audio must be a path, bytes or a numpy array, not {type(source).__name__}")

    samples = np.asarray(samples, dtype=np.float32)
    if not np.all(np.isfinite(samples)):
        raise AudioDecodeError(f"{name}: audio contains NaN or infinite samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE and mono.size:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="VHQ").astype(np.float32, copy=False)
    duration = mono.size / SAMPLE_RATE
    if duration < MIN_DURATION:
        raise AudioTooShortError(
            f"{name}: audio is {duration:.3f} s long; at least {MIN_DURATION} s is needed"
        )
    return np.ascontiguousarray(mono)
