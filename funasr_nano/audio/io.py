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

from ..errors import AudioDecodeError, AudioTooShortError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz; the frontend and every released checkpoint use 16 kHz
MIN_DURATION = 0.1  # seconds; shorter input gives too few LFR frames to transcribe
MAX_DURATION = 30.0  # seconds decoded in one piece by default; Fun-ASR-Nano loops on longer input (use VAD)

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


# -- streaming reads (long audio) ------------------------------------------------------------------

BLOCK_DURATION = 10.0  # seconds per block when reading long audio; bounds memory, not results


def probe_duration(source: AudioInput, *, sample_rate: int | None = None) -> float | None:
    """The duration of ``source`` in seconds without decoding it, or ``None`` when the header does not
    say (some FFmpeg containers). Arrays: ``samples / sample_rate``.

    Raises:
        AudioDecodeError: a path that does not exist.
    """
    if isinstance(source, np.ndarray):
        return source.shape[0] / (SAMPLE_RATE if sample_rate is None else int(sample_rate))
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(os.fspath(source)):
        raise AudioDecodeError(f"{describe_source(source)}: no such file")
    opener = _opener(source)
    try:
        info = soundfile.info(opener())
        return info.frames / info.samplerate
    except Exception:  # not a libsndfile format: ask FFmpeg for the container's duration
        pass
    try:
        import av

        with av.open(opener(), mode="r") as container:
            if container.duration is not None:
                return container.duration / av.time_base
            stream = container.streams.audio[0] if container.streams.audio else None
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception:
        pass
    return None


def _opener(source: Union[str, os.PathLike, bytes, bytearray]):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return lambda: path
    payload = bytes(source)
    return lambda: io.BytesIO(payload)


def _mono_blocks_soundfile(handle: soundfile.SoundFile, block_frames: int):
    while True:
        block = handle.read(block_frames, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            return
        yield block


def _mono_blocks_av(data, block_duration: float):
    import av

    with av.open(data, mode="r") as container:
        if not container.streams.audio:
            raise AudioDecodeError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=None, rate=None)
        pending, pending_frames = [], 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                pending.append((out.to_ndarray().T, out.sample_rate))
                pending_frames += out.samples
            if pending and pending_frames >= block_duration * pending[0][1]:
                yield np.concatenate([p for p, _ in pending]), pending[0][1]
                pending, pending_frames = [], 0
        for out in resampler.resample(None):
            pending.append((out.to_ndarray().T, out.sample_rate))
        if pending:
            yield np.concatenate([p for p, _ in pending]), pending[0][1]


def iter_audio(source: AudioInput, *, sample_rate: int | None = None,
               block_duration: float = BLOCK_DURATION):
    """Read ``source`` as consecutive blocks of 16 kHz mono float32 samples, without decoding it whole.

    Files libsndfile reads (wav, flac, ogg, mp3, ...) are read ``block_duration`` seconds at a time;
    FFmpeg containers are decoded packet by packet; resampling to 16 kHz is a ``soxr.ResampleStream``
    (VHQ, as :func:`load_audio`). Memory is bounded by one block. An array ``source`` is normalised
    with :func:`load_audio` (it is in memory already) and sliced.

    Yields:
        ``(samples,)`` float32 arrays at 16 kHz whose concatenation is the whole audio (the last block
        may be short; blocks may be empty).

    Raises:
        AudioDecodeError: missing, corrupt or unsupported audio, or NaN/inf samples (possibly after some
            blocks were yielded, for a file corrupt in the middle).
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        samples = load_audio(source, sample_rate=sample_rate)
        step = int(block_duration * SAMPLE_RATE)
        for begin in range(0, samples.size, step):
            yield samples[begin : begin + step]
        return
    if not isinstance(source, (str, os.PathLike, bytes, bytearray)):
        raise TypeError(f"audio must be a path, bytes or a numpy array, not {type(source).__name__}")
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(os.fspath(source)):
        raise AudioDecodeError(f"{name}: no such file")
    opener = _opener(source)
    try:
        handle = soundfile.SoundFile(opener())
    except Exception as sf_error:
        handle = None
        blocks = _mono_blocks_av(opener(), block_duration)
        first_error = sf_error
    else:
        rate = handle.samplerate
        blocks = ((block, rate) for block in _mono_blocks_soundfile(handle, max(1, int(block_duration * rate))))
        first_error = None
    resampler, rate_seen = None, None
    try:
        for block, rate in blocks:
            if not np.all(np.isfinite(block)):
                raise AudioDecodeError(f"{name}: audio contains NaN or infinite samples")
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            mono = np.ascontiguousarray(mono, dtype=np.float32)
            if rate_seen is None:
                rate_seen = rate
                if rate != SAMPLE_RATE:
                    resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="VHQ")
            if resampler is not None:
                mono = resampler.resample_chunk(mono)
            yield mono
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    except AudioDecodeError as error:
        raise AudioDecodeError(f"{name}: {error}" if not str(error).startswith(name) else str(error)) from None
    except Exception as error:  # decoder libraries raise many types for bad data
        detail = f"soundfile: {first_error}; av: {error}" if first_error is not None else str(error)
        raise AudioDecodeError(f"{name}: cannot decode audio ({detail})") from None
    finally:
        if handle is not None:
            handle.close()


def check_sample_rate(rate, name: str) -> int:  # replaced by the audio hardening branch
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or rate != int(rate):
        raise ValueError(f"{name}: sample rate must be a positive integer, got {rate!r}")
    return int(rate)


def to_mono(samples: np.ndarray, name: str) -> np.ndarray:  # replaced by the audio hardening branch
    if samples.ndim == 2:
        samples = samples.mean(axis=1) if np.issubdtype(samples.dtype, np.floating) else samples[:, 0]
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    samples = samples.astype(np.float32, copy=False).reshape(-1)
    if not np.all(np.isfinite(samples)):
        raise AudioDecodeError(f"{name}: audio contains NaN or infinite samples")
    return samples
