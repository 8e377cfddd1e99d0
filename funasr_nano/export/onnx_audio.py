"""The audio path of a speech LLM as ONNX: features -> encoder -> adaptor (projector) -> LLM embeddings.

Exported from the torch model with ``torch.onnx.export`` with a dynamic time axis: its TorchScript
exporter (``dynamo=False``, opset 17; 0.7 s for a tiny model where the dynamo exporter takes 20-30 s on a
2-core machine, with the same outputs), the dynamo exporter where that one fails, so that the light runtime
(:mod:`funasr_nano.models.onnx_audio`) runs the encoder in onnxruntime without torch. Written beside the
GGUF LLM by ``funasr-nano export gguf`` (:mod:`funasr_nano.export.gguf_folder`,
:mod:`funasr_nano.export.thinker_gguf`):

- ``audio.onnx`` (+ its weights in ``audio.onnx.data``): float32, the reference's arithmetic (embeddings
  within float32 rounding of torch's). The weights sit in an external data file, which onnxruntime maps
  instead of copying out of the protobuf: 0.98 GB peak RSS for the full-size encoder instead of 1.5 GB.
- ``audio-int8.onnx`` (+ ``audio-int8.onnx.data``): onnxruntime's dynamic quantization (``quantize_dynamic``) of the float32 file:
  MatMul weights int8 per tensor, activations quantized per call. Weights are ``QUInt8``, the type
  sherpa-onnx found correct where ``QInt8`` gave wrong results in C++ onnxruntime; on our models QUInt8
  also has the smaller embedding error (docs/light-runtime.md gives both).

Inputs and outputs, per family (batch of one clip, no padding):

- Fun-ASR-Nano: ``features`` ``(1, frames, 560)`` float32 LFR fbank -> ``embeddings`` ``(1, frames,
  llm_hidden)`` (every adaptor frame; the prompt takes the first :func:`num_audio_tokens`). A checkpoint
  with the CTC branch gets a second output, ``encoder_out`` ``(1, frames, encoder_dim)`` (the SAN-M output
  the adaptor ran on), which the CTC head's graph takes (:mod:`funasr_nano.export.onnx_ctc`): one encoder
  pass serves both. A caller that asks onnxruntime for ``embeddings`` alone computes the same nodes as
  before (``encoder_out`` is the adaptor's input anyway).
- Qwen3-ASR: not by this module; :mod:`funasr_nano.export.onnx_audio_qwen3_asr` exports its tower one
  attention window per call (:data:`QWEN3_ASR_NOT_EXPORTED` says why not the whole clip).

Needs the ``export`` extra (``onnx``, ``onnxscript``) and onnxruntime for the int8 file.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

from ..errors import MissingDependencyError
from ..models.onnx_audio import ENCODER_OUT

logger = logging.getLogger(__name__)

AUDIO_ONNX = "audio.onnx"
AUDIO_ONNX_INT8 = "audio-int8.onnx"
# onnxruntime's dynamic quantization weight type (see the module docstring)
INT8_WEIGHT_TYPE = "QUInt8"
ONNX_OPSET = 17
EXPORT_EXTRA = "pip install 'funasr-nano[export]'"


class FunAsrNanoAudio(torch.nn.Module):
    """Fun-ASR-Nano's encoder + adaptor for one unpadded clip: ``(1, frames, 560)`` -> ``(1, frames, hidden)``;
    with ``with_encoder_out``, also the encoder output the adaptor ran on, ``(1, frames, encoder_dim)``."""

    def __init__(self, model, with_encoder_out: bool = False):
        super().__init__()
        self.audio_tower = model.model.audio_tower
        self.projector = model.model.multi_modal_projector
        self.with_encoder_out = with_encoder_out

    def forward(self, features: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        hidden = self.audio_tower(input_features=features, input_features_mask=mask).last_hidden_state
        embeddings = self.projector(hidden, mask)
        return (embeddings, hidden) if self.with_encoder_out else embeddings


# Why Qwen3-ASR's audio tower is not exported (yet): transformers' encoder splits the attention into its
# windows with sizes read from a tensor (``torch.split(x, lengths.tolist())`` in ``Qwen3ASRAudioAttention``,
# ``get_audio_cu_seqlens`` loops over ``aftercnn_lens``): ``torch.export`` refuses the data-dependent sizes
# (GuardOnDataDependentSymNode) and the TorchScript tracer would freeze them to the example's lengths.
QWEN3_ASR_NOT_EXPORTED = ("Qwen3-ASR's audio tower cannot be exported to ONNX with a dynamic time axis: transformers "
                          "splits its windowed attention by lengths read from a tensor (torch.split(..., "
                          "lengths.tolist())), which torch.export refuses and tracing would freeze; "
                          "funasr_nano.export.onnx_audio_qwen3_asr exports it one attention window per call")


def _example(model, encoder_out: bool = False) -> tuple[torch.nn.Module, tuple, dict, list[str]]:
    """The wrapper module, example inputs, dynamic axes and input names of ``model``'s family."""
    config = model.config
    if getattr(config, "model_type", None) == "qwen3_asr":
        raise NotImplementedError(QWEN3_ASR_NOT_EXPORTED)
    width = int(config.audio_config.num_mel_bins) * int(config.audio_config.num_stacked_frames)
    # the encoder's sinusoidal table holds max_position_embeddings frames
    longest = int(getattr(config.audio_config, "max_position_embeddings", 2048) or 2048) - 1
    dynamic = {"features": {1: torch.export.Dim("frames", min=1, max=longest)}}
    return FunAsrNanoAudio(model, encoder_out), (torch.randn(1, 50, width),), dynamic, ["features"]


def export_audio_onnx(model, out_dir: str | os.PathLike, *, int8: bool = True, encoder_out: bool = False) -> list[str]:
    """Write ``model``'s audio path (a Fun-ASR-Nano or Qwen3-ASR model, or its audio-only
    :class:`funasr_nano.models.weights.AudioModel`) to ``out_dir/audio.onnx`` and, with ``int8``,
    ``out_dir/audio-int8.onnx``; ``encoder_out`` adds the encoder output as a second graph output
    (Fun-ASR-Nano with its CTC branch).

    Returns:
        the paths written.

    Raises:
        MissingDependencyError: onnx/onnxscript (or onnxruntime for int8) are not installed; the message
            names the ``export`` extra.
    """
    try:
        import onnx  # noqa: F401  (the exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(f"exporting the audio encoder to ONNX needs onnx and onnxscript: "
                                     f"{EXPORT_EXTRA} ({error})") from error
    out_dir = os.fspath(out_dir)
    module, example, dynamic, names = _example(model, encoder_out)
    module = module.eval().float()
    path = os.path.join(out_dir, AUDIO_ONNX)
    axes = {name: {axis: dim.__name__ for axis, dim in dims.items()} for name, dims in dynamic.items()}
    axes["embeddings"] = {1: "positions"}
    outputs = ["embeddings"]
    if encoder_out:
        axes[ENCODER_OUT] = {1: "frames"}
        outputs.append(ENCODER_OUT)
    written = export_module(module, example, path, names, outputs, axes, dynamic,
                            int8_path=os.path.join(out_dir, AUDIO_ONNX_INT8) if int8 else None)
    logger.info("wrote the audio encoder as ONNX: %s", ", ".join(os.path.basename(p) for p in written))
    return written


def export_module(module: torch.nn.Module, example: tuple, path: str, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict, dynamic_shapes: dict,
                  int8_path: str | None = None) -> list[str]:
    """Export ``module`` traced on ``example`` to ``path`` (the TorchScript exporter with ``dynamic_axes``;
    the dynamo exporter with ``dynamic_shapes`` where torch refuses it), its weights moved to external
    data (:func:`externalize_weights`), and, with ``int8_path``, its int8 copy (:func:`quantize_int8`).
    Returns the paths written."""
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(module, example, path, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, dynamo=False, opset_version=ONNX_OPSET)
        except Exception as error:  # a torch without (or refusing) the TorchScript exporter
            logger.info("TorchScript ONNX export failed (%s); using the dynamo exporter", error)
            program = torch.onnx.export(module, example, input_names=input_names, output_names=output_names,
                                        dynamic_shapes=dynamic_shapes, dynamo=True, optimize=True, verbose=False)
            program.save(path, external_data=False)
    externalize_weights(path)
    return [path] + ([quantize_int8(path, int8_path)] if int8_path else [])


def externalize_weights(path: str, model=None) -> None:
    """Rewrite ``path`` with its weights in ``path + ".data"`` (ONNX external data, one file); ``model``: the
    ``onnx.ModelProto`` to write there instead of the file's own (e.g. after a graph rewrite)."""
    import onnx

    if model is None:
        model = onnx.load(path)
    data = path + ".data"
    if os.path.exists(data):
        os.remove(data)  # onnx appends to an existing file
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(data), size_threshold=1024, convert_attribute=True)


def quantize_int8(source: str, target: str, weight_type: str = INT8_WEIGHT_TYPE) -> str:
    """onnxruntime's dynamic int8 quantization of ``source`` (``weight_type`` ``"QUInt8"`` or ``"QInt8"``)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise MissingDependencyError(f"int8 quantization of the ONNX encoder needs onnxruntime: {EXPORT_EXTRA}") from error
    quant_logger = logging.getLogger()  # quantize_dynamic warns on the root logger about pre-processing
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        if os.path.exists(target + ".data"):
            os.remove(target + ".data")
        quantize_dynamic(source, target, weight_type=getattr(QuantType, weight_type), use_external_data_format=True)
    finally:
        quant_logger.setLevel(level)
    return target
