"""Fun-ASR-Nano's CTC head as ONNX: encoder output -> CTC log posteriors, for the light runtime's timestamps.

Exported from the torch modules (:class:`funasr_nano.models.fun_asr_nano.ctc.CtcHead`: ``ctc_decoder`` +
``ctc.ctc_lo``, then the log-softmax FunASR's ``CTC.log_softmax`` applies) with ``torch.onnx.export``, as
:mod:`funasr_nano.export.onnx_audio` exports the encoder. The graph takes the audio graph's second output
(``encoder_out``), so that the encoder runs once per segment for both the LLM's audio embeddings and the
CTC posteriors, and only when the CTC head is wanted (word timestamps, the silence gate, ``hotwords_file``)
is the head run at all: the plain transcription path computes what it computed without the branch. (A
``log_probs`` output inside ``audio.onnx`` would not do: onnxruntime runs every node of a graph whatever
outputs are asked for, so every transcription would pay the head's 512 x 60515 output layer.)

- ``ctc.onnx`` (+ ``ctc.onnx.data``): float32, ``encoder_out`` ``(1, frames, encoder_dim)`` ->
  ``log_probs`` ``(1, frames, ctc_vocab)`` float32 log-softmax, 60 ms per frame, the blank at
  ``blank_id``.
- ``ctc-int8.onnx`` (+ ``.data``): onnxruntime's dynamic int8 quantization of it (as ``audio-int8.onnx``),
  paired with ``audio-int8.onnx`` by ``encoder_precision="int8"``.

Written by ``funasr-nano export gguf`` (:mod:`funasr_nano.export.gguf_folder`), which records them, the
blank and the tokenizer file in ``config.json`` (``ctc``; :func:`ctc_config`).
"""

from __future__ import annotations

import logging
import os
import shutil

import torch

from ..models.onnx_audio import CTC_ONNX_FILES, ENCODER_OUT, LOG_PROBS
from .onnx_audio import export_module

logger = logging.getLogger(__name__)

CTC_ONNX = CTC_ONNX_FILES["fp32"]
CTC_ONNX_INT8 = CTC_ONNX_FILES["int8"]


class CtcLogProbs(torch.nn.Module):
    """The CTC head for one unpadded clip: ``(1, frames, encoder_dim)`` -> ``(1, frames, vocab)`` log-softmax."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.head = head

    def forward(self, encoder_out: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.head(encoder_out), dim=-1)


def export_ctc_onnx(ctc, out_dir: str | os.PathLike, *, int8: bool = True) -> list[str]:
    """Write ``ctc`` (a :class:`funasr_nano.models.fun_asr_nano.ctc.CtcBranch`) to ``out_dir/ctc.onnx`` and,
    with ``int8``, ``out_dir/ctc-int8.onnx``, and copy its tokenizer there (``multilingual.tiktoken``).

    Returns:
        the ONNX paths written.

    Raises:
        MissingDependencyError: onnx (or onnxruntime for int8) is not installed.
    """
    out_dir = os.fspath(out_dir)
    module = CtcLogProbs(ctc.head).eval().float()
    width = ctc.head.ctc_lo.in_features
    path = os.path.join(out_dir, CTC_ONNX)
    axes = {ENCODER_OUT: {1: "frames"}, LOG_PROBS: {1: "frames"}}
    example = (torch.randn(1, 50, width),)
    dynamic = {ENCODER_OUT: {1: torch.export.Dim("frames", min=1, max=1 << 16)}}
    written = export_module(module, example, path, [ENCODER_OUT], [LOG_PROBS], axes, dynamic,
                            int8_path=os.path.join(out_dir, CTC_ONNX_INT8) if int8 else None)
    shutil.copyfile(ctc.tokenizer.path, os.path.join(out_dir, os.path.basename(ctc.tokenizer.path)))
    logger.info("wrote the CTC head as ONNX: %s", ", ".join(os.path.basename(p) for p in written))
    return written


def ctc_config(ctc, *, int8: bool = True) -> dict:
    """The ``ctc`` record of a GGUF folder's ``config.json`` (read by
    :class:`funasr_nano.models.fun_asr_nano.light.LightFunAsrNanoModel`): the ONNX files by encoder
    precision, the tokenizer file, the blank and the vocabulary size."""
    files = {"fp32": CTC_ONNX}
    if int8:
        files["int8"] = CTC_ONNX_INT8
    return {"onnx": files, "tokenizer": os.path.basename(ctc.tokenizer.path), "blank_id": int(ctc.blank_id),
            "vocab_size": int(ctc.head.ctc_lo.out_features)}
