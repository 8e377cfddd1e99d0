"""Audio input: any file, bytes or array -> 16 kHz mono float32 samples.

Files are decoded with libsndfile (``soundfile``: wav, flac, ogg/vorbis, opus, mp3) and, for containers
libsndfile does not read (m4a/aac, webm, mp4, ...) or cannot read to the end (a FLAC written by a streaming
encoder, whose header does not give its length), with FFmpeg through ``av``. Resampling uses ``soxr``
(VHQ). Channels are averaged to mono.

Every input passes the same checks, whatever its origin: samples in memory through :func:`to_mono`
(dtype, shape, NaN/inf, absurd float peaks) and sample rates, given or read from a header, through
:func:`check_sample_rate` (bounded, so that a small file cannot be resampled into hours of audio).
"""

from __future__ import annotations

import io
import logging
import math
import numbers
import os
from typing import Iterator, Union

import numpy as np
import soundfile
import soxr

from ..errors import AudioDecodeError, AudioTooShortError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz; the frontend and every released checkpoint use 16 kHz
MIN_DURATION = 0.1  # seconds; shorter input gives too few LFR frames to transcribe

# Sample rates accepted, given by the caller or read from a header. 8 kHz telephone audio is the lowest rate
# in real use; below 1 kHz a header is corrupt or hostile, and resampling it to 16 kHz would multiply a
# small input more than 16-fold (a 32 KB WAV claiming 1 Hz becomes 4.5 hours and 1 GB of samples).
# 768 kHz is the highest rate audio interfaces record (DXD and beyond).
MIN_SAMPLE_RATE = 1000  # Hz
MAX_SAMPLE_RATE = 768000  # Hz

# Float samples should lie in [-1, 1]; resampling and mixing overshoot by a little (1.5 is fine). Peaks
# beyond 1e3 (60 dB over full scale) are never real audio: integer PCM stored as float (up to 32768), or
# garbage such as a float WAV of ~3e38, which the frontend (x 32768) turns into inf/NaN fbank energies.
MAX_FLOAT_PEAK = 1e3

# A (samples, channels) array with more columns than this is almost surely (channels, samples).
MAX_CHANNELS = 32

AudioInput = Union[str, os.PathLike, bytes, bytearray, np.ndarray]

_UNKNOWN_FRAMES = 2**62  # libsndfile reports SF_COUNT_MAX frames when the header does not give the length
_MAX_BLOCK_VALUES = 2**24  # samples x channels read at once by iter_audio (64 MB of float32), whatever the header


def check_audio_path(path: Union[str, os.PathLike], name: str) -> None:
    """Refuse a path that is not a regular file, saying what it is.

    Raises:
        AudioDecodeError: no such file; a directory; a FIFO, socket or device (``/dev/null``), which
            cannot be decoded as a file (its length is unknown, or it is always empty).
    """
    import stat

    try:
        mode = os.stat(os.fspath(path)).st_mode
    except FileNotFoundError:
        raise AudioDecodeError(f"{name}: no such file") from None
    except OSError as error:
        raise AudioDecodeError(f"{name}: cannot read it ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise AudioDecodeError(f"{name}: is a directory, not an audio file")
    if not stat.S_ISREG(mode):
        what = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise AudioDecodeError(f"{name}: is {what}, not an audio file")


def describe_source(source: AudioInput) -> str:
    """A short, printable name for ``source`` to put in log lines and error messages.

    Paths are given as they are, except for bytes that are not valid UTF-8 (a ``bytes`` path, or a
    ``str`` path holding surrogate escapes such as ``os.fsdecode(b"caf\\xe9.wav")``), which are written
    as ``\\xe9`` escapes so that the name can be written to any UTF-8 stream.
    """
    if isinstance(source, (str, os.PathLike)):
        return printable(os.fspath(source))
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{type(source).__name__}>"


def printable(text: Union[str, bytes]) -> str:
    """``text`` (a file name, or a message holding one) with the bytes that are not valid UTF-8 written as
    ``\\xe9`` escapes: a ``bytes`` name, or a ``str`` holding surrogate escapes as Python decodes such a
    name (``os.fsdecode(b"caf\\xe9.wav")``). Safe to write to any UTF-8 stream and to put in JSON."""
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # surrogate escapes stand for the undecodable bytes of the file name: show those bytes
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:  # other lone surrogates
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# -- checks shared by every entry point ------------------------------------------------------------


def check_sample_rate(rate: object, name: str) -> int:
    """Check a sample rate given for ``name`` (an input's :func:`describe_source`) and return it as int.

    Args:
        rate: samples per second (Hz): an integer, or a float with an integer value (``44100.0``).
        name: the input the rate belongs to, for the error message.

    Returns:
        the rate in Hz, ``MIN_SAMPLE_RATE`` (1000) <= rate <= ``MAX_SAMPLE_RATE`` (768000).

    Raises:
        TypeError: ``rate`` is not a number.
        ValueError: ``rate`` is zero, negative, inf, NaN, not a whole number or outside the bounds (the
            message names ``name`` and the value).
    """
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name}: sample_rate must be a number of Hz, not {type(rate).__name__} {rate!r}")
    if not isinstance(rate, numbers.Integral):
        value = float(rate)
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{name}: sample_rate must be a whole number of Hz, got {rate!r}")
    value = int(rate)
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"{name}: sample_rate {rate!r} Hz is out of range; "
            f"rates from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz are supported"
        )
    return value


def _check_header_rate(rate: object, name: str) -> int:
    """:func:`check_sample_rate` for a rate read from a file: a bad one makes the file undecodable."""
    try:
        return check_sample_rate(rate, name)
    except (TypeError, ValueError):
        raise AudioDecodeError(
            f"{name}: the header says the sample rate is {rate} Hz; "
            f"rates from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz are supported"
        ) from None


def _check_layout(samples: np.ndarray, name: str, max_channels: int | None) -> None:
    """dtype and shape checks of an array of samples (no pass over the data)."""
    if samples.dtype.kind not in "iuf":
        raise AudioDecodeError(
            f"{name}: samples of dtype {samples.dtype} are not audio; "
            "expected integer PCM or float samples in [-1, 1]"
        )
    if samples.ndim not in (1, 2):
        raise AudioDecodeError(f"{name}: expected (samples,) or (samples, channels), got {samples.shape}")
    if samples.ndim == 2:
        channels = samples.shape[1]
        if channels == 0:
            raise AudioDecodeError(f"{name}: the array has no channels (shape {samples.shape})")
        if max_channels is not None and channels > max_channels:
            raise AudioDecodeError(
                f"{name}: {channels} channels is more than {max_channels}; arrays are (samples, channels), "
                f"is this one (channels, samples)? Pass its transpose (array.T)"
            )


def to_mono(samples: np.ndarray, name: str) -> np.ndarray:
    """Samples in memory -> mono float32, checked: the conversion every entry point uses.

    Args:
        samples: ``(n,)`` or ``(n, channels)`` with at most ``MAX_CHANNELS`` (32) channels. Signed integer
            PCM is scaled by its type's range (int16 / 32768); unsigned PCM (e.g. 8-bit WAV) is centred
            on its midpoint first (uint8: (x - 128) / 128). Float samples are taken as they are (they
            should lie in [-1, 1]; peaks up to ``MAX_FLOAT_PEAK`` are accepted). ``n`` may be 0.
        name: the input, for error messages (see :func:`describe_source`).

    Returns:
        ``(n,)`` float32, the channels averaged; the sample rate is unchanged. A stereo ``(n, 2)``
        chunk gives ``n`` samples.

    Raises:
        TypeError: ``samples`` is not a numpy array.
        AudioDecodeError: a dtype that is not audio (bool, complex, object, strings, ...), not 1-d or
            2-d, no channels or more than 32, NaN or infinite samples, or a float peak above 1e3.
    """
    return _to_mono(samples, name, max_channels=MAX_CHANNELS)


def _to_mono(samples: np.ndarray, name: str, max_channels: int | None) -> np.ndarray:
    # max_channels=None for decoded files: their header says how many channels there are.
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"{name}: samples must be a numpy array, not {type(samples).__name__}")
    _check_layout(samples, name, max_channels)
    if samples.ndim == 1:
        samples = samples[:, None]
    kind = samples.dtype.kind
    if kind in "iu":
        info = np.iinfo(samples.dtype)
        scale = float(info.max) + 1.0 if kind == "i" else (float(info.max) + 1.0) / 2
        samples = samples.astype(np.float32)
        if kind == "u":
            samples -= np.float32(scale)
        samples /= np.float32(scale)
    elif samples.size:
        high, low = samples.max(), samples.min()  # two passes, no temporary copy; both propagate NaN
        if not (np.isfinite(high) and np.isfinite(low)):
            raise AudioDecodeError(f"{name}: audio contains NaN or infinite samples")
        peak = max(float(high), -float(low))
        if peak > MAX_FLOAT_PEAK:
            raise AudioDecodeError(
                f"{name}: float samples peak at {peak:.3g}, more than {MAX_FLOAT_PEAK:g}; float audio "
                "must lie in [-1, 1] (integer PCM stored as float must be divided by 32768)"
            )
    samples = samples.astype(np.float32, copy=False)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono)


def _check_block_duration(block_duration: float) -> None:
    if not (isinstance(block_duration, numbers.Real) and math.isfinite(block_duration) and block_duration > 0):
        raise ValueError(f"block_duration must be a positive number of seconds, got {block_duration!r}")


# -- whole files -------------------------------------------------------------------------------------


class _CannotRead(Exception):
    """libsndfile opened the data but cannot read it (e.g. the length is unknown): try FFmpeg."""


def _soundfile_input(source: Union[str, os.PathLike, bytes, bytearray]):
    """What soundfile opens: a bytes path (any file name, UTF-8 or not), or a file object."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return path if os.name == "nt" else os.fsencode(path)  # soundfile encodes str paths strictly
    return io.BytesIO(bytes(source))


def _av_input(source: Union[str, os.PathLike, bytes, bytearray]):
    """What av opens: a str path (av refuses bytes paths; surrogate escapes work), or a file object."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(os.fspath(source))
    return io.BytesIO(bytes(source))


def _length_known(frames: int) -> bool:
    return 0 <= frames < _UNKNOWN_FRAMES


def _decode_soundfile(data, name: str) -> tuple[np.ndarray, int]:
    with soundfile.SoundFile(data) as handle:
        rate = _check_header_rate(handle.samplerate, name)
        if not _length_known(handle.frames):
            raise _CannotRead("the header does not give the length (a FLAC written by a streaming encoder?)")
        samples = handle.read(dtype="float32", always_2d=True)
    return samples, rate  # (frames, channels)


def _decode_av(data, name: str) -> tuple[np.ndarray, int]:
    import av  # imported lazily: only needed for containers libsndfile cannot read

    with av.open(data, mode="r") as container:
        if not container.streams.audio:
            raise _CannotRead("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=None, rate=None)
        chunks = []
        sample_rate = None
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                if sample_rate is None:
                    sample_rate = _check_header_rate(out.sample_rate, name)
                chunks.append(out.to_ndarray())  # (channels, frames) float32
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks or sample_rate is None:  # FFmpeg guessed a format but found no audio in the data
        raise _CannotRead("no audio frames could be decoded")
    return np.concatenate(chunks, axis=1).T, sample_rate


def _decode(source: Union[str, os.PathLike, bytes, bytearray], name: str) -> tuple[np.ndarray, int]:
    """Decode a whole file with libsndfile, else FFmpeg. ``AudioDecodeError`` from a decoder is final
    (it read the header and refused it); any other error means "try the next decoder"."""
    if isinstance(source, (str, os.PathLike)):
        check_audio_path(source, name)
    errors = []
    for label, decoder, opener in (("soundfile", _decode_soundfile, _soundfile_input),
                                   ("av", _decode_av, _av_input)):
        try:
            return decoder(opener(source), name)
        except AudioDecodeError:
            raise
        except Exception as error:  # decoder libraries raise many types for bad data
            errors.append(f"{label}: {error}")  # the message only: the traceback would keep the data alive
    raise AudioDecodeError(f"{name}: cannot decode audio ({'; '.join(errors)})")


def load_audio(source: AudioInput, *, sample_rate: int | None = None) -> np.ndarray:
    """Read ``source`` and return 16 kHz mono float32 samples in [-1, 1].

    Args:
        source: a path (wav, flac, mp3, ogg, opus, m4a, webm, ...; ``str``, ``bytes`` or path-like), the
            bytes of such a file, or a numpy array of samples shaped ``(samples,)`` or ``(samples,
            channels)`` (at most 32 channels), converted by :func:`to_mono`: integer arrays are scaled by
            their type's range; float arrays are taken as already in [-1, 1].
        sample_rate: the sample rate of an array ``source`` in Hz (default 16000), checked by
            :func:`check_sample_rate` (1000 to 768000 Hz). Ignored for files and bytes, whose header
            says it (and is held to the same bounds).

    Returns:
        ``(samples,)`` float32 at 16 kHz.

    Raises:
        AudioDecodeError: the file is missing, corrupt or in an unsupported format, its header gives a
            sample rate out of bounds, or the samples are not audio (see :func:`to_mono`: dtype, shape,
            NaN/inf, float peak above 1e3). The message names the input.
        AudioTooShortError: the audio is empty or shorter than 0.1 s.
        ValueError: a bad ``sample_rate`` for an array.
        TypeError: ``source`` is not a path, bytes or an array.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        rate = SAMPLE_RATE if sample_rate is None else check_sample_rate(sample_rate, name)
        mono = to_mono(source, name)
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)):
        samples, rate = _decode(source, name)
        mono = _to_mono(samples, name, max_channels=None)
        del samples  # the (frames, channels) decode is not needed during resampling
    else:
        raise TypeError(f"audio must be a path, bytes or a numpy array, not {type(source).__name__}")

    if rate != SAMPLE_RATE and mono.size:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="VHQ").astype(np.float32, copy=False)
    check_duration(mono.size / SAMPLE_RATE, name)
    return np.ascontiguousarray(mono)


def check_duration(duration: float, name: str) -> None:
    """Refuse audio shorter than :data:`MIN_DURATION` seconds.

    Raises:
        AudioTooShortError: naming ``name`` and the duration.
    """
    if duration < MIN_DURATION:
        raise AudioTooShortError(f"{name}: audio is {duration:.3f} s long; at least {MIN_DURATION} s is needed")


# -- streaming reads (long audio) ------------------------------------------------------------------

BLOCK_DURATION = 10.0  # seconds per block when reading long audio; bounds memory, not results


def probe_duration(source: AudioInput, *, sample_rate: int | None = None) -> float | None:
    """The duration of ``source`` in seconds without decoding it, or ``None`` when the header does not
    say (some FFmpeg containers, a FLAC written by a streaming encoder). Arrays: ``samples /
    sample_rate``.

    Raises:
        AudioDecodeError: a path that does not exist, a header whose sample rate is out of bounds (1000
            to 768000 Hz), or an array that is not audio (dtype, shape; see :func:`to_mono`).
        ValueError: a bad ``sample_rate`` for an array.
        TypeError: ``source`` is not a path, bytes or an array.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        rate = SAMPLE_RATE if sample_rate is None else check_sample_rate(sample_rate, name)
        _check_layout(source, name, MAX_CHANNELS)
        return source.shape[0] / rate
    if not isinstance(source, (str, os.PathLike, bytes, bytearray)):
        raise TypeError(f"audio must be a path, bytes or a numpy array, not {type(source).__name__}")
    if isinstance(source, (str, os.PathLike)):
        check_audio_path(source, name)
    try:
        info = soundfile.info(_soundfile_input(source))
    except Exception:  # not a libsndfile format: ask FFmpeg for the container's duration
        info = None
    if info is not None:
        rate = _check_header_rate(info.samplerate, name)
        if _length_known(info.frames):
            return info.frames / rate
    try:
        import av

        with av.open(_av_input(source), mode="r") as container:
            stream = container.streams.audio[0] if container.streams.audio else None
            if stream is not None and stream.sample_rate:
                _check_header_rate(stream.sample_rate, name)
            if container.duration is not None:
                return container.duration / av.time_base
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except AudioDecodeError:
        raise
    except Exception:
        pass
    return None


def _blocks_soundfile(handle: soundfile.SoundFile, block_frames: int) -> Iterator[np.ndarray]:
    while True:
        block = handle.read(block_frames, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            return
        yield block


def _blocks_av(data, block_duration: float, name: str) -> Iterator[tuple[np.ndarray, int]]:
    import av

    with av.open(data, mode="r") as container:
        if not container.streams.audio:
            raise _CannotRead("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=None, rate=None)
        pending, pending_frames, rate = [], 0, None
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                if rate is None:
                    rate = _check_header_rate(out.sample_rate, name)
                pending.append(out.to_ndarray().T)  # (frames, channels)
                pending_frames += out.samples
            if pending and pending_frames >= block_duration * rate:
                yield np.concatenate(pending), rate
                pending, pending_frames = [], 0
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().T)
        if rate is None:  # FFmpeg guessed a format but found no audio in the data
            raise _CannotRead("no audio frames could be decoded")
        if pending:
            yield np.concatenate(pending), rate


def _blocks_file(source, name: str, block_duration: float) -> Iterator[tuple[np.ndarray, int]]:
    """``(frames, channels)`` float32 blocks and their rate: libsndfile when it can read the file from
    the start, else FFmpeg. Nothing of the libsndfile attempt is kept during the FFmpeg decode."""
    sf_error = None
    try:
        handle = soundfile.SoundFile(_soundfile_input(source))
    except Exception as error:
        sf_error = str(error)  # the message only: the exception's traceback holds the failed attempt
    else:
        with handle:
            rate = _check_header_rate(handle.samplerate, name)
            if not _length_known(handle.frames):
                sf_error = "the header does not give the length (a FLAC written by a streaming encoder?)"
            else:
                block_frames = max(1, min(int(block_duration * rate), _MAX_BLOCK_VALUES // handle.channels))
                started = False
                try:
                    for block in _blocks_soundfile(handle, block_frames):
                        started = True
                        yield block, rate
                    return
                except Exception as error:
                    if started:  # blocks were yielded: cannot start again with another decoder
                        raise
                    sf_error = str(error)
        del handle
    logger.debug("%s: libsndfile cannot read it (%s); decoding with FFmpeg", name, sf_error)
    try:
        yield from _blocks_av(_av_input(source), block_duration, name)
    except AudioDecodeError:
        raise
    except Exception as error:
        raise AudioDecodeError(f"{name}: cannot decode audio (soundfile: {sf_error}; av: {error})") from None


def iter_audio(source: AudioInput, *, sample_rate: int | None = None,
               block_duration: float = BLOCK_DURATION) -> Iterator[np.ndarray]:
    """Read ``source`` as consecutive blocks of 16 kHz mono float32 samples, without decoding it whole.

    Files libsndfile reads (wav, flac, ogg, mp3, ...) are read ``block_duration`` seconds at a time;
    FFmpeg containers (and files libsndfile cannot read from the start, such as a FLAC from a
    streaming encoder) are decoded packet by packet; resampling to 16 kHz is a ``soxr.ResampleStream``
    (VHQ, as :func:`load_audio`). Memory is bounded by one block. Every block passes the checks of
    :func:`to_mono` and the header's sample rate those of :func:`check_sample_rate`. An array
    ``source`` is normalised with :func:`load_audio` (it is in memory already) and sliced.

    Yields:
        ``(samples,)`` float32 arrays at 16 kHz whose concatenation is the whole audio (the last block
        may be short; blocks may be empty).

    Raises:
        AudioDecodeError: missing, corrupt or unsupported audio, a header sample rate out of bounds, or
            samples that are not audio (NaN/inf, float peak above 1e3; possibly after some blocks were
            yielded, for a file corrupt in the middle). The message names the input.
        ValueError: a bad ``sample_rate`` (arrays) or ``block_duration`` (not a positive number).
    """
    name = describe_source(source)
    _check_block_duration(block_duration)
    if isinstance(source, np.ndarray):
        samples = load_audio(source, sample_rate=sample_rate)
        step = max(1, int(block_duration * SAMPLE_RATE))
        for begin in range(0, samples.size, step):
            yield samples[begin : begin + step]
        return
    if not isinstance(source, (str, os.PathLike, bytes, bytearray)):
        raise TypeError(f"audio must be a path, bytes or a numpy array, not {type(source).__name__}")
    if isinstance(source, (str, os.PathLike)):
        check_audio_path(source, name)
    blocks = _blocks_file(source, name, block_duration)
    resampler, rate_seen = None, None
    try:
        for block, rate in blocks:
            mono = _to_mono(block, name, max_channels=None)
            del block
            if rate_seen is None:
                rate_seen = rate
                if rate != SAMPLE_RATE:
                    resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="VHQ")
            if resampler is not None:
                mono = resampler.resample_chunk(mono)
            yield mono
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    except AudioDecodeError:
        raise
    except Exception as error:  # decoder libraries raise many types for bad data
        raise AudioDecodeError(f"{name}: cannot decode audio ({error})") from None
    finally:
        blocks.close()
