"""Qwen3-ASR's entry in the family registry (:mod:`funasr_nano.models.registry`): recognised by
``config.json``'s ``model_type: qwen3_asr`` (official, transformers and GGUF layouts), loaded on the light
runtime (:mod:`.light`, fp32 or int8 ONNX audio tower) or in torch (:mod:`.checkpoint`, :mod:`.gguf_layout`),
with Qwen3-ForcedAligner beside it (``aligner``), the thinker's GGUF file checked against ``config.json``'s
M-RoPE sections (:func:`funasr_nano.export.thinker_file.check_model_gguf`), and its exports (GGUF-layout
folder with ``--arch`` / ``--mrope-section``; the thinker alone as a transformers checkpoint).

Imports nothing heavy: the registry reads this module whenever the package loads a model.
"""

from __future__ import annotations

import os

from ...errors import InvalidOptionError
from ..family import ExportOption, Family, FamilyOption, FamilyParts, LoadRequest
from ..recognise import read_model_type

MODEL_TYPE = "qwen3_asr"  # as .checkpoint.MODEL_TYPE (that module needs torch)
NO_VLLM = ("the vllm engine runs Fun-ASR-Nano models only (not yet tested with Qwen3-ASR's multimodal RoPE); "
           "use the transformers or llama.cpp engine")


def recognise(path: str) -> bool:
    """Whether ``path`` holds a Qwen3-ASR checkpoint (any layout): ``config.json`` says ``model_type: qwen3_asr``."""
    return read_model_type(path) == MODEL_TYPE


def check_aligner(aligner) -> None:
    """``aligner=`` names a folder.

    Raises:
        InvalidOptionError: not a path.
    """
    if not isinstance(aligner, (str, os.PathLike)) or not os.fspath(aligner):
        raise InvalidOptionError(f"aligner must be a Qwen3-ForcedAligner folder, got {aligner!r}")


def check_encoder_precision(encoder_precision: str) -> None:
    """Qwen3-ASR's torch audio tower runs in fp32 only.

    Raises:
        InvalidOptionError: another precision.
    """
    if encoder_precision != "fp32":
        raise InvalidOptionError(f"encoder_precision={encoder_precision!r}: Qwen3-ASR's torch encoder runs in fp32 "
                                 "only (int8 runs on the light runtime: a GGUF-layout folder from funasr-nano export "
                                 "gguf, with audio-int8.onnx)")


def load_forced_aligner(path: str | os.PathLike, device, dtype):
    """Qwen3-ForcedAligner (official or transformers layout) at ``path`` on ``device`` (a ``torch.device``),
    its LLM in ``dtype`` (a ``torch.dtype``): :class:`.aligner.ForcedAligner`.

    Raises:
        CheckpointError: naming the file of a folder that is no Qwen3-ForcedAligner checkpoint.
    """
    from .aligner import ForcedAligner
    from .aligner_checkpoint import load_aligner

    return ForcedAligner(load_aligner(os.fspath(path), device=device, dtype=dtype))


def load_light(request: LoadRequest) -> FamilyParts | None:
    """A GGUF-layout folder with its ONNX audio tower for ``encoder_precision`` (fp32, int8) on the light
    runtime (:class:`.light.LightQwen3AsrModel`); ``None`` for another layout, or with ``aligner`` (the
    forced aligner runs in torch)."""
    from .light import LightQwen3AsrModel, light_folder

    if request.options.get("aligner") is not None or light_folder(request.path, request.encoder_precision) is None:
        return None
    model = LightQwen3AsrModel(request.path, request.encoder_precision, n_threads=request.n_threads)
    return FamilyParts(model, model.llm_gguf)


def load_torch(request: LoadRequest) -> FamilyParts:
    """Any layout in torch; the engine is checked before any weights are read, the aligner (a wrong folder is
    one quick error) before the model."""
    from .checkpoint import load_checkpoint
    from .gguf_layout import gguf_path, load_gguf_folder

    check_encoder_precision(request.encoder_precision)
    llm_gguf = gguf_path(request.path)  # None unless the folder is in the GGUF layout (funasr-nano export gguf)
    request.engine_for(llm_gguf)
    aligner = request.options.get("aligner")
    loaded_aligner = None if aligner is None else load_forced_aligner(aligner, request.device, request.dtype)
    if llm_gguf is not None:
        checkpoint, llm_gguf = load_gguf_folder(request.path, device=request.device)
    else:
        checkpoint = load_checkpoint(request.path, device=request.device, dtype=request.dtype)
    from .model import Qwen3AsrModel

    return FamilyParts(Qwen3AsrModel(checkpoint, aligner=loaded_aligner), llm_gguf)


def from_checkpoint(checkpoint, request: LoadRequest) -> FamilyParts:
    """A loaded :class:`.checkpoint.LoadedCheckpoint`; ``options``: ``encoder_attention`` (as
    :class:`.model.Qwen3AsrModel`), ``llm_gguf`` (the thinker's GGUF file of a GGUF-layout folder, run by
    llama.cpp), ``aligner`` (a loaded :class:`.aligner.ForcedAligner`)."""
    from .model import Qwen3AsrModel

    check_encoder_precision(request.encoder_precision)
    options = request.options
    model = Qwen3AsrModel(checkpoint, options.get("encoder_attention", "windowed"), aligner=options.get("aligner"))
    return FamilyParts(model, options.get("llm_gguf"))


FAMILY = Family(
    name="qwen3-asr",
    title="Qwen3-ASR",
    recognise=recognise,
    layouts="config.json with model_type qwen3_asr",
    load_torch=load_torch,
    from_checkpoint=from_checkpoint,
    load_light=load_light,
    options=(
        FamilyOption("aligner", "aligner={value}: Qwen3-ForcedAligner times the words of Qwen3-ASR models; {model} "
                                "is not one (a {family} model)", check=check_aligner,
                     flag="--aligner", metavar="DIR",
                     help="a Qwen3-ForcedAligner checkpoint folder (official or transformers layout), loaded beside "
                          "the model: its word timestamps (--word-timestamps) come from this separate model"),
    ),
    checkpoint_options=("encoder_attention", "llm_gguf"),
    engines=("transformers", "llama.cpp"),
    engine_refusal=NO_VLLM,
    check_llm_gguf="funasr_nano.export.thinker_file:check_model_gguf",
    export_gguf="funasr_nano.export.thinker_gguf:export_gguf_folder",
    export_options=(
        ExportOption("--arch", "arch", "the LLM as llama.cpp qwen3vl (interleaved M-RoPE sections in the header, "
                     "the default) or plain qwen3 (ordinary RoPE, exact for speech prompts)",
                     default="qwen3vl", choices=("qwen3vl", "qwen3")),
        ExportOption("--mrope-section", "mrope_section", "the LLM's M-RoPE sections when the checkpoint does not "
                     "record them (the -hf layout; Qwen3-ASR: 24 20 20)", type=int, nargs=3, metavar=("T", "H", "W")),
    ),
    export_hf="funasr_nano.export.thinker:export_thinker_hf",
    tiny=(("qwen3-asr", "funasr_nano.testing.tiny_qwen3_asr:write_tiny"),
          ("qwen3-forced-aligner", "funasr_nano.testing.tiny_qwen3_aligner:write_tiny")),
)
