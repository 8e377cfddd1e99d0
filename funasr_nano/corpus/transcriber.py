"""The unit of work of a corpus job: :class:`Transcriber`, one loaded model (:class:`ModelSpec` says how to load
it) called on batches of inputs; a failing input becomes an error row and never stops the job. The same class
runs as a Ray Data actor (:mod:`.ray_job`) and in-process (:mod:`.runner`), so both paths give the same rows,
equal to :meth:`funasr_nano.SpeechModel.transcribe`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from ..options import TranscribeOptions
from ..pipeline.chunks import isolate_failures
from ..results import TranscriptionFailure
from .journal import error_row, result_row

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How each worker loads its model (the arguments of :func:`funasr_nano.load_model`).

    Attributes:
        path: checkpoint folder (``None``: the embedded demo model).
        threads: torch (and llama.cpp) threads of one worker; ``None``: torch's default.
    """

    path: str | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    engine: str | None = None
    threads: int | None = None
    encoder_precision: str = "fp32"

    def load(self):
        """The :class:`~funasr_nano.SpeechModel` (``threads`` set this process's torch threads too)."""
        from ..load import load_model

        return load_model(self.path, device=self.device, dtype=self.dtype, engine=self.engine, n_threads=self.threads,
                          encoder_precision=self.encoder_precision)


class Transcriber:
    """One model transcribing batches of corpus inputs into result rows (a Ray Data callable class).

    Args:
        spec: how to load the model (once, here).
        options: transcription options (long inputs are cut by the VAD as in ``transcribe``).
    """

    def __init__(self, spec: ModelSpec, options: TranscribeOptions):
        from transformers.utils import logging as hf_logging

        from ..pipeline.chunks import check_options

        hf_logging.disable_progress_bar()  # a worker's log is not a terminal
        self.model = spec.load()
        check_options(self.model, options)  # options this model refuses fail here, not as one error row per input
        self.options = options

    def rows(self, keys: Sequence[str], audios: Sequence[str]) -> list[dict]:
        """Result or error rows for the inputs, in order; never raises for a bad input (when the batch as a
        whole fails, its inputs are transcribed one by one, so only the culprit fails)."""
        return isolate_failures(self._rows, [(str(k), str(a)) for k, a in zip(keys, audios)],
                                lambda item, error: error_row(*item, error))

    def _rows(self, items: list[tuple[str, str]]) -> list[dict]:
        results = self.model.transcribe_batch([audio for _, audio in items], self.options)
        return [error_row(key, audio, result.error) if isinstance(result, TranscriptionFailure)
                else result_row(key, audio, result) for (key, audio), result in zip(items, results)]

    def __call__(self, batch: dict) -> dict:
        """Ray Data's batch (columns ``key``, ``audio``) -> a column ``row`` of JSON rows (strings, so that
        Arrow never has to reconcile the schemas of result and error rows)."""
        import json

        return {"row": [json.dumps(row, ensure_ascii=False) for row in self.rows(batch["key"], batch["audio"])]}
