"""Qwen3-ASR's LLM (the "thinker") as a GGUF file for llama.cpp.

Two forms, chosen by ``arch``:

* ``qwen3vl`` (default): llama.cpp's Qwen3-VL text architecture, as llama.cpp's own converter writes
  Qwen3-ASR / Qwen3-Omni thinkers: interleaved multimodal RoPE with ``rope.dimension_sections`` = the
  checkpoint's ``mrope_section`` padded to four entries (``[24, 20, 20, 0]`` for Qwen3-ASR-0.6B/1.7B),
  q/k norm tensors, the tokenizer. llama.cpp then reads four position entries per embedding input
  (t, h, w, and a fourth); :class:`funasr_nano.engines.llamacpp.LlamaCppEngine` fills them as llama.cpp's
  multimodal helper does for audio (``mtmd-helper.cpp``, ``set_position_mrope_1d``).
* ``qwen3``: plain Qwen3 with ordinary RoPE. Exact for Qwen3-ASR because its prompts put every
  position at the same index on the t, h and w axes, where interleaved MRoPE is plain RoPE (proved by
  ``tests/test_thinker_export.py``); stock llama.cpp tools that know nothing of M-RoPE run it.

The tensors come from the checkpoint's files through the explicit key map of
:mod:`funasr_nano.export.thinker` (shapes checked, leftovers refused), the GGUF writing from
:func:`funasr_nano.export.gguf.write_causal_lm_gguf` (llama.cpp's names from the ``gguf`` constants,
quantized types by llama.cpp's own quantizer).
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import torch

from ..errors import CheckpointError, InvalidOptionError
from .thinker_file import check_thinker_gguf, gguf_sections  # noqa: F401
from .gguf import OUT_TYPES, write_causal_lm_gguf
from .gguf_architectures import Qwen3Architecture, Qwen3VLArchitecture
from .thinker import load_tokenizer, read_source, read_thinker_state, thinker_config

logger = logging.getLogger(__name__)

# --arch value -> exporter
THINKER_ARCHITECTURES = {"qwen3vl": Qwen3VLArchitecture, "qwen3": Qwen3Architecture}


def thinker_architecture(config, arch: str = "qwen3vl"):
    """The GGUF exporter of the thinker ``config`` (:func:`funasr_nano.export.thinker.thinker_config`)
    in form ``arch`` (``qwen3vl`` or ``qwen3``).

    Raises:
        InvalidOptionError: an unknown ``arch``.
        CheckpointError: ``qwen3vl`` without sections (or with sections that do not fill the head).
    """
    if arch not in THINKER_ARCHITECTURES:
        raise InvalidOptionError(f"unknown GGUF architecture {arch!r} for the Qwen3-ASR LLM; use one of "
                                 f"{', '.join(THINKER_ARCHITECTURES)}")
    return THINKER_ARCHITECTURES[arch](config)


def write_thinker_gguf(model_path: str | os.PathLike, path: str | os.PathLike, out_type: str = "f32", *,
                       arch: str = "qwen3vl", mrope_section: Sequence[int] | None = None,
                       n_threads: int | None = None) -> str:
    """Write the LLM of the Qwen3-ASR checkpoint ``model_path`` (official or -hf layout) as a GGUF file.

    Args:
        path: the ``.gguf`` file to write.
        out_type: ``f32``, ``f16``, ``bf16`` or a llama.cpp quantization (``q8_0``, ``q4_k_m``, ...).
        arch: ``qwen3vl`` (interleaved M-RoPE, the sections in the header) or ``qwen3`` (plain RoPE).
        mrope_section: the sections when the checkpoint does not record them (the -hf layout drops
            them; Qwen3-ASR's are ``[24, 20, 20]``); a value that contradicts the checkpoint's is an error.
        n_threads: quantizer threads.

    Returns:
        ``path`` as a string.

    Raises:
        InvalidOptionError: an unknown ``out_type`` or ``arch``, contradicting sections.
        CheckpointError: not a Qwen3-ASR checkpoint, LLM tensors that do not match its config, or
            ``qwen3vl`` without sections.
    """
    if out_type not in OUT_TYPES:
        raise InvalidOptionError(f"unknown GGUF type {out_type!r}; use one of {', '.join(OUT_TYPES)}")
    source = read_source(model_path)
    config = thinker_config(source)
    if mrope_section is not None:
        given = [int(v) for v in mrope_section]
        if source.mrope_section is not None and list(source.mrope_section) != given:
            raise InvalidOptionError(f"mrope_section {given} contradicts the checkpoint's {list(source.mrope_section)}")
        config.mrope_section, config.mrope_interleaved = given, True
    elif arch == "qwen3vl" and source.mrope_section is None:
        raise CheckpointError(f"{source.path} does not record the LLM's mrope_section (the -hf layout drops it); "
                              "pass it (Qwen3-ASR: --mrope-section 24 20 20) or write plain qwen3 (--arch qwen3)")
    architecture = thinker_architecture(config, arch)
    state = read_thinker_state(source, config, torch.float32)
    tokenizer = load_tokenizer(source)
    written = write_causal_lm_gguf(architecture, state, tokenizer, path, out_type, name="Qwen3-ASR LLM",
                                   n_threads=n_threads)
    if arch == "qwen3vl":
        check_thinker_gguf(written, config.mrope_section)
    return written


def export_gguf_folder(model_path: str | os.PathLike, out_dir: str | os.PathLike, out_type: str = "q8_0", *,
                       arch: str = "qwen3vl", mrope_section: Sequence[int] | None = None,
                       n_threads: int | None = None, audio_onnx: bool = True) -> str:
    """``funasr-nano export gguf`` for Qwen3-ASR: a model folder in the GGUF layout
    (:mod:`funasr_nano.models.qwen3_asr.gguf_layout`) that ``load_model(out_dir)`` runs with the llama.cpp
    engine: the LLM as ``llm-<type>.gguf`` (:func:`write_thinker_gguf`), the audio encoder and projector
    as ``audio.safetensors`` (torch) and as ``audio.onnx`` / ``audio-int8.onnx`` (onnxruntime, one attention
    window per call: :mod:`funasr_nano.export.onnx_audio_qwen3_asr`), ``config.json``, the tokenizer, chat
    template and feature settings; with the ONNX files the folder runs on the light runtime (no torch,
    :mod:`funasr_nano.models.qwen3_asr.light`).

    Args: as :func:`write_thinker_gguf`; ``audio_onnx``: also write the ONNX audio files.

    Returns:
        the path of the GGUF file.

    Raises:
        InvalidOptionError: an unknown ``out_type`` or ``arch``, or ``out_dir`` is the source folder.
        CheckpointError: an unreadable source, or an LLM llama.cpp cannot run.
    """
    import json

    from ..models.qwen3_asr.checkpoint import load_checkpoint
    from .gguf_folder import output_folder, remove_stale_files, save_audio_weights

    source = os.path.abspath(os.fspath(model_path))
    out_dir = output_folder(source, out_dir, out_type)
    if arch not in THINKER_ARCHITECTURES:
        raise InvalidOptionError(f"unknown GGUF architecture {arch!r} for the Qwen3-ASR LLM; use one of "
                                 f"{', '.join(THINKER_ARCHITECTURES)}")
    loaded = load_checkpoint(source)
    section = list(mrope_section) if mrope_section is not None else (
        list(loaded.mrope_section) if loaded.mrope_section is not None else None)
    if arch == "qwen3vl" and section is None:  # before anything is written
        raise CheckpointError(f"{source} does not record the LLM's mrope_section (the -hf layout drops it); "
                              "pass it (Qwen3-ASR: --mrope-section 24 20 20) or write plain qwen3 (--arch qwen3)")
    os.makedirs(out_dir, exist_ok=True)
    gguf_name = f"llm-{out_type}.gguf"
    gguf_file = write_thinker_gguf(source, os.path.join(out_dir, gguf_name), out_type, arch=arch,
                                   mrope_section=mrope_section, n_threads=n_threads)
    audio = save_audio_weights(loaded.model, out_dir)
    if audio_onnx:
        from .onnx_audio_qwen3_asr import export_qwen3_asr_audio_onnx

        export_qwen3_asr_audio_onnx(loaded.model, out_dir)
    config = loaded.model.config
    config.llm_gguf = gguf_name
    config.mrope_section = section
    config.support_languages = list(loaded.support_languages)
    config.save_pretrained(out_dir)
    loaded.tokenizer.save_pretrained(out_dir)
    if loaded.chat_template:
        with open(os.path.join(out_dir, "chat_template.json"), "w", encoding="utf-8") as f:
            json.dump({"chat_template": loaded.chat_template}, f, ensure_ascii=False, indent=2)
    if loaded.feature_config:
        with open(os.path.join(out_dir, "preprocessor_config.json"), "w", encoding="utf-8") as f:
            json.dump(dict(loaded.feature_config), f, ensure_ascii=False, indent=2)
    remove_stale_files(out_dir, gguf_name)
    logger.info("exported Qwen3-ASR %s to %s (%s %s LLM, %d audio tensors)", source, out_dir, arch, out_type, audio)
    return gguf_file
