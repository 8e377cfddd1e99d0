"""The command line's error boundary (issue 12, item 7): one line per failure, the documented exit codes
(funasr_nano.cli.main), outputs that never overwrite anything, flags derived from the option dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from funasr_nano.cli.main import build_parser, main
from funasr_nano.cli.options import add_option_flags, options_from_args
from funasr_nano.options import DecodingOptions, TranscribeOptions, TranslationOptions
from funasr_nano.writers import output_names

from .conftest import shared_file, write_translating_checkpoint


def run_cli(*args, **kwargs):
    arguments = [a if isinstance(a, bytes) else str(a) for a in args]
    return subprocess.run([sys.executable, "-m", "funasr_nano.cli", *arguments], capture_output="stdout" not in kwargs,
                          timeout=300, **kwargs)


def one_error_line(proc, code: int) -> str:
    """The single stderr line of a failed run, after checking the exit code and that nothing leaked."""
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err
    lines = [line for line in err.splitlines() if not re.fullmatch(r"warning: \d+ of \d+ files failed", line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def broken(tmp_path_factory, tiny_official, tiny_hf):
    """Unusable model, adapter and translator folders, and a regular file to put folders under."""
    root = tmp_path_factory.mktemp("broken")
    shutil.copytree(tiny_official, root / "bad-yaml")
    (root / "bad-yaml" / "config.yaml").write_text(": : :\n", encoding="utf-8")
    shutil.copytree(tiny_hf, root / "bad-safetensors")
    with open(root / "bad-safetensors" / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"lora_alpha": 16, "target_modules": ["q_proj"]}))
    (root / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    shutil.copytree(tiny_official / "Qwen3-0.6B", root / "translator")  # a causal LM's config, no weights
    (root / "file.txt").write_text("not a folder")
    return root


@pytest.fixture(scope="module")
def translating(tmp_path_factory):
    """A tiny random official checkpoint that says it was trained for speech translation."""
    return write_translating_checkpoint(tmp_path_factory.mktemp("translating"))


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, binhai):
    folder = tmp_path_factory.mktemp("inputs")
    soundfile.write(folder / "short.wav", np.full(800, 0.01, dtype=np.float32), 16000)  # 0.05 s
    (folder / "random.flac").write_bytes(np.random.default_rng(0).bytes(4000))
    return [str(folder / "short.wav"), str(folder / "random.flac")]


# -- exit 2: bad arguments, unusable model / adapter / translator / output folder, before any input -----

@pytest.mark.parametrize("flags, names", [
    (["--device", "cuda"], "cuda"), (["--device", "banana"], "banana"), (["--device", "meta"], "meta"),
    (["--max-duration", "inf"], "--max-duration"), (["--max-duration", "400", "--no-vad"], "--max-duration"),
    (["--language", "xx"], "--language"), (["--temperature", "0.5", "--beam-size", "2"], "--temperature"),
])
def test_bad_option_is_one_line_exit_2(tiny_official, binhai, flags, names):
    proc = run_cli("transcribe", binhai, "--model", tiny_official, "--max-new-tokens", "2", *flags)
    assert names in one_error_line(proc, 2)


@pytest.mark.parametrize("folder", ["file.txt/out", "/proc/funasr-nano-out"])
def test_unwritable_output_dir_is_refused_before_the_model_loads(broken, binhai, folder):
    folder = str(broken / folder) if not folder.startswith("/") else folder
    # the model folder does not exist either: the output folder is checked first
    line = one_error_line(run_cli("transcribe", binhai, "--model", broken / "missing", "--output-dir", folder), 2)
    assert f"--output-dir {folder}" in line


@pytest.mark.parametrize("model, names", [("bad-safetensors", "bad-safetensors"), ("bad-yaml", "config.yaml")])
def test_unusable_model_is_one_line_exit_2(broken, binhai, model, names):
    assert names in one_error_line(run_cli("transcribe", binhai, "--model", broken / model), 2)


def test_adapter_without_r_and_translator_without_weights(broken, tiny_official, translating, binhai, tmp_path):
    line = one_error_line(run_cli("lora", "merge", tiny_official, broken / "adapter", tmp_path / "merged"), 2)
    assert "adapter_config.json" in line and "no r" in line
    line = one_error_line(run_cli("translate", binhai, "--model", translating, "--mode", "cascade",
                                  "--translator", broken / "translator"), 2)
    assert "translator" in line and str(broken / "translator") in line


def test_verbose_shows_the_traceback(broken, binhai):
    proc = run_cli("transcribe", binhai, "--model", broken / "bad-safetensors", "-v")
    assert proc.returncode == 2 and "Traceback" in proc.stderr.decode()


# -- exit 3: a bug is not a usage error ------------------------------------------------------------

def test_internal_error_is_exit_3_not_2(tiny_official, binhai, monkeypatch, capsys):
    import funasr_nano.load

    def buggy(*args, **kwargs):
        raise ValueError("deep inside")

    monkeypatch.setattr(funasr_nano.load, "load_model", buggy)
    assert main(["transcribe", str(binhai), "--model", str(tiny_official)]) == 3
    err = capsys.readouterr().err
    assert err == "error: internal error: ValueError: deep inside (run with -v for the traceback)\n"
    assert main(["transcribe", str(binhai), "--model", str(tiny_official), "-v"]) == 3
    assert "Traceback" in capsys.readouterr().err


# -- stdout that cannot be written -----------------------------------------------------------------

def test_stdout_full_is_one_line_exit_1(tiny_official, binhai):
    with open("/dev/full", "w") as full:
        proc = run_cli("transcribe", binhai, "--model", tiny_official, "--max-new-tokens", "2", stdout=full,
                       stderr=subprocess.PIPE)
    assert "cannot write to stdout" in one_error_line(proc, 1)


def test_stdout_closed_early_is_a_quiet_exit(tiny_official, binhai):
    process = subprocess.Popen([sys.executable, "-m", "funasr_nano.cli", "transcribe", str(binhai), str(binhai),
                                str(binhai), "--model", str(tiny_official), "--max-new-tokens", "2", "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.read(1)  # as `| head -c1`
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141 and err == ""


# -- exit 1: per-input isolation -------------------------------------------------------------------

def test_non_project_exception_in_a_batch_loses_only_its_file(tiny_official, translating, binhai, tmp_path,
                                                              monkeypatch, capsys):
    from funasr_nano.models.fun_asr_nano.model import FunAsrNanoModel

    waveform, rate = soundfile.read(binhai, dtype="float32")
    bad = tmp_path / "loud.wav"  # peaks at 0.99; the good recordings stay below 0.35
    soundfile.write(bad, waveform[: 3 * rate] * (0.99 / np.abs(waveform).max()), rate)
    files = [str(binhai), str(bad), str(shared_file("audio/zh_mid.wav"))]
    original = FunAsrNanoModel.audio_embeddings

    def flaky(self, samples):  # the loud file (whole, or its VAD segment), alone or in a batch
        if np.abs(samples).max() > 0.9:
            raise RuntimeError("CUDA out of memory (injected)")
        return original(self, samples)

    monkeypatch.setattr(FunAsrNanoModel, "audio_embeddings", flaky)
    common = ["--max-new-tokens", "2", "--format", "json"]
    for command in (["transcribe", *files, "--model", str(tiny_official), "--batch-size", "2", "-q", *common],
                    ["translate", *files, "--model", str(translating), *common]):
        assert main(command) == 1
        out, err = capsys.readouterr()
        assert [json.loads(line)["file"] for line in out.splitlines()] == [files[0], files[2]]
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert errors == [f"error: {bad}: unexpected RuntimeError: CUDA out of memory (injected) "
                          "(run with -v for the traceback)"]
        assert "1 of 3 files failed" in err


def test_translate_rejects_what_transcribe_rejects(translating, binhai, bad_inputs, capsys):
    reports = []
    for command in (["transcribe", "-q"], ["translate"]):
        assert main([*command, str(binhai), *bad_inputs, "--model", str(translating), "--max-new-tokens", "2"]) == 1
        reports.append(capsys.readouterr().err.splitlines())
    assert reports[0] == reports[1] and len(reports[0]) == 3  # two error lines and the summary
    assert all(name in line for name, line in zip(bad_inputs, reports[0]))
    assert reports[0][2] == "warning: 2 of 3 files failed"


# -- outputs never lose or overwrite anything ------------------------------------------------------

def test_output_names_rule(tmp_path):
    assert output_names(["a/clip.wav", "b/clip.wav", "a/clip.flac", "clip-1.wav", "Clip.mp3"], tmp_path) == \
        ["clip", "clip-2", "clip-3", "clip-1", "Clip-4"]
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert output_names([str(notes)], tmp_path, ["txt"]) == ["notes-1"]
    assert output_names([str(notes)], tmp_path, ["json"]) == ["notes"]


def test_colliding_outputs_and_an_output_equal_to_its_input(tiny_official, binhai, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inputs = [tmp_path / "a" / "clip.wav", tmp_path / "b" / "clip.wav", tmp_path / "a" / "clip.flac"]
    shutil.copy(binhai, inputs[0])
    shutil.copy(binhai, inputs[1])
    soundfile.write(inputs[2], *soundfile.read(binhai))
    notes = tmp_path / "a" / "notes.txt"  # not audio: fails, but is never overwritten by its transcript
    notes.write_text("keep me")
    code = main(["transcribe", *map(str, inputs), str(notes), "--model", str(tiny_official), "--max-new-tokens", "2",
                 "--output-dir", str(tmp_path / "a"), "-q", "--format", "json"])
    assert code == 1 and notes.read_text() == "keep me"
    for path, name in zip(inputs, ["clip", "clip-1", "clip-2"]):
        assert json.loads((tmp_path / "a" / f"{name}.json").read_text())["duration"] == pytest.approx(6.0)
    err = capsys.readouterr().err
    assert f"{inputs[1]}: writing clip-1.*" in err and f"{inputs[2]}: writing clip-2.*" in err


def test_file_name_that_is_not_utf8(tiny_official, binhai, bad_inputs, tmp_path):
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")
    shutil.copy(binhai, name)
    proc = run_cli("transcribe", name, bad_inputs[1], "--model", tiny_official, "--max-new-tokens", "2")
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    assert proc.stdout.decode().startswith(f"{tmp_path}/caf\\xe9.wav\t")  # escaped, valid UTF-8
    out = tmp_path / "out"
    proc = run_cli("transcribe", name, "--model", tiny_official, "--max-new-tokens", "2", "--output-dir", out)
    assert proc.returncode == 0 and os.listdir(os.fsencode(out)) == [b"caf\xe9.txt"]
    missing = os.path.join(os.fsencode(tmp_path), b"gone\xff.wav")
    line = one_error_line(run_cli("transcribe", missing, "--model", tiny_official), 1).removeprefix("error: ")
    assert line.startswith(f"{tmp_path}/gone\\xff.wav: ")


# -- flags derived from the option dataclasses -----------------------------------------------------

def test_flags_come_from_the_dataclasses():
    parser = build_parser()
    args = parser.parse_args(["transcribe", "x.wav", "--temperature", "0.7", "--max-segment", "20", "--no-itn",
                              "--hotwords", "滨海新区", "--beam-size", "1", "--vad"])
    options = options_from_args(TranscribeOptions, args)
    assert options == TranscribeOptions(itn=False, hotwords=("滨海新区",), vad=True,
                                        vad_options=dataclasses.replace(TranscribeOptions().vad_options,
                                                                        max_segment_duration=20.0),
                                        decoding=DecodingOptions(temperature=0.7))
    assert options_from_args(TranscribeOptions, parser.parse_args(["transcribe", "x.wav"])) == TranscribeOptions()
    args = parser.parse_args(["translate", "x.wav", "--by-segment", "--temperature", "0.2", "--mode", "cascade"])
    assert options_from_args(TranslationOptions, args) == TranslationOptions(
        stream_by_sentence=False, mode="cascade", decoding=dataclasses.replace(TranslationOptions().decoding, temperature=0.2))
    assert "exit status" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["transcribe", "--help"])


def test_translation_decoding_keeps_its_own_defaults(capsys):
    """TranslationOptions holds a DecodingOptions whose default differs from DecodingOptions() (256 tokens, not
    512): the flags, their --help and overrides by field name start from it."""
    from funasr_nano.options import resolve

    parser = build_parser()
    assert TranslationOptions().decoding.max_new_tokens == 256
    assert options_from_args(TranslationOptions, parser.parse_args(["translate", "x.wav"])) == TranslationOptions()
    given = options_from_args(TranslationOptions, parser.parse_args(["translate", "x.wav", "--max-new-tokens", "12"]))
    assert given.decoding == dataclasses.replace(TranslationOptions().decoding, max_new_tokens=12)
    assert resolve(TranslationOptions, None, {"temperature": 0.5, "mode": "cascade"}) == TranslationOptions(
        mode="cascade", decoding=dataclasses.replace(TranslationOptions().decoding, temperature=0.5))
    with pytest.raises(SystemExit):
        parser.parse_args(["translate", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert re.search(r"--max-new-tokens N [^-]*\(default: 256\)", shown), shown


def test_a_new_field_needs_no_second_definition():
    @dataclasses.dataclass(frozen=True)
    class NewOptions:
        """Options.

        Attributes:
            patience: beam search patience, a factor
                of the beam size.
            loud: shout.
        """

        patience: float = 1.5
        loud: bool = False

    parser = argparse.ArgumentParser()
    add_option_flags(parser, NewOptions)
    assert "beam search patience, a factor of the beam size. (default: 1.5)" in " ".join(parser.format_help().split())
    assert options_from_args(NewOptions, parser.parse_args([])) == NewOptions()
    assert options_from_args(NewOptions, parser.parse_args(["--patience", "2", "--loud"])) == NewOptions(2.0, True)



def test_list_flags_take_commas_and_never_swallow_the_input_files():
    parser = build_parser()
    args = parser.parse_args(["transcribe", "--hotwords", "滨海新区, 达摩院", "a.wav", "b.wav", "--hotword", "x,y"])
    assert args.files == ["a.wav", "b.wav"]
    assert options_from_args(TranscribeOptions, args).hotwords == ("滨海新区", "达摩院", "x,y")
    for old, new in (("--beam-size", "--num-beams"), ("--max-segment", "--max-segment-duration")):
        a = options_from_args(TranscribeOptions, parser.parse_args(["transcribe", "a.wav", old, "3"]))
        assert a == options_from_args(TranscribeOptions, parser.parse_args(["transcribe", "a.wav", new, "3"]))
        assert a != TranscribeOptions()
    args = parser.parse_args(["serve", "--api-key", "k1,with-comma", "--api-key", "k2"])
    assert args.api_key == ["k1,with-comma", "k2"]  # a singular name: repeatable, never split
    args = parser.parse_args(["translate", "a.wav", "--no-stream-by-sentence"])
    assert options_from_args(TranslationOptions, args).stream_by_sentence is False


def _all_flags(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:  # argparse has no public walk over its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_flags(sub, (*path, name))
        elif action.option_strings:
            yield " ".join(path), action


def test_every_flag_of_every_command_says_what_it_does():
    flags = list(_all_flags(build_parser()))
    assert len({command for command, _ in flags}) >= 10
    missing = [f"{command} {action.option_strings[0]}" for command, action in flags
               if not (action.help or "").strip() or action.help == argparse.SUPPRESS]
    assert missing == []


def test_the_demo_model_says_so_and_quiet_hides_it(binhai, tiny_official):
    notice = "embedded demo model"
    proc = run_cli("transcribe", binhai, "--max-new-tokens", "2")
    assert proc.returncode == 0 and notice in proc.stderr.decode()
    assert [line for line in proc.stderr.decode().splitlines() if notice in line][0].startswith("warning: ")
    proc = run_cli("transcribe", binhai, "--max-new-tokens", "2", "-q")
    assert proc.returncode == 0 and notice not in proc.stderr.decode()
    proc = run_cli("transcribe", binhai, "--max-new-tokens", "2", "--model", tiny_official)
    assert proc.returncode == 0 and notice not in proc.stderr.decode()


def test_translate_picks_a_mode_the_model_can_run(binhai, tiny_official, tmp_path, capsys):
    """Without --mode: unified on a model trained for it (the demo model), cascade with the model's own LLM
    on one trained for text translation only, cascade when --translator is given; --translator with
    --mode unified is refused."""
    import yaml

    proc = run_cli("translate", binhai, "--max-new-tokens", "3", "-q", "-v")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "translation mode: unified" in proc.stderr.decode() and proc.stdout.strip()
    text_only = shutil.copytree(tiny_official, tmp_path / "text-only")
    config = yaml.safe_load((text_only / "config.yaml").read_text(encoding="utf-8"))
    config["tasks"] = ["transcribe", "text_translate"]
    (text_only / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    proc = run_cli("translate", binhai, "--model", text_only, "--max-new-tokens", "3", "-v")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "translation mode: cascade" in proc.stderr.decode()
    assert main(["translate", str(binhai), "--model", str(tiny_official), "--translator", "/nonexistent"]) == 2
    assert "no such folder" in capsys.readouterr().err  # cascade: it went for the translator
    assert main(["translate", str(binhai), "--mode", "unified", "--translator", "/nonexistent"]) == 2
    assert "only used with --mode cascade" in capsys.readouterr().err
