"""The results of a corpus job: a JSONL file, one row per input, appended as results arrive, which is
also what makes a job resumable (a rerun skips the keys it already holds).

A row (``json.loads`` of one line)::

    {"key": "a/b.wav", "audio": "/abs/a/b.wav", "status": "ok", "text": "...", "language": "zh",
     "duration": 6.0, "tokens": [...], "segments": [{"start": 0.0, "end": 6.0, "text": "...", "tokens": [...]}],
     "error": null}

or, for an input that failed, ``"status": "error"``, ``"error": "AudioDecodeError: ..."`` and the other
result fields ``null``/empty. Rows are written whole (one ``write`` of complete lines, flushed); a job
killed mid-write leaves at most one incomplete last line, which the next run drops.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from typing import Iterable

from ..results import Transcription

logger = logging.getLogger(__name__)

FIELDS = ("key", "audio", "status", "text", "language", "duration", "tokens", "segments", "error")


def result_row(key: str, audio: str, result: Transcription) -> dict:
    """The row of a transcribed input (fields: :data:`FIELDS`)."""
    return {"key": key, "audio": audio, "status": "ok", "text": result.text, "language": result.language,
            "duration": result.duration, "tokens": list(result.tokens),
            "segments": [dataclasses.asdict(segment) | {"tokens": list(segment.tokens)} for segment in result.segments],
            "error": None}


def error_row(key: str, audio: str, error: BaseException | str) -> dict:
    """The row of an input that failed: ``error`` is ``"<ExceptionType>: <message>"``."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {"key": key, "audio": audio, "status": "error", "text": None, "language": None, "duration": None,
            "tokens": [], "segments": [], "error": message}


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The complete rows of a results file (an incomplete last line is left out)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s: an unreadable line is ignored", path)
    return rows


class Journal:
    """The results file of one job, opened for appending.

    Opening it reads what an earlier run wrote: :attr:`done` holds the keys not to transcribe again
    (every row's, or with ``retry_failed`` only the successful ones', whose error rows are then
    removed from the file). An incomplete last line (the earlier run was killed while writing it) is cut
    off. :meth:`append` may be called from several threads.

    Args:
        path: the JSONL file (created, with its folder, if missing).
        retry_failed: transcribe again the inputs that have an error row.
    """

    def __init__(self, path: str | os.PathLike, retry_failed: bool = False):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        rows = self._recover() if os.path.exists(self.path) else []
        if retry_failed and any(row.get("status") != "ok" for row in rows):
            rows = [row for row in rows if row.get("status") == "ok"]
            temporary = self.path + ".tmp"
            with open(temporary, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            os.replace(temporary, self.path)
        self.done: frozenset[str] = frozenset(str(row["key"]) for row in rows if "key" in row)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def _recover(self) -> list[dict]:
        """Rows of the existing file, after cutting an incomplete last line."""
        with open(self.path, "rb") as f:
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            logger.warning("%s: dropping an incomplete last line (an earlier run was interrupted)", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        return read_rows(self.path)

    def append(self, rows: Iterable[dict]) -> int:
        """Write ``rows`` (complete lines, flushed to the OS); returns how many."""
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with self._lock:
            self._file.write(text)
            self._file.flush()
        return text.count("\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_parquet(jsonl: str | os.PathLike, parquet: str | os.PathLike) -> int:
    """Copy a results file to Parquet (needs pyarrow, which the ``ray`` extra installs); returns the rows.

    Raises:
        MissingDependencyError: pyarrow is not installed.
    """
    from ..errors import MissingDependencyError

    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise MissingDependencyError("Parquet output needs pyarrow: pip install 'funasr-nano[ray]'") from error
    rows = read_rows(jsonl)
    segment = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string()),
                         ("tokens", pa.list_(pa.int64()))])
    schema = pa.schema([("key", pa.string()), ("audio", pa.string()), ("status", pa.string()), ("text", pa.string()),
                        ("language", pa.string()), ("duration", pa.float64()), ("tokens", pa.list_(pa.int64())),
                        ("segments", pa.list_(segment)), ("error", pa.string())])
    table = pa.Table.from_pylist([{field: row.get(field) for field in FIELDS} for row in rows], schema=schema)
    pq.write_table(table, os.fspath(parquet))
    return table.num_rows
