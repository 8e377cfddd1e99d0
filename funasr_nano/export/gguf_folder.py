"""``funasr-nano export gguf MODEL OUT_DIR``: a complete model folder whose LLM is a GGUF file.

OUT_DIR is in the GGUF layout (:mod:`funasr_nano.models.fun_asr_nano.gguf_layout`): the LLM as
``llm-<type>.gguf`` (:func:`funasr_nano.export.gguf.write_llm_gguf`, which stock llama.cpp runs on its
own), the encoder and adaptor as ``audio.safetensors`` (torch) and as ``audio.onnx`` / ``audio-int8.onnx``
(onnxruntime, :mod:`funasr_nano.export.onnx_audio`), ``config.json`` and the tokenizer, and for a
checkpoint with the CTC branch the CTC head as ``ctc.onnx`` / ``ctc-int8.onnx``
(:mod:`funasr_nano.export.onnx_ctc`, fed by the audio graph's ``encoder_out``), its tokenizer
``multilingual.tiktoken`` and a ``ctc`` record in ``config.json``, so that
``load_model(OUT_DIR)`` loads it on the light runtime (no torch) and decodes with the llama.cpp engine. Works for both checkpoint
layouts and for the embedded demo model. A LoRA adapter must be merged first (``funasr-nano lora
merge``), since llama.cpp runs the weights as they are.
"""

from __future__ import annotations

import logging
import os

from ..errors import CheckpointError
from ..models.fun_asr_nano.ctc_tokenizer import CTC_VOCAB_FILE
from ..models.onnx_audio import CTC_ONNX_FILES
from ..models.weights import AUDIO_PREFIXES, AUDIO_WEIGHTS
from .gguf import OUT_TYPES, write_llm_gguf

logger = logging.getLogger(__name__)


def output_folder(source: str, out_dir: str | os.PathLike, out_type: str) -> str:
    """``out_dir`` as an absolute path, for a GGUF-layout export of the checkpoint folder ``source``
    (absolute) with the LLM in ``out_type``.

    Raises:
        InvalidOptionError: an unknown ``out_type``, or ``out_dir`` is the source folder.
    """
    from ..errors import InvalidOptionError

    if out_type not in OUT_TYPES:
        raise InvalidOptionError(f"unknown GGUF type {out_type!r}; use one of {', '.join(OUT_TYPES)}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if out_dir == source:
        raise InvalidOptionError(f"{out_dir}: the output folder must not be the source checkpoint")
    return out_dir


def save_audio_weights(model, out_dir: str) -> int:
    """Write the audio encoder and adaptor/projector tensors of ``model`` (:data:`AUDIO_PREFIXES`), as
    float32, to ``out_dir/audio.safetensors``; returns how many there are."""
    from safetensors.torch import save_file

    audio = {k: v.detach().float().contiguous() for k, v in model.state_dict().items() if k.startswith(AUDIO_PREFIXES)}
    save_file(audio, os.path.join(out_dir, AUDIO_WEIGHTS), metadata={"format": "pt"})
    return len(audio)


def remove_stale_files(out_dir: str, gguf_name: str, names=()) -> None:
    """Remove what an earlier export into ``out_dir`` left that this one did not write: every ``.gguf``
    but ``gguf_name`` (another type would make the folder ambiguous), and the files ``names`` (e.g. the
    CTC files when this export has no CTC record)."""
    stale = [n for n in os.listdir(out_dir) if n.endswith(".gguf") and n != gguf_name]
    stale += [n for n in names if os.path.exists(os.path.join(out_dir, n))]
    for name in stale:
        logger.info("removing %s from an earlier export", name)
        os.remove(os.path.join(out_dir, name))


def export_gguf(model_path: str | os.PathLike | None, out_dir: str | os.PathLike, out_type: str = "q8_0", *,
                n_threads: int | None = None, dtype=None, audio_onnx: bool = True) -> str:
    """Export a Fun-ASR-Nano checkpoint (``None``: the embedded demo model) to a GGUF-layout folder.

    Args:
        out_type: the LLM's type: ``f32``, ``f16``, ``bf16`` or a llama.cpp quantization (``q8_0``,
            ``q4_k_m``, ... :data:`funasr_nano.export.gguf.OUT_TYPES`).
        n_threads: quantizer threads (default: all cores).
        dtype: the LLM's torch dtype while exporting (default float32); ``torch.bfloat16`` halves the memory
            for large LLMs (e.g. a swapped 4 B LLM), with bf16-rounded weights.
        audio_onnx: also write the encoder + adaptor as ONNX (fp32 and int8) for the light runtime.

    Returns:
        the path of the GGUF file.

    Raises:
        InvalidOptionError: an unknown ``out_type``, or ``out_dir`` is the source folder.
        CheckpointError: an unreadable source, or an LLM llama.cpp cannot run.
    """
    from ..models.fun_asr_nano.checkpoint import load_checkpoint
    from ..models.fun_asr_nano.demo import DEFAULT_MODEL

    source = os.path.abspath(os.fspath(model_path if model_path is not None else DEFAULT_MODEL))
    out_dir = output_folder(source, out_dir, out_type)
    loaded = load_checkpoint(source) if dtype is None else load_checkpoint(source, dtype=dtype)
    if loaded.llm_gguf is not None:
        raise CheckpointError(f"{source} is already in the GGUF layout ({loaded.llm_gguf})")
    os.makedirs(out_dir, exist_ok=True)
    gguf_name = f"llm-{out_type}.gguf"
    gguf_file = write_llm_gguf(loaded.model, loaded.tokenizer, os.path.join(out_dir, gguf_name), out_type,
                               n_threads=n_threads)
    audio = save_audio_weights(loaded.model, out_dir)
    config = loaded.model.config
    ctc_record = None
    if audio_onnx:
        from .onnx_audio import export_audio_onnx

        export_audio_onnx(loaded.model, out_dir, encoder_out=loaded.ctc is not None)
        if loaded.ctc is not None:
            from .onnx_ctc import ctc_config, export_ctc_onnx

            export_ctc_onnx(loaded.ctc, out_dir)
            config.ctc = ctc_record = ctc_config(loaded.ctc)
    elif loaded.ctc is not None:
        logger.warning("%s has a CTC branch, which only the ONNX files carry: the folder has no timestamps "
                       "without them", source)
    config.use_low_frame_rate = loaded.use_low_frame_rate
    config.tasks = list(loaded.tasks)
    config.llm_gguf = gguf_name
    config.save_pretrained(out_dir)
    loaded.tokenizer.save_pretrained(out_dir)
    # nor may the CTC files of an earlier export outlive its record
    ctc_files = [n + tail for n in CTC_ONNX_FILES.values() for tail in ("", ".data")] + [CTC_VOCAB_FILE]
    remove_stale_files(out_dir, gguf_name, ctc_files if ctc_record is None else ())
    logger.info("exported %s to %s (%s LLM, %d audio tensors)", source, out_dir, out_type, audio)
    return gguf_file
