"""The audio path in onnxruntime: an ONNX encoder + adaptor written by :mod:`funasr_nano.export.onnx_audio`
(and Fun-ASR-Nano's CTC head, :mod:`funasr_nano.export.onnx_ctc`, on the same onnxruntime sessions).

The light runtime's replacement for the torch encoder: no torch, one ``onnxruntime.InferenceSession`` per
loaded model (``run`` is thread-safe, so one session serves concurrent calls), CPU execution provider.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from ..errors import CheckpointError, MissingDependencyError

logger = logging.getLogger(__name__)

# the files funasr_nano.export.onnx_audio writes, by encoder precision
AUDIO_ONNX_FILES = {"fp32": "audio.onnx", "int8": "audio-int8.onnx"}
# Fun-ASR-Nano's CTC head (funasr_nano.export.onnx_ctc): the audio graph's second output, which the CTC
# graph takes, the CTC graph's output, and its files by encoder precision
ENCODER_OUT = "encoder_out"
LOG_PROBS = "log_probs"
CTC_ONNX_FILES = {"fp32": "ctc.onnx", "int8": "ctc-int8.onnx"}
LIGHT_EXTRA = "pip install funasr-nano (the base install brings onnxruntime)"


def audio_onnx_file(path: str, precision: str = "fp32") -> str | None:
    """The ONNX audio file of a GGUF-layout folder for ``precision`` (``"fp32"``, ``"int8"``), or ``None``
    when the folder has none (an export from before the light runtime)."""
    name = AUDIO_ONNX_FILES.get(precision)
    file = os.path.join(path, name) if name else None
    return file if file and os.path.isfile(file) else None


def require_audio_onnx_file(path: str, precision: str = "fp32") -> str:
    """:func:`audio_onnx_file`, for a light runtime that cannot run without it.

    Raises:
        CheckpointError: the folder has no ONNX audio file for ``precision`` (export it again).
    """
    file = audio_onnx_file(path, precision)
    if file is None:
        raise CheckpointError(f"{path}: no ONNX audio encoder for encoder_precision={precision!r}; "
                              f"export the folder again with funasr-nano export gguf")
    return file


class OnnxGraph:
    """One ONNX model in onnxruntime, run by output names.

    Args:
        file: the ``.onnx`` file.
        n_threads: onnxruntime's intra-op threads (``None``: its default, one per core).
        what: what the file holds, for messages and logs.

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        CheckpointError: a file onnxruntime cannot load (its message included).
    """

    def __init__(self, file: str, n_threads: int | None = None, what: str = "ONNX model"):
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingDependencyError(f"the {what} needs onnxruntime: {LIGHT_EXTRA}") from error
        options = onnxruntime.SessionOptions()
        if n_threads is not None:
            options.intra_op_num_threads = n_threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self._session = onnxruntime.InferenceSession(file, options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise CheckpointError(f"{file}: onnxruntime cannot load this model: {error}") from error
        self.file = file
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())
        logger.info("%s %s (inputs %s, outputs %s)", what, file, ", ".join(self.input_names), ", ".join(self.output_names))

    def run(self, outputs: Sequence[str], **inputs: np.ndarray) -> list[np.ndarray]:
        """The named ``outputs`` for named ``inputs``. onnxruntime runs every node of the graph whatever
        outputs are asked for (checked with onnxruntime 1.32: asking for a cheap output of a graph with an
        expensive branch costs the branch), which is why Fun-ASR-Nano's CTC head is a graph of its own."""
        return self._session.run(list(outputs), inputs)


class OnnxAudioEncoder(OnnxGraph):
    """The ONNX audio model (features -> LLM embeddings, and for a checkpoint with the CTC branch the
    encoder output, ``encoder_out``) in onnxruntime.

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        CheckpointError: a file onnxruntime cannot load (its message included).
    """

    def __init__(self, file: str, n_threads: int | None = None):
        super().__init__(file, n_threads, "ONNX audio encoder")

    @property
    def metadata(self) -> dict[str, str]:
        """The model's ``metadata_props`` (e.g. the window size of a Qwen3-ASR audio tower)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        """Run the model on named inputs (``features=...``); returns its ``embeddings`` output."""
        return self.run(["embeddings"], **inputs)[0]
