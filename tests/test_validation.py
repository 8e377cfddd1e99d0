"""The option checks written once (funasr_nano.validation) and their users: one message form for a number out of
range, whichever dataclass holds it (transcription, VAD, server and training options)."""

from __future__ import annotations

import math

import pytest

from funasr_nano.audio.vad import VadOptions
from funasr_nano.errors import InvalidOptionError, TrainingError
from funasr_nano.options import DecodingOptions, TranscribeOptions, TranslationOptions
from funasr_nano.server.config import ServerOptions
from funasr_nano.training.config import TrainConfig
from funasr_nano.validation import check_choice, check_number, check_switch, number_problem


@pytest.mark.parametrize("value, bounds, message", [
    (0, dict(low=1, integer=True), "n must be an integer >= 1, got 0"),
    (2.0, dict(low=1, integer=True), "n must be an integer >= 1, got 2.0"),
    (True, dict(low=0, integer=True), "n must be an integer >= 0, got True"),
    (70000, dict(low=0, high=65535, integer=True), "n must be an integer in [0, 65535], got 70000"),
    (math.nan, dict(low=0.0), "n must be a finite number, got nan"),
    (math.inf, {}, "n must be a finite number, got inf"),
    ("1e-4", dict(low=0.0), "n must be a finite number, got '1e-4'"),
    (-0.5, dict(low=0.0), "n must be >= 0, got -0.5"),
    (0.0, dict(low=0.0, low_open=True), "n must be > 0, got 0.0"),
    (1.0, dict(low=0.0, high=1.0, low_open=True, high_open=True), "n must be in (0, 1), got 1.0"),
    (1.5, dict(low=0.0, high=1.0), "n must be in [0, 1], got 1.5"),
    (6.0, dict(high=5.0), "n must be <= 5, got 6.0"),
])
def test_number_messages(value, bounds, message):
    assert number_problem("n", value, **bounds) == message
    with pytest.raises(InvalidOptionError) as caught:
        check_number("n", value, **bounds)
    assert str(caught.value) == message and type(caught.value) is InvalidOptionError


@pytest.mark.parametrize("value, bounds", [(1, dict(low=1, integer=True)), (0.0, dict(low=0.0)),
                                           (1, dict(low=0.0, high=1.0)), (65535, dict(low=0, high=65535, integer=True))])
def test_numbers_in_range_pass(value, bounds):
    assert number_problem("n", value, **bounds) is None


def test_switches_and_choices():
    check_switch("x", False)
    check_switch("x", None, optional=True)
    with pytest.raises(InvalidOptionError, match=r"^x must be True or False, got 1$"):
        check_switch("x", 1)
    with pytest.raises(InvalidOptionError, match=r"^x must be True, False or None, got 'yes'$"):
        check_switch("x", "yes", optional=True)
    check_choice("mode", "a", ("a", "b"))
    with pytest.raises(InvalidOptionError, match=r"^mode must be one of \('a', 'b'\), not 'c'$"):
        check_choice("mode", "c", ("a", "b"))


@pytest.mark.parametrize("build, message", [
    (lambda: DecodingOptions(temperature=-1.0), "temperature must be >= 0, got -1.0"),
    (lambda: TranscribeOptions(no_speech_threshold=1.5), "no_speech_threshold must be in [0, 1], got 1.5"),
    (lambda: TranscribeOptions(itn="no"), "itn must be True or False, got 'no'"),
    (lambda: TranslationOptions(mode="both"), "mode must be one of ('unified', 'cascade'), not 'both'"),
    (lambda: VadOptions(speech_pad=-0.1), "speech_pad must be >= 0, got -0.1"),
    (lambda: VadOptions(threshold=1.0), "threshold must be in (0, 1), got 1.0"),
    (lambda: VadOptions(max_segment_duration=math.nan), "max_segment_duration must be a finite number, got nan"),
    (lambda: ServerOptions(port=70000), "port must be an integer in [0, 65535], got 70000"),
    (lambda: ServerOptions(request_timeout=0.0), "request_timeout must be > 0, got 0.0"),
    (lambda: ServerOptions(arrival_wait=-1.0), "arrival_wait must be >= 0, got -1.0"),
    (lambda: ServerOptions(max_queue=0), "max_queue must be an integer >= 1, got 0"),
])
def test_option_dataclasses_share_the_messages(build, message):
    with pytest.raises(InvalidOptionError) as caught:
        build()
    assert str(caught.value) == message


def test_training_config_collects_the_same_messages():
    with pytest.raises(TrainingError) as caught:
        TrainConfig(model="m", train_manifests=("a.jsonl",), output_dir="o", batch_size=0, learning_rate="1e-4",
                    min_lr_ratio=2.0, precision="fp16")
    assert str(caught.value) == ("bad training config: batch_size must be an integer >= 1, got 0; "
                                 "learning_rate must be a finite number, got '1e-4'; "
                                 "min_lr_ratio must be in [0, 1], got 2.0; "
                                 "precision must be one of ('fp32', 'bf16'), not 'fp16'")
