"""What a corpus job transcribes: a folder of audio files, a JSONL manifest (the training formats of
:mod:`funasr_nano.training.data`) or a text file listing one audio path per line.

Every input gets a ``key`` that identifies it across runs (the resume check compares keys): the path
relative to the folder, the manifest's ``key`` (else ``FILE:LINE``), or the path as listed.
"""

from __future__ import annotations

import dataclasses
import os

from ..errors import ManifestError

# Suffixes taken from a folder (anything FFmpeg or libsndfile reads; other files are ignored).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".wma", ".aiff",
                            ".aif", ".amr", ".mp4", ".mka"})


@dataclasses.dataclass(frozen=True)
class CorpusItem:
    """One input of a corpus job.

    Attributes:
        key: its identity across runs (unique in a job).
        audio: absolute path of the audio file.
    """

    key: str
    audio: str


def _from_folder(folder: str) -> list[CorpusItem]:
    items = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in AUDIO_SUFFIXES:
                path = os.path.join(root, name)
                items.append(CorpusItem(key=os.path.relpath(path, folder), audio=os.path.abspath(path)))
    return items


def _from_manifest(path: str) -> list[CorpusItem]:
    from ..manifests import read_manifest

    return [CorpusItem(key=example.key, audio=example.audio) for example in read_manifest(path)
            if example.audio is not None]  # text-only lines (text translation) have nothing to transcribe


def _from_list(path: str) -> list[CorpusItem]:
    folder = os.path.dirname(os.path.abspath(path))
    items = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                audio = os.path.expanduser(entry)
                items.append(CorpusItem(key=entry, audio=os.path.normpath(os.path.join(folder, audio))))
    return items


def list_inputs(source: str | os.PathLike) -> list[CorpusItem]:
    """The inputs of a corpus job, in a stable order.

    Args:
        source: a folder (its audio files, recursively, by suffix: :data:`AUDIO_SUFFIXES`), a ``.jsonl``
            manifest (official or simple lines; text-only lines are skipped), or a text file with one
            audio path per line (relative paths resolve against its folder; ``#`` starts a comment).

    Raises:
        ManifestError: the source is missing, holds no audio, a manifest line is invalid, or two inputs
            share a key.
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        items = _from_folder(source)
    elif not os.path.isfile(source):
        raise ManifestError(source, 0, "no such file or folder")
    elif source.endswith(".jsonl"):
        items = _from_manifest(source)
    else:
        items = _from_list(source)
    if not items:
        raise ManifestError(source, 0, "no audio files to transcribe")
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise ManifestError(source, 0, f"the key {item.key!r} names two inputs; keys must be unique")
        seen.add(item.key)
    return items
