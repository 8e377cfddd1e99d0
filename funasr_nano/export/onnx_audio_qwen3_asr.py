"""Qwen3-ASR's audio tower (AuT encoder + projector) as ONNX, one attention window per call.

The encoder is chunked by construction (transformers' ``Qwen3ASREncoder``, ``modeling_qwen3_asr.py``): the
convolutional front end works on 100-frame mel chunks (``2 * n_window``), each giving 13 positions with the
sinusoidal table restarted, and the transformer layers attend within windows of ``n_window_infer`` mel frames
(``n_window_infer // (2 * n_window)`` chunks, 104 positions for the released 8 s window), never across
them; the projector is per position. So one clip's embeddings are the windows' embeddings laid end to end,
and each window can be computed alone.

``audio.onnx`` is ``torch.onnx.export`` of transformers' own modules (``audio_tower`` + ``multi_modal_projector``,
:class:`Qwen3AsrAudioWindow`) for ONE window, with a dynamic frame axis (1 to ``window_frames`` real frames,
padded with zeros to whole chunks as the feature extractor pads them); the light runtime
(:mod:`funasr_nano.models.qwen3_asr.light`) cuts the log-mel into windows and calls it once per window.

Why not the whole clip in one graph: transformers splits the attention into its windows with sizes read from
a tensor (``torch.split(x, lengths.tolist())`` in ``Qwen3ASRAudioAttention``; ``get_audio_cu_seqlens`` loops
over the lengths in Python). ``torch.export`` (the dynamo exporter) refuses it with
``GuardOnDataDependentSymNode`` (at ``cu_chunk_lens += [window_aftercnn] * (cnn_len // window_aftercnn)``),
and the TorchScript tracer freezes the split sizes to the example's (onnxruntime then fails on any other
length: "Split size 98 exceeds the remaining size"). Within one window the split has a single piece of the
whole length, i.e. it is the identity: the traced graph's ``Split`` nodes (three per layer: q, k, v) each
have one output, and :func:`export_qwen3_asr_audio_onnx` replaces exactly those by ``Identity``, which
makes the graph valid for every length (checked: every ``Split`` must have one output, and there must be
three per encoder layer, else the export stops). The attention itself stays transformers' default (sdpa,
no mask), as in the torch path.

Inputs and output (batch of one window):

- ``input_features`` ``(1, mel_bins, padded_frames)`` float32 log-mel, ``padded_frames`` a multiple of
  ``chunk_frames`` (100) and at most ``window_frames``; ``input_features_mask`` ``(1, padded_frames)`` int64,
  1 on the real frames (a prefix);
- ``embeddings`` ``(positions, llm_hidden)`` float32, ``positions`` =
  :func:`funasr_nano.models.qwen3_asr.prompt.num_audio_tokens` of the real frames.

The file's metadata (``metadata_props``) records ``chunk_frames`` and ``window_frames``, which the runtime
reads. ``audio-int8.onnx``: onnxruntime's dynamic quantization of the fp32 file, as for Fun-ASR-Nano
(:func:`funasr_nano.export.onnx_audio.quantize_int8`, QUInt8 weights).
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

from ..errors import CheckpointError, MissingDependencyError
from .onnx_audio import (AUDIO_ONNX, AUDIO_ONNX_INT8, EXPORT_EXTRA, INT8_WEIGHT_TYPE, ONNX_OPSET, externalize_weights,
                         quantize_int8)

logger = logging.getLogger(__name__)

INPUT_NAMES = ["input_features", "input_features_mask"]
OUTPUT_NAME = "embeddings"
# metadata_props keys of audio.onnx (strings of ints), read by funasr_nano.models.qwen3_asr.light
CHUNK_FRAMES_KEY = "chunk_frames"
WINDOW_FRAMES_KEY = "window_frames"


def window_frames(audio_config) -> tuple[int, int]:
    """``(chunk_frames, window_frames)`` of an audio encoder config: ``2 * n_window`` mel frames per conv
    chunk, and the attention window in mel frames (whole chunks: ``n_window_infer // chunk_frames`` of
    them, as ``get_audio_cu_seqlens`` counts them).

    Raises:
        CheckpointError: a window shorter than one chunk (transformers would divide by zero).
    """
    chunk = 2 * int(audio_config.n_window)
    ratio = int(audio_config.n_window_infer) // chunk
    if ratio < 1:
        raise CheckpointError(f"n_window_infer {audio_config.n_window_infer} is shorter than one encoder chunk "
                              f"({chunk} frames)")
    return chunk, ratio * chunk


class Qwen3AsrAudioWindow(torch.nn.Module):
    """transformers' ``audio_tower`` + ``multi_modal_projector`` of a Qwen3-ASR model, on one attention
    window: ``(1, mel_bins, padded_frames)`` + mask -> ``(positions, llm_hidden)``."""

    def __init__(self, model):
        super().__init__()
        self.audio_tower = model.model.audio_tower
        self.projector = model.model.multi_modal_projector

    def forward(self, input_features: torch.Tensor, input_features_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.audio_tower(input_features=input_features, input_features_mask=input_features_mask)
        return self.projector(hidden.last_hidden_state)


def identity_single_splits(graph, expected: int) -> int:
    """Replace every ``Split`` node of ``graph`` (an ONNX ``GraphProto``) by ``Identity`` of its input;
    returns how many. Each must have exactly one output (a one-piece split is the identity), and there
    must be ``expected`` of them.

    Raises:
        CheckpointError: a split into several pieces, or another count than ``expected`` (the encoder's
            code is not what this exporter was written for).
    """
    from onnx import helper

    splits = [i for i, node in enumerate(graph.node) if node.op_type == "Split"]
    for i in splits:
        node = graph.node[i]
        if len(node.output) != 1:
            raise CheckpointError(f"ONNX export of the Qwen3-ASR audio tower: {node.name} splits into "
                                  f"{len(node.output)} pieces; one attention window must give one")
    if len(splits) != expected:
        raise CheckpointError(f"ONNX export of the Qwen3-ASR audio tower: {len(splits)} Split nodes, expected "
                              f"{expected} (q, k, v of each encoder layer); transformers' encoder has changed")
    for i in splits:
        node = graph.node[i]
        graph.node[i].CopyFrom(helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name))
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]  # the split sizes are unused now
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(splits)


def export_qwen3_asr_audio_onnx(model, out_dir: str | os.PathLike, *, int8: bool = True,
                                weight_type: str = INT8_WEIGHT_TYPE) -> list[str]:
    """Write the audio tower of ``model`` (a ``Qwen3ASRForConditionalGeneration`` or the GGUF layout's
    audio-only :class:`funasr_nano.models.qwen3_asr.gguf_layout.AudioModel`) to ``out_dir/audio.onnx``
    (weights in ``audio.onnx.data``) and, with ``int8``, ``out_dir/audio-int8.onnx``.

    Args:
        weight_type: the int8 file's weight type, ``"QUInt8"`` (default) or ``"QInt8"``.

    Returns:
        the paths written.

    Raises:
        MissingDependencyError: onnx (or onnxruntime for int8) is not installed; the message names the
            ``export`` extra.
        CheckpointError: the traced graph is not one the window rewrite knows (see the module docstring).
    """
    try:
        import onnx
    except ImportError as error:
        raise MissingDependencyError(f"exporting the audio encoder to ONNX needs onnx: {EXPORT_EXTRA} ({error})") from error
    audio = model.config.audio_config
    chunk, window = window_frames(audio)
    module = Qwen3AsrAudioWindow(model).eval().float()
    # the example: one whole window whose last chunk is partial (the export does not depend on it)
    example = (torch.randn(1, int(audio.num_mel_bins), window), torch.ones(1, window, dtype=torch.long))
    example[1][:, window - chunk // 3:] = 0
    example[0][:, :, window - chunk // 3:] = 0
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, AUDIO_ONNX)
    axes = {"input_features": {2: "frames"}, "input_features_mask": {1: "frames"}, OUTPUT_NAME: {0: "positions"}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings about the frozen split sizes, rewritten below
        torch.onnx.export(module, example, path, input_names=INPUT_NAMES, output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, dynamo=False, opset_version=ONNX_OPSET)
    proto = onnx.load(path)
    identity_single_splits(proto.graph, 3 * int(audio.encoder_layers))
    for key, value in ((CHUNK_FRAMES_KEY, chunk), (WINDOW_FRAMES_KEY, window)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    externalize_weights(path, proto)
    written = [path]
    if int8:
        written.append(quantize_int8(path, os.path.join(out_dir, AUDIO_ONNX_INT8), weight_type))
    logger.info("wrote the Qwen3-ASR audio tower as ONNX (windows of %d frames): %s", window,
                ", ".join(os.path.basename(p) for p in written))
    return written
