import numpy as np
import pytest
import soundfile
import torch

from funasr_nano.models.fun_asr_nano.frontend import Frontend, FrontendConfig, apply_lfr, compute_fbank

from .official import official_frontend


def test_features_match_official_wav_frontend(binhai):
    waveform, _ = soundfile.read(binhai, dtype="float32")
    theirs, lengths = official_frontend()(torch.from_numpy(waveform)[None], torch.tensor([waveform.size]))
    ours = Frontend()(waveform)
    assert ours.shape == (100, 560) and int(lengths[0]) == 100  # 598 fbank frames -> 100 LFR frames
    assert compute_fbank(waveform).shape == (598, 80)
    assert torch.max(torch.abs(theirs[0] - ours)).item() <= 1e-4


@pytest.mark.parametrize("frames", list(range(1, 40)) + [97, 598, 1000])
def test_lfr_matches_official(frames):
    pytest.importorskip("funasr")
    from funasr.frontends.wav_frontend import apply_lfr as official_apply_lfr

    fbank = torch.randn(frames, 80, generator=torch.Generator().manual_seed(frames))
    expected = official_apply_lfr(fbank, 7, 6).numpy()
    ours = apply_lfr(fbank.numpy(), 7, 6)
    assert ours.shape == expected.shape == (-(-frames // 6), 560)
    np.testing.assert_array_equal(ours, expected)


def test_lfr_left_padding_repeats_first_frame():
    fbank = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    out = apply_lfr(fbank, 7, 6)
    # frame 0 = [f0, f0, f0, f0, f1, f2, f3]: three copies of the first frame, then the frame itself
    np.testing.assert_array_equal(out[0].reshape(7, 2), fbank[[0, 0, 0, 0, 1, 2, 3]])
    # last frame reads past the end: padded with the last frame
    np.testing.assert_array_equal(out[1].reshape(7, 2), fbank[[3, 4, 5, 6, 7, 8, 9]])


def test_num_frames_agrees_with_features():
    frontend = Frontend()
    for samples in (1600, 16000, 16000 * 6 + 123):
        assert frontend.num_frames(samples) == frontend(np.zeros(samples, np.float32) + 0.01).shape[0]


def test_config_rejects_other_sample_rates():
    with pytest.raises(ValueError, match="16000"):
        FrontendConfig(sample_rate=8000)
