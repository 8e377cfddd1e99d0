"""Fun-ASR-Nano's entry in the family registry (:mod:`funasr_nano.models.registry`): recognition of its four
layouts (official ``config.yaml`` + ``model.pt``; transformers, GGUF and light-runtime folders whose
``config.json`` says ``model_type: fun_asr_nano``), loading on the light runtime (:mod:`.light`) and in torch
(:mod:`.checkpoint`, LoRA adapters included), its options (``use_low_frame_rate``, ``lora``; ``encoder_precision``
fp32/bf16/int8) and its GGUF export (:func:`funasr_nano.export.gguf_folder.export_gguf`).

Imports nothing heavy: the registry reads this module whenever the package loads a model.
"""

from __future__ import annotations

import os

from ...errors import InvalidOptionError
from ..family import Family, FamilyOption, FamilyParts, LoadRequest
from ..recognise import folder_names, read_model_type

MODEL_TYPE = "fun_asr_nano"             # config.json of the transformers, GGUF and light layouts
OFFICIAL_FILES = ("config.yaml", "model.pt")  # the official (FunASR) layout


def recognise(path: str) -> bool:
    """Whether ``path`` holds a Fun-ASR-Nano checkpoint of any layout (file names and ``model_type`` only)."""
    names = folder_names(path)
    return all(name in names for name in OFFICIAL_FILES) or read_model_type(path) == MODEL_TYPE


def adapter_files(lora) -> dict[str, str]:
    """``load_model``'s ``lora`` argument as ``{adapter name: file or folder}``: a single path is the adapter
    of every task (``default``); a mapping goes from task name (:data:`.prompt.TASKS`) to path."""
    if lora is None:
        return {}
    if isinstance(lora, (str, os.PathLike)):
        return {"default": os.fspath(lora)}
    return {str(name): os.fspath(file) for name, file in dict(lora).items()}


def check_task_names(adapters) -> None:
    """A mapping's keys are task names (or ``default``).

    Raises:
        InvalidOptionError: an unknown task (:func:`.prompt.get_task`).
    """
    from .prompt import get_task

    for name in adapters:
        if name != "default":
            get_task(name)


def load_light(request: LoadRequest) -> FamilyParts | None:
    """A GGUF-layout folder with the ONNX audio file for ``encoder_precision`` on the light runtime
    (:class:`.light.LightFunAsrNanoModel`); ``None`` for another layout or a peft LoRA folder (converted
    with torch first)."""
    from .light import LightFunAsrNanoModel, light_folder

    llm_gguf = light_folder(request.path, request.encoder_precision)
    if llm_gguf is None:
        return None
    adapters = adapter_files(request.options.get("lora"))
    if not all(os.path.isfile(file) and str(file).endswith(".gguf") for file in adapters.values()):
        return None
    check_task_names(adapters)
    model = LightFunAsrNanoModel(request.path, request.encoder_precision, n_threads=request.n_threads,
                                 use_low_frame_rate=request.options.get("use_low_frame_rate"))
    return FamilyParts(model, llm_gguf, adapters)


def load_torch(request: LoadRequest) -> FamilyParts:
    """Any layout in torch (:func:`.checkpoint.load_checkpoint`). LoRA adapters: for the transformers engine
    loaded into the LLM here (per batch row, :func:`funasr_nano.models.lora.enable_row_adapters`); for
    llama.cpp handed to the engine; for vLLM refused by the loader (merge them first)."""
    from .checkpoint import load_checkpoint

    checkpoint = load_checkpoint(request.path, device=request.device, dtype=request.dtype,
                                 use_low_frame_rate=request.options.get("use_low_frame_rate"))
    lora = request.options.get("lora")
    if lora is None:
        return parts_of(checkpoint, request, {})
    engine = request.engine_for(checkpoint.llm_gguf)
    from ..lora import GGUF_LORA_NEEDS_LLAMA_CPP, enable_row_adapters, load_adapter

    adapters = adapter_files(lora)
    if engine == "vllm":
        return parts_of(checkpoint, request, adapters)  # the loader refuses: the vllm engine runs merged weights
    check_task_names(adapters)
    if engine == "transformers":
        for name, folder in adapters.items():
            if os.path.isfile(folder) and folder.endswith(".gguf"):
                raise InvalidOptionError(f"{folder}: {GGUF_LORA_NEEDS_LLAMA_CPP}")
            load_adapter(checkpoint.model, folder, name)
        enable_row_adapters(checkpoint.model)
        checkpoint.model.to(request.device)
    return parts_of(checkpoint, request, adapters)


def from_checkpoint(checkpoint, request: LoadRequest) -> FamilyParts:
    """A loaded :class:`.checkpoint.LoadedCheckpoint` (``options["lora"]``: ``{name: adapter}`` already in
    its LLM, or GGUF LoRA files / peft folders for llama.cpp)."""
    return parts_of(checkpoint, request, dict(request.options.get("lora") or {}))


def parts_of(checkpoint, request: LoadRequest, adapters) -> FamilyParts:
    """:class:`.model.FunAsrNanoModel` of ``checkpoint`` at ``request.encoder_precision``, with its GGUF
    file (GGUF layout) and LLM config (for converting peft adapters)."""
    from .model import FunAsrNanoModel

    return FamilyParts(FunAsrNanoModel(checkpoint, request.encoder_precision), checkpoint.llm_gguf, adapters,
                       checkpoint.model.config.text_config)


def lora_config(path: str):
    """The LLM's transformers config of the checkpoint at ``path`` (any layout)."""
    from .checkpoint import load_checkpoint

    return load_checkpoint(path).model.config.text_config


FAMILY = Family(
    name="fun-asr-nano",
    title="Fun-ASR-Nano",
    recognise=recognise,
    layouts="config.yaml + model.pt (official layout), or config.json with model_type fun_asr_nano + *.safetensors "
            "(transformers layout) or + *.gguf (GGUF layout)",
    load_torch=load_torch,
    from_checkpoint=from_checkpoint,
    load_light=load_light,
    options=(
        FamilyOption("use_low_frame_rate", "use_low_frame_rate is a Fun-ASR-Nano setting; {family} has no such option"),
        FamilyOption("lora", "LoRA adapters are not supported for {family}"),
    ),
    export_gguf="funasr_nano.export.gguf_folder:export_gguf",
    lora_config=lora_config,
    tiny=(("fun-asr-nano", "funasr_nano.testing.tiny:write_tiny"),),
)
