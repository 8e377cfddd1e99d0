"""Hostile inputs outside the server (issue 25): a NaN option is an option error (exit 2), a directory,
a FIFO or /dev/null given as audio is reported as what it is (not "no such file"), and a Qwen3-ASR
folder whose tokenizer has a text-only chat template is a checkpoint error naming the template (not an
internal TypeError)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from funasr_nano.errors import AudioDecodeError, CheckpointError

from .conftest import ROOT

EXAMPLE = ROOT / "examples" / "demo_zh.wav"
# Qwen3's text-only template: it concatenates the message content as a string
TEXT_ONLY_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                      "+ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                      "{% endif %}")


@pytest.mark.parametrize("flag, named", [("--max-segment-duration", "--max-segment-duration"),
                                         ("--max-segment", "--max-segment-duration"),  # the alias
                                         ("--speech-pad", "--speech-pad"), ("--max-merge-gap", "--max-merge-gap")])
def test_nan_vad_options_exit_2(flag, named, capsys):
    from funasr_nano.cli.main import main

    assert main(["transcribe", flag, "nan", str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert f"{named}: " in err and "must be a finite number, got nan" in err and err.count("\n") == 1, err


def test_inputs_that_are_not_regular_files(tmp_path):
    from funasr_nano.audio.io import iter_audio, load_audio, probe_duration

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, what in ((tmp_path, "is a directory"), (fifo, "is a FIFO"), ("/dev/null", "is a device"),
                       (tmp_path / "gone.wav", "no such file")):
        for read in (load_audio, probe_duration, lambda p: next(iter_audio(p))):
            with pytest.raises(AudioDecodeError, match=what):
                read(str(path))


def test_cli_reports_a_directory_input(tmp_path, capsys):
    from funasr_nano.cli.main import main

    assert main(["transcribe", str(tmp_path)]) == 1
    assert f"{tmp_path}: is a directory, not an audio file" in capsys.readouterr().err


def test_text_only_chat_template_is_a_checkpoint_error(tiny_qwen3_asr, tmp_path):
    from funasr_nano.load import load_model

    folder = tmp_path / "text-only-template"
    shutil.copytree(tiny_qwen3_asr, folder)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": TEXT_ONLY_TEMPLATE}))
    with pytest.raises(CheckpointError, match="chat template cannot render an audio message.*multimodal template"):
        load_model(str(folder))
