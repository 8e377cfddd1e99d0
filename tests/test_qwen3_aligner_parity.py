"""Parity with the forced aligner of the reference package qwen-asr 0.0.6 (``Qwen3ForcedAligner.align``, its
own venv with transformers 4.57.6, called as a subprocess) on a tiny random Qwen3-ForcedAligner in the
official layout and real recordings: the same prompt ids, classifier logits at the ``<timestamp>`` slots
within 1e-4, and the same units with the same start/end times (exactly: both sides take the arg-max bin,
times are multiples of the 80 ms bin or the fix-up's integer-millisecond interpolation, rounded to 3
decimals); the fix-up of out-of-order bins on chosen sequences; the transformers-layout copy gives the
same times."""

import numpy as np
import pytest
import torch

from funasr_nano.audio.io import SAMPLE_RATE, load_audio
from funasr_nano.models.qwen3_asr.aligner import ForcedAligner
from funasr_nano.models.qwen3_asr.aligner_checkpoint import load_aligner
from funasr_nano.testing.qwen_asr_reference import ReferenceUnavailable, ensure_reference, run_aligner_reference
from funasr_nano.testing.tiny_qwen3_aligner import write_tiny_aligner

from .conftest import shared_file

# (recording, transcript, language as the reference takes it)
CASES = {
    "chinese": ("audio/zh_welcome.wav", "欢迎大家来体验达摩院推出的语音识别模型。", "Chinese"),
    "mixed": ("audio/zh_binhai.wav", "Hello, world! It's an e-mail (test): 我想问，我在“滨海新区”有房。", "English"),
    "one_window": ("audio/zh_long.wav", "我想问我在滨海新区有房，欢迎大家来体验达摩院推出的语音识别模型", "Chinese"),
}
# bins (of 60) chosen at the slots of the "fix" transcript's 10 units: in order, one outlier, a block of three
# (spread evenly), out-of-order first and last values, and random sequences
FIX_TEXT = "a b c d e f g h i j"
FIX_BINS = [
    list(range(2, 22)),
    [2, 3, 4, 50, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21],
    [2, 3, 4, 5, 40, 41, 42, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
    [30, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 0],
    [9, 9, 1, 1, 1, 1, 1, 30, 30, 2, 2, 2, 2, 2, 2, 40, 41, 0, 59, 59],
    *(np.random.default_rng(seed).integers(0, 60, 20).tolist() for seed in range(4)),
]


@pytest.fixture(scope="module")
def aligner_folder(tmp_path_factory):
    return write_tiny_aligner(str(tmp_path_factory.mktemp("tiny-aligner")), "official", seed=0)


@pytest.fixture(scope="module")
def reference(aligner_folder):
    try:
        ensure_reference()
    except ReferenceUnavailable as error:
        pytest.skip(f"the qwen-asr 0.0.6 reference venv cannot be created here: {error}")
    cases = [{"audio": str(shared_file(audio)), "text": text, "language": language}
             for audio, text, language in CASES.values()]
    cases += [{"audio": str(shared_file("audio/zh_mid.wav")), "text": FIX_TEXT, "language": "English", "bins": bins}
              for bins in FIX_BINS]
    return run_aligner_reference(aligner_folder, cases)


@pytest.fixture(scope="module")
def aligner(aligner_folder):
    return ForcedAligner(load_aligner(aligner_folder))


def test_reference_holds_every_tensor(reference, aligner):
    assert reference["weights_checked"] == len(aligner.model.state_dict())


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_prompt_logits_and_times_match_reference(reference, aligner, case):
    audio, text, language = CASES[case]
    expected = reference["cases"][list(CASES).index(case)]
    waveform = load_audio(shared_file(audio))
    units = aligner.split_units(text, language)
    ids, logits = aligner.logits(waveform, units)
    assert ids[0].tolist() == expected["input_ids"]
    slots = logits[0, ids[0] == aligner.checkpoint.timestamp_token_id]
    assert slots.shape == expected["slot_logits"].shape == (2 * len(units), aligner.checkpoint.classify_num)
    assert torch.allclose(slots, expected["slot_logits"], atol=1e-4, rtol=0)
    ours = aligner.align_units(waveform, text, language)
    assert [(u.text, u.start, u.end) for u in ours] == expected["items"]
    assert len({u.start for u in ours}) > 1 or case == "mixed"  # the random network's bins differ along the text
    # the words: the reference's units with the text around them, the same times (all inside the clip here)
    words = aligner.align(shared_file(audio), text, language)
    assert "".join(w.word for w in words) == text
    assert [(w.start, w.end) for w in words] == [(start, end) for _, start, end in expected["items"]]
    assert [u.text for u in ours] == ["".join(c for c in w.word if c.isalnum() or c == "'") for w in words]
    times = [t for w in words for t in (w.start, w.end)]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= waveform.size / SAMPLE_RATE


@pytest.mark.parametrize("index", range(len(FIX_BINS)))
def test_fix_up_of_out_of_order_bins_matches_reference(reference, aligner, index):
    expected = reference["cases"][len(CASES) + index]
    units = aligner.split_units(FIX_TEXT, "English")
    waveform = load_audio(shared_file("audio/zh_mid.wav"))
    ids, _ = aligner.logits(waveform, units)
    assert ids[0].tolist() == expected["input_ids"]
    logits = torch.zeros(1, ids.shape[1], aligner.checkpoint.classify_num)
    logits[0, ids[0] == aligner.checkpoint.timestamp_token_id, torch.tensor(FIX_BINS[index])] = 1.0
    ours = aligner.decode(ids, logits, units)
    assert [(u.text, u.start, u.end) for u in ours] == expected["items"]
    times = [t for u in ours for t in (u.start, u.end)]
    assert times == sorted(times)


def test_transformers_layout_gives_the_reference_times(reference, tmp_path):
    hf = ForcedAligner(load_aligner(write_tiny_aligner(str(tmp_path / "hf"), "hf", seed=0)))
    assert hf.checkpoint.layout == "hf"
    for (audio, text, language), expected in zip(CASES.values(), reference["cases"]):
        units = hf.align_units(load_audio(shared_file(audio)), text, language)
        assert [(u.text, u.start, u.end) for u in units] == expected["items"]
