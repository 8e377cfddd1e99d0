"""Hostile and unusual inputs to funasr_nano.audio.io (issue 12, items 7 and 8).

Every input is generated here, under tmp_path; nothing is committed. Each test names the defect it
guards against; each failed on the code before the fix (see the commit message).
"""

import gc
import io
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from funasr_nano import AudioDecodeError, AudioTooShortError, FunASRNanoError

from .test_audio import _encode_av
from funasr_nano.audio.io import (
    MAX_CHANNELS,
    MAX_FLOAT_PEAK,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    check_sample_rate,
    describe_source,
    iter_audio,
    load_audio,
    probe_duration,
    to_mono,
)


def _noise(seconds: float, rate: int = 16000, channels: int = 1, amplitude: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (int(seconds * rate), channels) if channels > 1 else (int(seconds * rate),)
    return (rng.standard_normal(shape) * amplitude).clip(-1, 1).astype(np.float32)


def _read_all(source, **kwargs) -> np.ndarray:
    return np.concatenate(list(iter_audio(source, **kwargs)))


def _encode_m4a(samples: np.ndarray, rate: int = 16000) -> bytes:
    return _encode_av(samples, rate, "ipod", "aac")


# -- 1. absurd float peaks ---------------------------------------------------------------------------


def test_huge_float_wav_is_refused_naming_file_and_peak(tmp_path):
    # ~3e38 is finite in float32 but makes kaldi-native-fbank raise "mel energy is nan"
    path = tmp_path / "huge.wav"
    samples = np.full(16000, 3e38, dtype=np.float32)
    samples[::2] = -3e38
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"huge\.wav.*3e\+38"):
        load_audio(path)
    with pytest.raises(AudioDecodeError, match=r"huge\.wav.*3e\+38"):
        _read_all(path)
    with pytest.raises(AudioDecodeError, match=r"3e\+38"):
        load_audio(path.read_bytes())


def test_iter_audio_checks_every_block(tmp_path):
    samples = _noise(3.0)
    samples[-100:] = 5e4  # integer PCM stored as float, in the last block only
    path = tmp_path / "late.wav"
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    blocks = iter_audio(path, block_duration=1.0)
    assert next(blocks).size == 16000 and next(blocks).size == 16000
    with pytest.raises(AudioDecodeError, match=r"late\.wav.*5e\+04"):
        next(blocks)


def test_modest_overshoot_is_accepted(tmp_path):
    samples = _noise(1.0, amplitude=0.5)
    samples[100] = 1.5
    samples[200] = -1.5
    path = tmp_path / "loud.wav"
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), samples)
    np.testing.assert_array_equal(_read_all(path), samples)
    at_bound = samples.copy()
    at_bound[0] = MAX_FLOAT_PEAK
    np.testing.assert_array_equal(load_audio(at_bound), at_bound)
    at_bound[0] = -MAX_FLOAT_PEAK * 1.01
    with pytest.raises(AudioDecodeError, match="peak"):
        load_audio(at_bound)


def test_float64_beyond_float32_reports_the_peak_not_inf():
    samples = np.zeros(16000, dtype=np.float64)
    samples[5] = 1e300
    with pytest.raises(AudioDecodeError, match=r"1e\+300"):
        load_audio(samples)
    samples[5] = np.nan
    with pytest.raises(AudioDecodeError, match="NaN"):
        load_audio(samples)


# -- 2. arrays and sample rates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array,fragment",
    [
        (np.array(0.5, dtype=np.float32), r"\(\)"),
        (np.zeros((1600, 2, 2), dtype=np.float32), r"\(1600, 2, 2\)"),
        (np.zeros((1600, 0), dtype=np.float32), "no channels"),
        (np.full(1600, 0.1, dtype=object), "object"),
        (np.zeros(1600, dtype=np.complex64), "complex64"),
        (np.zeros(1600, dtype=bool), "bool"),
        (np.array(["a"] * 1600), "<U1"),
    ],
    ids=["0-d", "3-d", "no-channels", "object", "complex", "bool", "str"],
)
def test_arrays_that_are_not_audio(array, fragment):
    for read in (load_audio, _read_all, lambda a: to_mono(a, "pcm")):
        with pytest.raises(AudioDecodeError, match=fragment):
            read(array)
    if array.ndim != 2 or array.dtype.kind not in "iuf":  # probe checks dtype and shape without a data pass
        with pytest.raises(AudioDecodeError):
            probe_duration(array)


def test_empty_arrays_are_too_short_not_a_numpy_error():
    for empty in (np.zeros(0, dtype=np.float32), np.zeros((0, 2), dtype=np.int16)):
        with pytest.raises(AudioTooShortError):
            load_audio(empty)
        with pytest.raises(AudioTooShortError):
            list(iter_audio(empty))  # arrays go through load_audio
        assert to_mono(empty, "chunk").shape == (0,)  # a streaming chunk may be empty


@pytest.mark.parametrize(
    "rate", [0, -16000, math.inf, -math.inf, math.nan, 16000.5, 1, MIN_SAMPLE_RATE - 1, MAX_SAMPLE_RATE + 1, 10**30]
)
def test_bad_sample_rates_are_value_errors_naming_the_value(rate):
    samples = _noise(0.5)
    for call in (load_audio, _read_all, probe_duration):
        with pytest.raises(ValueError) as caught:
            call(samples, sample_rate=rate)
        assert repr(rate) in str(caught.value) and "sample_rate" in str(caught.value)
    with pytest.raises(ValueError, match="pcm"):
        check_sample_rate(rate, "pcm")


def test_good_sample_rates_in_any_numeric_type():
    for rate in (16000, 44100.0, np.int64(8000), np.float32(48000), MIN_SAMPLE_RATE, MAX_SAMPLE_RATE):
        assert check_sample_rate(rate, "x") == int(rate) and type(check_sample_rate(rate, "x")) is int
    assert load_audio(_noise(1.0, 8000), sample_rate=8000.0).size == 16000
    for rate in ("16000", None, True):
        with pytest.raises(TypeError):
            check_sample_rate(rate, "x")


def test_transposed_arrays_are_refused_with_a_hint():
    stereo = _noise(1.0, channels=2)
    with pytest.raises(AudioDecodeError, match=r"\(channels, samples\)"):
        load_audio(stereo.T)  # (2, 16000): 16000 "channels"
    with pytest.raises(AudioDecodeError, match="33 channels"):
        load_audio(np.zeros((16000, MAX_CHANNELS + 1), dtype=np.float32))
    many = _noise(1.0, channels=MAX_CHANNELS)
    np.testing.assert_allclose(load_audio(many), many.mean(axis=1), atol=1e-7)


# -- 3. header sample rates ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, MIN_SAMPLE_RATE - 1])
def test_header_rate_below_bound_is_refused(tmp_path, rate):
    # a small WAV claiming 1 Hz would be resampled into hours of audio and gigabytes
    path = tmp_path / f"rate{rate}.wav"
    soundfile.write(path, (_noise(0.05) * 32767).astype(np.int16), rate)
    for call in (load_audio, _read_all, probe_duration):
        with pytest.raises(AudioDecodeError, match=rf"rate{rate}\.wav.*{rate} Hz"):
            call(path)
    with pytest.raises(AudioDecodeError, match=f"{rate} Hz"):
        load_audio(path.read_bytes())


def test_header_rate_at_bound_is_accepted(tmp_path):
    path = tmp_path / "rate1000.wav"
    soundfile.write(path, _noise(0.5, MIN_SAMPLE_RATE), MIN_SAMPLE_RATE, subtype="FLOAT")
    assert probe_duration(path) == 0.5
    assert load_audio(path).size == 8000
    assert abs(_read_all(path).size - 8000) <= 1


# -- 4. FLAC from a streaming encoder (STREAMINFO total_samples = 0) ------------------------------------


def _total_samples(flac: bytes) -> int:
    """STREAMINFO's 36-bit total_samples (RFC 9639 8.2): bits 108-143 of the block."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    info = 8  # after "fLaC" and the 4-byte block header
    return ((flac[info + 13] & 0x0F) << 32) | int.from_bytes(flac[info + 14 : info + 18], "big")


def _zero_total_samples(flac: bytes) -> bytes:
    """Zero STREAMINFO's total_samples, as a streaming encoder leaves it (it cannot seek back)."""
    assert _total_samples(flac) > 0
    data = bytearray(flac)
    info = 8
    data[info + 13] &= 0xF0
    data[info + 14 : info + 18] = bytes(4)
    return bytes(data)


def test_streamed_flac_decodes_like_the_normal_one(tmp_path):
    stereo = _noise(25.0, channels=2, amplitude=0.01)
    normal = tmp_path / "normal.flac"
    soundfile.write(normal, stereo, 16000, format="FLAC", subtype="PCM_16")
    streamed = tmp_path / "streamed.flac"
    streamed.write_bytes(_zero_total_samples(normal.read_bytes()))
    assert _total_samples(streamed.read_bytes()) == 0

    expected = load_audio(normal)
    np.testing.assert_array_equal(load_audio(streamed), expected)
    np.testing.assert_array_equal(load_audio(streamed.read_bytes()), expected)
    blocks = list(iter_audio(streamed, block_duration=4.0))
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    assert len(blocks) >= 5 and max(b.size for b in blocks) <= 5.0 * 16000  # memory bounded by a block
    assert probe_duration(normal) == 25.0
    assert probe_duration(streamed) is None  # unknown, not 5.8e14 s


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_flac_piped_from_sox(tmp_path):
    rate = 44100
    pcm = (_noise(20.0, rate, channels=2, amplitude=0.01) * 32767).astype(np.int16)
    raw = ["sox", "-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "2", "-"]
    piped = subprocess.run(raw + ["-t", "flac", "-"], input=pcm.tobytes(), stdout=subprocess.PIPE, check=True)
    path = tmp_path / "piped.flac"
    path.write_bytes(piped.stdout)
    assert _total_samples(piped.stdout) == 0  # sox could not seek back to write it

    expected = load_audio(pcm, sample_rate=rate)
    np.testing.assert_array_equal(load_audio(path), expected)
    streamed = _read_all(path)
    assert streamed.size == expected.size
    np.testing.assert_allclose(streamed, expected, atol=1e-5)  # block-wise resampling
    assert probe_duration(path) is None


# -- 5. the failed libsndfile attempt is not kept alive ----------------------------------------------


def _live_soundfiles() -> int:
    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which trips lazy deprecated objects (torch.distributed)
    return sum(type(o) is soundfile.SoundFile for o in gc.get_objects())


def test_failed_libsndfile_attempt_is_released_during_ffmpeg_decode(tmp_path):
    m4a = _encode_m4a(_noise(3.0, amplitude=0.2))
    before = _live_soundfiles()
    blocks = iter_audio(m4a, block_duration=1.0)
    assert next(blocks).size > 0  # FFmpeg is decoding now
    assert _live_soundfiles() == before
    assert sum(b.size for b in blocks) > 0

    streamed = tmp_path / "streamed.flac"
    normal = io.BytesIO()
    soundfile.write(normal, _noise(3.0), 16000, format="FLAC")
    streamed.write_bytes(_zero_total_samples(normal.getvalue()))
    blocks = iter_audio(streamed, block_duration=1.0)
    next(blocks)
    assert _live_soundfiles() == before
    blocks.close()


# -- 6. file names that are not UTF-8 -------------------------------------------------------------------


@pytest.fixture
def latin1_dir(tmp_path):
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    try:
        os.mkdir(name)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses non-UTF-8 names")
    return name


def test_non_utf8_names_are_printable_and_readable(latin1_dir):
    samples = _noise(1.0)
    wav = os.path.join(latin1_dir, b"caf\xe9.wav")
    soundfile.write(wav, samples, 16000, subtype="FLOAT")
    m4a = os.path.join(latin1_dir, b"caf\xe9.m4a")
    with open(m4a, "wb") as handle:
        handle.write(_encode_m4a(samples))
    broken = os.path.join(latin1_dir, b"caf\xe9-broken.wav")
    with open(broken, "wb") as handle:
        handle.write(b"RIFF\x00\x00\x00\x00WAVEgarbage")

    entries = {entry.name: entry for entry in os.scandir(latin1_dir)}  # bytes paths (os.PathLike)
    for path in (os.fsdecode(wav), entries[b"caf\xe9.wav"]):
        name = describe_source(path)
        name.encode("utf-8")  # raised UnicodeEncodeError before
        assert name.endswith("caf\\xe9.wav") and "\\xe9" + os.sep + "caf" in name
        np.testing.assert_array_equal(load_audio(path), samples)
        np.testing.assert_array_equal(_read_all(path), samples)
        assert probe_duration(path) == 1.0
    for path in (os.fsdecode(m4a), entries[b"caf\xe9.m4a"]):  # FFmpeg is given the name too
        assert abs(load_audio(path).size - 16000) < 0.1 * 16000
        assert abs(_read_all(path).size - 16000) < 0.1 * 16000
    for path in (os.fsdecode(broken), entries[b"caf\xe9-broken.wav"]):
        with pytest.raises(AudioDecodeError) as caught:
            load_audio(path)
        stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        stderr.write(str(caught.value))  # as logging or a CLI would
        assert "caf\\xe9-broken.wav" in str(caught.value)


# -- 7. the shared helpers -------------------------------------------------------------------------------


def test_to_mono_converts_like_load_audio():
    stereo = _noise(0.5, channels=2)
    mono = to_mono(stereo, "chunk")
    assert mono.shape == (8000,) and mono.dtype == np.float32 and mono.flags.c_contiguous
    np.testing.assert_array_equal(mono, stereo.mean(axis=1))
    pcm = np.array([[-32768, 32767], [16384, 16384]], dtype=np.int16)
    np.testing.assert_array_equal(to_mono(pcm, "pcm"), [(-1 + 32767 / 32768) / 2, 0.5])
    np.testing.assert_array_equal(to_mono(np.array([0, 128, 255], np.uint8), "u8"), [-1, 0, 127 / 128])
    np.testing.assert_array_equal(to_mono(np.array([-(2**31)], np.int32), "i32"), [-1])
    assert to_mono(stereo.astype(np.float64), "f64").dtype == np.float32
    with pytest.raises(AudioDecodeError, match="chunk.*NaN"):
        to_mono(np.array([0.0, np.inf], np.float32), "chunk")
    with pytest.raises(TypeError):
        to_mono([0.0, 0.1], "list")


def test_block_duration_must_be_positive(binhai):
    for bad in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="block_duration"):
            next(iter_audio(binhai, block_duration=bad))
    assert issubclass(AudioDecodeError, FunASRNanoError)


def test_random_bytes_are_a_decode_error_not_empty_audio(tmp_path):
    """FFmpeg guesses a format for some random data and decodes no frame: that is not audio."""
    from funasr_nano.audio.io import iter_audio, load_audio

    path = tmp_path / "random.flac"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioDecodeError, match="no audio frames"):
        load_audio(path)
    with pytest.raises(AudioDecodeError, match="no audio frames"):
        list(iter_audio(path))
