"""The corpus job on Ray Data: the inputs (keys and paths, not audio) become a dataset, a pool of actors
(one :class:`~funasr_nano.corpus.transcriber.Transcriber`, so one model, each) maps batches of them to result
rows, and the driver appends the rows to the results file as they stream out.

Ray Data's streaming executor starts the actors, feeds each a batch at a time and hands finished batches
back while others are still running (``Dataset.iter_batches``), which is what lets the driver write rows
as they finish. Each input block holds one batch, so a finished batch is written without waiting for
others. Source: Ray Data's "batch inference" guide (``map_batches`` with a callable class and
``ActorPoolStrategy``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Callable, Sequence

from ..errors import FunASRNanoError, MissingDependencyError
from ..options import TranscribeOptions
from .inputs import CorpusItem
from .transcriber import ModelSpec, Transcriber

logger = logging.getLogger(__name__)


def import_ray():
    """The ``ray`` module with Ray Data loaded.

    Raises:
        MissingDependencyError: Ray Data is not installed (the message names the ``ray`` extra).
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError("--ray needs Ray Data: pip install 'funasr-nano[ray]'") from error
    return ray


def _project_error(error: BaseException) -> FunASRNanoError | None:
    """A project error (bad options, unusable model) raised inside an actor, out of Ray's wrappers."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, FunASRNanoError):
            return error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


def run_on_ray(items: Sequence[CorpusItem], spec: ModelSpec, options: TranscribeOptions,
               write: Callable[[list[dict]], None], *, address: str | None = None, num_workers: int = 1) -> None:
    """Transcribe ``items`` on ``num_workers`` Ray actors; ``write`` gets each batch's rows as it finishes.

    Ray: joins ``address`` when given; else uses the instance this process already started
    (``ray.init``), else starts a local one sized for the pool and shuts it down at the end. Each actor
    reserves ``spec.threads`` CPUs (default 1; its torch threads are set to the same).

    Raises:
        MissingDependencyError: Ray is not installed. FunASRNanoError: what an actor's model loading
        raised (unusable checkpoint or options).
    """
    ray = import_ray()
    threads = spec.threads or 1
    spec = dataclasses.replace(spec, threads=threads)
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:  # a local instance: enough CPUs for the pool, even on a small machine
            ray.init(num_cpus=max(os.cpu_count() or 1, num_workers * threads), include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=logger.isEnabledFor(logging.INFO))
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = logger.isEnabledFor(logging.INFO)
        if not logger.isEnabledFor(logging.INFO):  # Ray Data logs each dataset's start and end at INFO
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        batch_size = options.batch_size
        dataset = ray.data.from_items([{"key": item.key, "audio": item.audio} for item in items],
                                      override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
        rows = dataset.map_batches(
            Transcriber, fn_constructor_kwargs={"spec": spec, "options": options}, batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=threads)
        try:
            for batch in rows.iter_batches(batch_size=None, batch_format="numpy"):
                write([json.loads(text) for text in batch["row"]])
        except Exception as error:
            project = _project_error(error)
            if project is not None:
                raise project from None
            raise
    finally:
        if started_here:
            ray.shutdown()
