"""Corpus-scale transcription: a folder, list or manifest of audio files -> one JSONL row per file, resumable,
on a Ray Data actor pool (:mod:`.ray_job`) or in this process (:mod:`.runner`)."""

from .inputs import CorpusItem, list_inputs
from .journal import Journal, error_row, result_row
from .runner import CorpusReport, transcribe_corpus

__all__ = ["CorpusItem", "CorpusReport", "Journal", "error_row", "list_inputs", "result_row", "transcribe_corpus"]
