"""The audio path in onnxruntime: an ONNX encoder + adaptor written by :mod:`funasr_nano.export.onnx_audio`.

The light runtime's replacement for the torch encoder: no torch, one ``onnxruntime.InferenceSession`` per
loaded model (``run`` is thread-safe, so one session serves concurrent calls), CPU execution provider.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import CheckpointError, MissingDependencyError

logger = logging.getLogger(__name__)

# the files funasr_nano.export.onnx_audio writes, by encoder precision
AUDIO_ONNX_FILES = {"fp32": "audio.onnx", "int8": "audio-int8.onnx"}
LIGHT_EXTRA = "pip install funasr-nano (the base install brings onnxruntime)"


def audio_onnx_file(path: str, precision: str = "fp32") -> str | None:
    """The ONNX audio file of a GGUF-layout folder for ``precision`` (``"fp32"``, ``"int8"``), or ``None``
    when the folder has none (an export from before the light runtime)."""
    name = AUDIO_ONNX_FILES.get(precision)
    file = os.path.join(path, name) if name else None
    return file if file and os.path.isfile(file) else None


class OnnxAudioEncoder:
    """One ONNX audio model (features -> LLM embeddings) in onnxruntime.

    Args:
        file: the ``.onnx`` file.
        n_threads: onnxruntime's intra-op threads (``None``: its default, one per core).

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        CheckpointError: a file onnxruntime cannot load (its message included).
    """

    def __init__(self, file: str, n_threads: int | None = None):
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingDependencyError(f"the ONNX audio encoder needs onnxruntime: {LIGHT_EXTRA}") from error
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
        logger.info("ONNX audio encoder %s (inputs %s)", file, ", ".join(self.input_names))

    @property
    def metadata(self) -> dict[str, str]:
        """The model's ``metadata_props`` (e.g. the window size of a Qwen3-ASR audio tower)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        """Run the model on named inputs (``features=...``); returns its ``embeddings`` output."""
        return self._session.run(["embeddings"], inputs)[0]
