"""Word and character timestamps from Fun-ASR-Nano's CTC branch: the alignment against an exhaustive
search, parity with funasr 1.4.16's ``timestamps`` on the real recordings, the words' invariants, the
checkpoint layout of the CTC branch, and the clear error of a checkpoint without it."""

from __future__ import annotations

import itertools
import pathlib

import numpy as np
import pytest
import soundfile
import torch

from funasr_nano import load_model
from funasr_nano.errors import CheckpointError
from funasr_nano.models.alignment import AlignmentError, forced_align, viterbi_path, words_from_spans
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint
from tests.conftest import shared_file
from tests.ctc_reference import TORCHAUDIO_STAND_IN, reference_forced_align

RECORDINGS = ("audio/zh_binhai.wav", "audio/zh_welcome.wav")


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory) -> pathlib.Path:
    """An official-layout random checkpoint with the CTC branch and its tokenizer."""
    path = tmp_path_factory.mktemp("tiny-ctc")
    return pathlib.Path(write_tiny_checkpoint(str(path), "official", TinyConfig(ctc=True), seed=5))


@pytest.fixture(scope="module")
def ctc_model(tiny_ctc):
    return load_model(tiny_ctc)


def _collapse(labels, blank):
    out = []
    for label, _ in itertools.groupby(labels):
        if label != blank:
            out.append(label)
    return out


def _best_by_search(log_probs: np.ndarray, targets, blank):
    """Every label sequence of the frames that collapses to ``targets``; the most probable one."""
    frames, vocab = log_probs.shape
    best, best_path = -np.inf, None
    for labels in itertools.product(range(vocab), repeat=frames):
        if _collapse(labels, blank) == list(targets):
            score = float(sum(log_probs[t, label] for t, label in enumerate(labels)))
            if score > best:
                best, best_path = score, labels
    return list(best_path)


@pytest.mark.parametrize("seed", range(12))
def test_alignment_is_the_most_probable_ctc_path(seed):
    generator = torch.Generator().manual_seed(seed)
    frames, vocab, blank = 6 + seed % 2, 4, 3
    log_probs = torch.randn(frames, vocab, generator=generator).log_softmax(-1)
    length = 1 + seed % 3
    targets = torch.randint(0, vocab - 1, (length,), generator=generator).tolist()
    if seed % 4 == 0 and length > 1:
        targets[1] = targets[0]  # a repeat: needs a blank between
    expected = _best_by_search(log_probs.numpy(), targets, blank)
    assert viterbi_path(log_probs.numpy(), targets, blank).tolist() == expected
    paths, _ = reference_forced_align(log_probs[None], torch.tensor([targets]), blank)
    assert paths[0].tolist() == expected


def test_a_long_alignment_equals_the_reference():
    """300 frames, 120 tokens (241 states, more than an int8 holds), with repeats."""
    generator = torch.Generator().manual_seed(7)
    log_probs = torch.randn(300, 50, generator=generator).log_softmax(-1)
    targets = torch.randint(0, 49, (120,), generator=generator)
    targets[10:13] = targets[9]
    paths, _ = reference_forced_align(log_probs[None], targets[None], 49)
    assert viterbi_path(log_probs.numpy(), targets.tolist(), 49).tolist() == paths[0].tolist()


def test_alignment_refuses_more_tokens_than_frames():
    log_probs = torch.randn(3, 5).log_softmax(-1).numpy()
    with pytest.raises(AlignmentError, match="cannot be aligned to 3 frames"):
        forced_align(log_probs, [1, 1, 2], blank=4)  # 3 tokens + 1 repeat > 3 frames
    assert [s.token for s in forced_align(log_probs, [1, 2, 3], blank=4)] == [1, 2, 3]


def _official_timestamps(path, audio, max_new_tokens):
    """funasr 1.4.16's inference on ``audio``: (text, timestamps), its forced_align served by the
    reference aligner in torchaudio's place (see tests/ctc_reference.py)."""
    import funasr.models.fun_asr_nano.tools.utils as funasr_utils

    from tests.official import official_model

    auto = official_model(str(path))
    waveform, _ = soundfile.read(audio, dtype="float32")
    require = funasr_utils.require_torchaudio
    funasr_utils.require_torchaudio = lambda feature="": TORCHAUDIO_STAND_IN
    try:
        results, _ = auto.model.inference([torch.from_numpy(waveform)], key=["utt"], tokenizer=auto.kwargs["tokenizer"],
                                          frontend=auto.kwargs["frontend"], device="cpu", max_length=max_new_tokens)
    finally:
        funasr_utils.require_torchaudio = require
    return results[0]["text"], results[0]["timestamps"]


@pytest.mark.parametrize("recording", RECORDINGS)
def test_timestamps_match_funasr(tiny_ctc, ctc_model, recording):
    audio = shared_file(recording)
    text, expected = _official_timestamps(tiny_ctc, audio, max_new_tokens=24)
    assert expected, "the reference produced no timestamps"
    waveform, _ = soundfile.read(audio, dtype="float32")
    ours = ctc_model.transcribe(waveform, max_new_tokens=24, repetition_guard=False)
    assert ours.text == text
    family = ctc_model.family
    spans = family.align_tokens(family.ctc_analysis(waveform), ours.text)
    tokenizer = family.checkpoint.ctc.tokenizer
    assert [tokenizer.decode([s.token]) for s in spans] == [t["token"] for t in expected]
    assert [(s.start, s.end) for s in spans] == [(round(t["start_time"] / 0.06), round(t["end_time"] / 0.06))
                                                  for t in expected]
    assert [s.start * family.frame_seconds for s in spans] == pytest.approx([t["start_time"] for t in expected])
    assert [s.score for s in spans] == pytest.approx([t["score"] for t in expected], abs=1e-3)


def _check_words(segment, text):
    words = segment.words
    assert words, "no words"
    assert "".join(w.word for w in words) == text
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    for word, following in zip(words, words[1:]):
        assert word.start <= word.end <= following.start
    assert segment.start <= words[0].start and words[-1].end <= segment.end + 1e-6
    assert all(0.0 <= w.probability <= 1.0 for w in words)


def test_words_are_monotonic_in_bounds_and_join_to_the_text(ctc_model, binhai):
    result = ctc_model.transcribe(binhai, word_timestamps=True, max_new_tokens=16)
    (segment,) = result.segments
    _check_words(segment, segment.text)


def test_the_json_writer_carries_the_words(ctc_model, binhai):
    import io
    import json

    from funasr_nano.writers import write_json

    result = ctc_model.transcribe(binhai, word_timestamps=True, max_new_tokens=8)
    buffer = io.StringIO()
    write_json(result, buffer)
    words = json.loads(buffer.getvalue())["segments"][0]["words"]
    assert words == [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability}
                     for w in result.segments[0].words]


def test_words_of_long_audio_are_offset_by_their_vad_segment(ctc_model, binhai):
    first, _ = soundfile.read(binhai, dtype="float32")
    second, _ = soundfile.read(shared_file("audio/zh_welcome.wav"), dtype="float32")
    audio = np.concatenate([first, np.zeros(3 * 16000, np.float32), second])  # a 3 s pause: two VAD segments
    result = ctc_model.transcribe(audio, vad=True, word_timestamps=True, max_new_tokens=12, silence_gate=False)
    assert len(result.segments) == 2 and result.segments[1].start > 8.5
    for segment in result.segments:
        _check_words(segment, segment.text)
    later = result.segments[-1]
    assert later.words[0].start >= later.start > 0


def test_words_follow_spaces_cjk_characters_and_punctuation(ctc_model, binhai):
    family = ctc_model.family
    analysis = family.ctc_analysis(soundfile.read(binhai, dtype="float32")[0])
    english = family.align_words(analysis, "hello world, the model.", offset=1.5)
    assert [w.word for w in english] == ["hello", " world,", " the", " model."]
    assert english[0].start >= 1.5
    chinese = family.align_words(analysis, "我想问，滨海新区有房。")
    assert [w.word for w in chinese] == ["我", "想", "问，", "滨", "海", "新", "区", "有", "房。"]


def test_words_of_tokens_split_inside_a_character():
    from funasr_nano.models.alignment import TokenSpan

    data = "好".encode("utf-8")
    pieces = {1: data[:1], 2: data[1:], 3: b" ok"}
    spans = [TokenSpan(1, 0, 2, 0.5), TokenSpan(2, 3, 4, 0.7), TokenSpan(3, 6, 8, 0.9)]
    words = words_from_spans(spans, pieces.__getitem__, frame_seconds=0.06)
    assert [(w.word, w.start, w.end) for w in words] == [("好", 0.0, 0.24), (" ok", 0.36, 0.48)]
    assert words[0].probability == pytest.approx(0.6)


@pytest.mark.parametrize("layout", ["official", "hf"])
def test_a_checkpoint_without_ctc_is_refused_clearly(tmp_path, binhai, layout):
    model = load_model(write_tiny_checkpoint(str(tmp_path / layout), layout, seed=0))
    assert not model.family.has_ctc
    with pytest.raises(CheckpointError, match=r"CTC branch \(ctc_decoder\.\* and ctc\.ctc_lo\.\*"):
        model.transcribe(binhai, word_timestamps=True)
    with pytest.raises(CheckpointError, match="CTC branch"):  # at the call, before any audio is decoded
        model.transcribe_segments(binhai, word_timestamps=True)
    assert model.transcribe(binhai, max_new_tokens=4).segments[0].words is None


def test_ctc_branch_of_the_released_size_has_86_tensors_in_the_official_names():
    from funasr_nano.models.fun_asr_nano.checkpoint import ctc_head_to_official_state_dict
    from funasr_nano.models.fun_asr_nano.ctc import build_ctc_head
    from funasr_nano.testing.tiny import official_ctc_config

    with torch.device("meta"):
        head, blank = build_ctc_head(official_ctc_config(TinyConfig.full_size(), 58836), 512)
    names = list(ctc_head_to_official_state_dict(head.state_dict()))
    assert len(names) == 86 and blank == 60514
    assert "ctc.ctc_lo.weight" in names and "ctc_decoder.blocks.4.self_attn.linear_q.weight" in names
    assert head.ctc_lo.weight.shape == (60515, 512)


def test_a_ctc_tensor_of_the_wrong_shape_is_named(tmp_path):
    path = write_tiny_checkpoint(str(tmp_path / "bad"), "official", TinyConfig(ctc=True), seed=1)
    checkpoint = torch.load(f"{path}/model.pt", weights_only=True)
    checkpoint["state_dict"]["ctc.ctc_lo.bias"] = torch.zeros(3)
    torch.save(checkpoint, f"{path}/model.pt")
    with pytest.raises(CheckpointError, match=r"ctc\.ctc_lo\.bias"):
        load_model(path)


def test_tiny_cli_writes_a_ctc_checkpoint(tmp_path):
    from funasr_nano.cli import main

    assert main(["tiny", str(tmp_path / "t"), "--layout", "official", "--ctc"]) == 0
    assert (tmp_path / "t" / "multilingual.tiktoken").is_file()
    assert load_model(tmp_path / "t").family.has_ctc
