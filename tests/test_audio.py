import io

import numpy as np
import pytest
import soundfile

from funasr_nano import AudioDecodeError, AudioTooShortError, FunASRNanoError, load_audio


@pytest.fixture(scope="module")
def reference(binhai):
    samples, rate = soundfile.read(binhai, dtype="float32")
    assert rate == 16000
    return samples


def _encode_av(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def _aligned_snr_db(out: np.ndarray, reference: np.ndarray, max_lag: int = 1100) -> float:
    """Signal-to-noise ratio (dB) of a decoded lossy clip against the original, at the codec delay (at most
    ``max_lag`` samples either way) that fits best."""
    best = np.inf
    for lag in range(-max_lag, max_lag + 1):
        a, b = out[max(lag, 0):], reference[max(-lag, 0):]
        n = min(a.size, b.size)
        best = min(best, float(np.sum((a[:n] - b[:n]) ** 2) / np.sum(b[:n] ** 2)))
    return -10 * np.log10(best)


def test_wav_path_is_read_unchanged(binhai, reference):
    out = load_audio(binhai)
    assert out.dtype == np.float32 and out.ndim == 1
    np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_soundfile_formats(tmp_path, reference, fmt, subtype):
    path = tmp_path / f"clip.{fmt.lower()}"
    soundfile.write(path, reference, 16000, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert abs(out.size - reference.size) < 0.05 * 16000  # codec delay/padding at most 50 ms
    n = min(out.size, reference.size)
    if fmt == "FLAC":  # lossless: equal up to 16-bit quantization
        np.testing.assert_allclose(out[:n], reference[:n], atol=1 / 32768)
    else:  # lossy: the same waveform within codec noise (measured: Vorbis 15.9 dB, MP3 14.5 dB)
        assert _aligned_snr_db(out, reference) > 10


@pytest.mark.parametrize("container,codec,suffix", [("ipod", "aac", "m4a"), ("webm", "libopus", "webm")])
def test_ffmpeg_containers(tmp_path, reference, container, codec, suffix):
    rate = 48000 if codec == "libopus" else 16000
    import soxr

    samples = soxr.resample(reference, 16000, rate) if rate != 16000 else reference
    path = tmp_path / f"clip.{suffix}"
    path.write_bytes(_encode_av(samples, rate, container, codec))
    out = load_audio(path)
    assert abs(out.size / 16000 - reference.size / 16000) < 0.1
    assert _aligned_snr_db(out, reference) > 10  # the same waveform (measured: AAC 35.8 dB, Opus 20.4 dB)


def test_resampling_and_downmix(reference):
    import soxr

    stereo = np.stack([soxr.resample(reference, 16000, 44100)] * 2, axis=1)
    out = load_audio(stereo, sample_rate=44100)
    assert abs(out.size - reference.size) <= 2
    n = min(out.size, reference.size)
    corr = np.corrcoef(out[:n], reference[:n])[0, 1]
    assert corr > 0.99


def test_bytes_and_int16(binhai, reference):
    np.testing.assert_array_equal(load_audio(binhai.read_bytes()), reference)
    pcm = (reference * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm), reference, atol=2 / 32768)


def test_corrupt_file_names_it(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        load_audio(bad)
    with pytest.raises(AudioDecodeError, match="no such file"):
        load_audio(tmp_path / "missing.wav")


def test_short_and_empty_audio():
    with pytest.raises(AudioTooShortError):
        load_audio(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioTooShortError, match="0.1"):
        load_audio(np.zeros(1599, dtype=np.float32))
    assert load_audio(np.zeros(1600, dtype=np.float32)).size == 1600


def test_errors_share_a_base_class():
    assert issubclass(AudioDecodeError, FunASRNanoError) and issubclass(AudioTooShortError, FunASRNanoError)
