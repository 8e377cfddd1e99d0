"""The family registry: each built-in layout is recognised by its family, an unknown folder is one error naming
the known families, and a third family registered at run time (a toy built from Fun-ASR-Nano's parts, with its
own prompt and language table) loads, transcribes, refuses what it does not declare and exports through
``funasr-nano export gguf``, without any shared module edited: only ``register`` / ``unregister`` here."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import pytest

from funasr_nano import CheckpointError, InvalidOptionError, load_model
from funasr_nano.cli.main import main
from funasr_nano.errors import UnsupportedLanguageError
from funasr_nano.load import DEFAULT_LIGHT_MODEL, DEFAULT_MODEL, from_checkpoint
from funasr_nano.models import registry
from funasr_nano.models.family import ExportOption, Family, FamilyOption, FamilyParts
from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
from funasr_nano.models.fun_asr_nano.model import FunAsrNanoModel
from funasr_nano.models.recognise import folder_names

TOY_MARKER = "toy-family.json"  # beside a Fun-ASR-Nano checkpoint: {"languages": {code: name}}
EXPORTS: list[dict] = []        # what export_toy was called with


class ToyModel(FunAsrNanoModel):
    """Fun-ASR-Nano's audio path and LLM with the toy family's own instruction and language table."""

    def __init__(self, checkpoint, encoder_precision: str = "fp32"):
        super().__init__(checkpoint, encoder_precision)
        with open(pathlib.Path(checkpoint.path) / TOY_MARKER, encoding="utf-8") as f:
            self.languages = dict(json.load(f)["languages"])
        self.instructions: list[str] = []

    def check_language(self, language):
        if language is not None and language not in self.languages:
            raise UnsupportedLanguageError(f"the toy family knows {sorted(self.languages)}, not {language!r}")
        return language

    def transcription_prompt(self, language, hotwords, itn):
        language = self.check_language(language)
        instruction = "Toy transcript" + (f" in {self.languages[language]}" if language else "") + ":"
        self.instructions.append(instruction)
        return instruction


def recognise_toy(path: str) -> bool:
    return TOY_MARKER in folder_names(path)


def load_toy(request):
    checkpoint = load_checkpoint(request.path, device=request.device, dtype=request.dtype)
    return toy_from_checkpoint(checkpoint, request)


def toy_from_checkpoint(checkpoint, request):
    return FamilyParts(ToyModel(checkpoint, request.encoder_precision), checkpoint.llm_gguf)


def export_toy(model, out_dir, out_type, *, n_threads=None, toy_level=1):
    """The toy family's GGUF export (a stand-in: records the call, writes the marker)."""
    EXPORTS.append({"model": model, "out_type": out_type, "n_threads": n_threads, "toy_level": toy_level})
    pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
    (pathlib.Path(out_dir) / TOY_MARKER).write_text("{}")
    return str(out_dir)


def write_toy(path, *, layout="official", seed=0, ctc=False):
    """The toy family's ``tiny`` writer: a tiny Fun-ASR-Nano checkpoint and the marker."""
    from funasr_nano.testing.tiny import write_tiny

    write_tiny(path, layout=layout, seed=seed, ctc=ctc)
    (pathlib.Path(path) / TOY_MARKER).write_text(json.dumps({"languages": {"toy": "Toylish"}}))
    return path


TOY = Family(
    name="toy", title="Toy", recognise=recognise_toy, layouts=f"{TOY_MARKER} beside a Fun-ASR-Nano checkpoint",
    load_torch=load_toy, from_checkpoint=toy_from_checkpoint,
    engines=("transformers", "llama.cpp"), engine_refusal="the toy family is not served by vLLM",
    export_gguf=f"{__name__}:export_toy",
    export_options=(ExportOption("--toy-level", "toy_level", "how toy the export is", default=1, type=int),),
    tiny=(("toy", f"{__name__}:write_toy"),),
)


@pytest.fixture
def toy(tiny_hf, tmp_path):
    """A toy checkpoint (the tiny transformers-layout Fun-ASR-Nano + the marker), the toy family registered."""
    folder = tmp_path / "toy"
    shutil.copytree(tiny_hf, folder)
    (folder / TOY_MARKER).write_text(json.dumps({"languages": {"toy": "Toylish", "zh": "Chinese"}}))
    registry.register(TOY)
    EXPORTS.clear()
    yield folder
    registry.unregister("toy")


def _fake_gguf_folder(path: pathlib.Path, model_type: str) -> pathlib.Path:
    """A GGUF-layout folder's files (empty): recognition reads names and config.json only."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": model_type, "llm_gguf": "llm-q8_0.gguf"}))
    for name in ("audio.safetensors", "llm-q8_0.gguf"):
        (path / name).write_bytes(b"")
    return path


def test_each_built_in_layout_is_recognised(tiny_official, tiny_hf, tiny_qwen3_asr, tiny_qwen3_asr_hf, tmp_path):
    from funasr_nano.models.recognise import is_gguf_folder

    fun_gguf = _fake_gguf_folder(tmp_path / "fun-gguf", "fun_asr_nano")
    qwen_gguf = _fake_gguf_folder(tmp_path / "qwen-gguf", "qwen3_asr")
    for folder in (tiny_official, tiny_hf, DEFAULT_MODEL, DEFAULT_LIGHT_MODEL, fun_gguf):
        assert registry.family_for(folder).name == "fun-asr-nano", folder
    for folder in (tiny_qwen3_asr, tiny_qwen3_asr_hf, qwen_gguf):
        assert registry.family_for(folder).name == "qwen3-asr", folder
    assert is_gguf_folder(fun_gguf) and is_gguf_folder(qwen_gguf)  # one convention for both families
    assert not any(is_gguf_folder(f) for f in (tiny_official, tiny_hf, tiny_qwen3_asr, DEFAULT_LIGHT_MODEL))


def test_a_folder_no_family_recognises(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        registry.family_for(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"not a Fun-ASR-Nano checkpoint \(expected config.yaml \+ model.pt.*"
                                              r"not a Qwen3-ASR checkpoint.*known families: fun-asr-nano, qwen3-asr"):
        registry.family_for(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert registry.find_family(tmp_path) is None


def test_register_and_unregister(toy):
    assert [f.name for f in registry.families()] == ["toy", "fun-asr-nano", "qwen3-asr"]
    with pytest.raises(ValueError, match="registered already"):
        registry.register(TOY)
    with pytest.raises(KeyError, match="no family named 'nope'"):
        registry.unregister("nope")
    assert registry.family_for(toy) is TOY
    with pytest.raises(ValueError, match="engine_refusal must say why"):
        dataclasses.replace(TOY, engine_refusal="")


def test_a_registered_family_loads_and_transcribes(toy, binhai):
    model = load_model(toy)
    assert type(model.family) is ToyModel and model.engine.name == "transformers"
    assert model.family.transcription_prompt("toy", [], True) == "Toy transcript in Toylish:"
    model.family.instructions.clear()
    result = model.transcribe(binhai, language="toy", max_new_tokens=4, vad=False)
    assert len(result.tokens) > 0 and model.family.instructions == ["Toy transcript in Toylish:"]
    with pytest.raises(UnsupportedLanguageError, match="not 'en'"):
        model.transcribe(binhai, language="en", max_new_tokens=2)
    # from_checkpoint consults the registry too
    assert type(from_checkpoint(load_checkpoint(str(toy))).family) is ToyModel
    registry.unregister("toy")  # the same folder is a plain Fun-ASR-Nano checkpoint again
    try:
        assert type(load_model(toy).family) is FunAsrNanoModel
    finally:
        registry.register(TOY)


@pytest.mark.parametrize("kwargs, message", [
    ({"lora": "adapter"}, "LoRA adapters are not supported for Toy"),
    ({"use_low_frame_rate": True}, "use_low_frame_rate is a Fun-ASR-Nano setting; Toy has no such option"),
    ({"aligner": "aligner-folder"}, "aligner=aligner-folder: Qwen3-ForcedAligner times the words of Qwen3-ASR models"),
    ({"engine": "vllm"}, "the toy family is not served by vLLM"),
])
def test_what_a_registered_family_does_not_declare_is_refused(toy, kwargs, message):
    with pytest.raises(InvalidOptionError, match=message):
        load_model(toy, **kwargs)


def test_export_gguf_goes_through_the_registry(toy, tiny_hf, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "gguf", str(toy), str(out), "--toy-level", "3", "--type", "f16"]) == 0
    assert EXPORTS == [{"model": str(toy), "out_type": "f16", "n_threads": None, "toy_level": 3}]
    assert (out / TOY_MARKER).is_file() and f"load_model('{out}')" in capsys.readouterr().out
    # a flag the family does not declare, or another family's flag, is refused by name
    assert main(["export", "gguf", str(toy), str(out), "--arch", "qwen3"]) == 2
    assert "--arch and --mrope-section apply to Qwen3-ASR checkpoints only" in capsys.readouterr().err
    assert main(["export", "gguf", str(tiny_hf), str(out), "--toy-level", "2"]) == 2
    assert "--toy-level applies to Toy checkpoints only" in capsys.readouterr().err
    assert main(["export", "hf", str(toy), str(out)]) == 2
    assert "export hf writes the LLM of a Qwen3-ASR checkpoint; this is not one" in capsys.readouterr().err
    registry.unregister("toy")
    registry.register(dataclasses.replace(TOY, export_gguf=None, export_options=()))
    assert main(["export", "gguf", str(toy), str(out)]) == 2
    assert "a Toy model has no GGUF export" in capsys.readouterr().err
    assert len(EXPORTS) == 1


def test_funasr_nano_tiny_writes_what_the_registered_families_declare(toy, tmp_path):
    assert main(["tiny", str(tmp_path / "t"), "--family", "toy", "--layout", "hf"]) == 0
    assert registry.family_for(tmp_path / "t").name == "toy"
    assert main(["tiny", str(tmp_path / "d")]) == 0  # the default stays the demo model's family
    assert registry.family_for(tmp_path / "d").name == "fun-asr-nano"
    assert main(["tiny", str(tmp_path / "q"), "--family", "qwen3-asr", "--ctc"]) == 2  # no CTC branch
    registry.unregister("toy")
    try:
        with pytest.raises(SystemExit) as exited:  # no longer a choice: argparse's usage error
            main(["tiny", str(tmp_path / "u"), "--family", "toy"])
        assert exited.value.code == 2
    finally:
        registry.register(TOY)


def test_a_registered_family_declares_its_own_load_option(toy, binhai):
    toy_with_option = dataclasses.replace(TOY, name="toy-opt", options=(
        FamilyOption("toy_voice", "toy_voice is a Toy-with-options setting; {family} has no such option",
                     flag="--toy-voice", metavar="VOICE", help="the toy's voice", commands=("transcribe",)),))
    registry.unregister("toy")
    registry.register(toy_with_option)
    try:
        seen = []
        original = toy_with_option.load_torch

        def spy(request):
            seen.append(dict(request.options))
            return original(request)

        registry.unregister("toy-opt")
        registry.register(dataclasses.replace(toy_with_option, load_torch=spy))
        load_model(toy, toy_voice="squeaky")  # no edit of load_model: the keyword reaches the family's hook
        assert seen == [{"toy_voice": "squeaky"}]
        with pytest.raises(InvalidOptionError, match="toy_voice is a Toy-with-options setting; Fun-ASR-Nano has no"):
            load_model(None, toy_voice="squeaky")  # the demo model's family does not take it
        with pytest.raises(InvalidOptionError, match="no_such_option does not apply to Toy models"):
            load_model(toy, no_such_option=1)
        # the CLI adds the declared flag to the commands named, and hands its value to load_model
        assert main(["transcribe", str(binhai), "--model", str(toy), "--toy-voice", "shrill", "--max-new-tokens", "2",
                     "-q"]) == 0
        assert seen[-1] == {"toy_voice": "shrill"}
        with pytest.raises(SystemExit):  # serve was not named: no such flag there
            main(["serve", "--model", str(toy), "--toy-voice", "shrill"])
    finally:
        registry.unregister("toy-opt")
        registry.register(TOY)
