"""Corpus jobs: list the inputs, skip those the results file already holds, transcribe the rest (on a
Ray Data actor pool, :mod:`.ray_job`, or in this process) and append one row per input as it finishes.

The unit of work is :class:`~.transcriber.Transcriber`: one loaded model, called on batches of inputs; a
failing input becomes an error row and never stops the job. The same class runs as a Ray Data actor and
in-process, so both paths give the same rows, equal to :meth:`funasr_nano.SpeechModel.transcribe`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Callable, Iterable, Sequence

from ..options import TranscribeOptions
from ..pipeline.chunks import batched
from ..validation import check_integer
from .inputs import CorpusItem, list_inputs
from .journal import Journal, write_parquet
from .transcriber import ModelSpec, Transcriber

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CorpusReport:
    """What a corpus job did.

    Attributes:
        total: inputs listed. skipped: already in the results file. transcribed: rows written now
        (``failed`` of them error rows). audio_seconds: seconds of audio transcribed now. elapsed: wall
        seconds of the job (model loading included). output: the results file.
    """

    total: int
    skipped: int
    transcribed: int
    failed: int
    audio_seconds: float
    elapsed: float
    output: str


def _run_local(items: Sequence[CorpusItem], spec: ModelSpec, options: TranscribeOptions,
               write: Callable[[list[dict]], None]) -> None:
    transcriber = Transcriber(spec, options)
    try:
        for group in batched(items, options.batch_size):
            write(transcriber.rows([i.key for i in group], [i.audio for i in group]))
    finally:
        transcriber.model.close()


def transcribe_corpus(source: str | os.PathLike | Iterable[CorpusItem], output: str | os.PathLike, *,
                      model: ModelSpec | None = None, options: TranscribeOptions | None = None, ray: bool = True,
                      address: str | None = None, num_workers: int = 1, retry_failed: bool = False,
                      parquet: str | os.PathLike | None = None,
                      on_rows: Callable[[list[dict]], None] | None = None) -> CorpusReport:
    """Transcribe a corpus into a JSONL results file (one row per input, see :mod:`.journal`), resumably.

    Inputs whose key the results file already holds are skipped (``retry_failed``: except those with an
    error row); the others are transcribed ``options.batch_size`` at a time and their rows appended as
    each batch finishes, so a job killed midway and run again finishes without redoing finished inputs.
    An input that fails (unreadable, too short, ...) gets an error row; the job goes on.

    Args:
        source: folder, manifest or list file (see :func:`.inputs.list_inputs`), or the items themselves.
        output: the JSONL results file (appended to).
        model: how each worker loads the model (default: the demo model, torch's threads).
        options: transcription options (VAD, language, decoding, ``batch_size``).
        ray: run on a Ray Data actor pool (``num_workers`` actors, one model each); ``False``: in this
            process, one model.
        address: a Ray cluster to join (``"auto"``, ``"ray://host:10001"``, ``host:6379``); ``None``: the
            Ray instance this process already runs, else a new local one (shut down at the end).
        num_workers: actors (models) in the pool.
        parquet: also write the whole results file (earlier rows included) as Parquet there at the end.
        on_rows: called with each group of rows as it is written (progress).

    Raises:
        ManifestError: an unusable source. MissingDependencyError: ``ray=True`` without Ray installed.
        CheckpointError, InvalidOptionError: an unusable model or options (before any input is read).
    """
    started = time.perf_counter()
    options = options or TranscribeOptions()
    model = model or ModelSpec()
    check_integer("num_workers", num_workers, 1)
    items = list_inputs(source) if isinstance(source, (str, os.PathLike)) else list(source)
    counts = {"rows": 0, "failed": 0, "seconds": 0.0}
    with Journal(output, retry_failed=retry_failed) as journal:
        todo = [item for item in items if item.key not in journal.done]
        logger.info("%d inputs, %d already done, %d to transcribe", len(items), len(items) - len(todo), len(todo))

        def write(rows: list[dict]) -> None:
            journal.append(rows)
            counts["rows"] += len(rows)
            counts["failed"] += sum(row["status"] != "ok" for row in rows)
            counts["seconds"] += sum(row["duration"] or 0.0 for row in rows)
            if on_rows is not None:
                on_rows(rows)

        if todo and ray:
            from .ray_job import run_on_ray

            run_on_ray(todo, model, options, write, address=address, num_workers=num_workers)
        elif todo:
            _run_local(todo, model, options, write)
    if parquet is not None:
        write_parquet(output, parquet)
    return CorpusReport(total=len(items), skipped=len(items) - len(todo), transcribed=counts["rows"],
                        failed=counts["failed"], audio_seconds=counts["seconds"],
                        elapsed=time.perf_counter() - started, output=os.fspath(output))
