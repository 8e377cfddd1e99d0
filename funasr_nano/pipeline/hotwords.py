"""Hotword lists too long for the prompt: narrowed per utterance to the entries its CTC read-out sounds like.

Fun-ASR-Nano takes hotwords in its prompt, which holds a few dozen at most. A list of thousands
(``hotwords_file``: names, places, products) is narrowed for each utterance to the entries whose
pronunciation appears in the CTC head's greedy output (the first pass that costs no LLM step), and only
those go to the prompt, as the community Fun-ASR-GGUF runtime does. Matching is at the level of
pinyin syllables for Chinese (pypinyin, tones dropped, the initials and finals that CTC output and
accents confuse folded together: ``zh/z``, ``ch/c``, ``sh/s``, ``l/n``, ``-ng/-n``), lower-cased words
for other text. A hotword of ``m`` syllables matches when a window of ``m`` consecutive syllables of
the read-out agrees with it on at least ``ceil(threshold * m)`` syllables (``threshold`` 0.75: words of
2-3 syllables must agree on all, 4 on three); matches are ranked by agreement, then length, then their
order in the file. An inverted index from syllables to hotwords keeps this fast for 10,000 entries.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
from typing import Sequence

from ..errors import InvalidOptionError, MissingDependencyError
from ..validation import check_number

# one syllable per Han character; a word of letters or digits otherwise
_PIECES = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# (pattern, replacement) folds of confusable initials and finals, applied in order
_FOLDS = ((re.compile(r"^zh"), "z"), (re.compile(r"^ch"), "c"), (re.compile(r"^sh"), "s"), (re.compile(r"^l"), "n"),
          (re.compile(r"ng$"), "n"))
DEFAULT_THRESHOLD = 0.75


def _pinyin(text: str) -> list[str]:
    try:
        from pypinyin import Style, lazy_pinyin
    except ImportError as error:
        raise MissingDependencyError("hotwords_file needs pypinyin: pip install 'funasr-nano[hotwords]'") from error
    return lazy_pinyin(text, style=Style.NORMAL, errors="ignore")


def _fold(syllable: str) -> str:
    for pattern, replacement in _FOLDS:
        syllable = pattern.sub(replacement, syllable)
    return syllable


def syllables(text: str) -> tuple[str, ...]:
    """The matching keys of ``text``: folded toneless pinyin per Han character, lower-cased words of
    other scripts; punctuation and spaces dropped (``"滨海 New区"`` -> ``("bin", "hai", "new", "qu")``)."""
    keys: list[str] = []
    for piece in _PIECES.findall(text):
        if _HAN.match(piece):
            keys.extend(_fold(s) for s in _pinyin(piece))
        else:
            keys.append(piece.lower())
    return tuple(keys)


class HotwordList:
    """A large hotword list with its syllable index (immutable: shared by concurrent requests).

    Args:
        words: the hotwords, in priority order (duplicates and blank entries dropped).
        threshold: the share of a hotword's syllables a read-out window must agree on (0 < t <= 1).
    """

    def __init__(self, words: Sequence[str], threshold: float = DEFAULT_THRESHOLD):
        check_number("hotword match threshold", threshold, 0, 1, low_open=True)
        seen: set[str] = set()
        self.words: tuple[str, ...] = tuple(w for w in (x.strip() for x in words) if w and not (w in seen or seen.add(w)))
        self.threshold = threshold
        self._keys = [syllables(w) for w in self.words]
        self._index: dict[str, list[int]] = {}
        for number, keys in enumerate(self._keys):
            for key in set(keys):
                self._index.setdefault(key, []).append(number)

    def __len__(self) -> int:
        return len(self.words)

    def _needed(self, length: int) -> int:
        return math.ceil(self.threshold * length - 1e-9)

    def match(self, text: str, limit: int) -> list[str]:
        """The hotwords ``text`` (a CTC read-out) sounds like, best first, at most ``limit``."""
        heard = syllables(text)
        if not heard or limit <= 0:
            return []
        present = set(heard)
        shared: dict[int, int] = {}
        for key in present:
            for number in self._index.get(key, ()):
                shared[number] = shared.get(number, 0) + 1
        scored = []
        for number, count in shared.items():
            keys = self._keys[number]
            # a window agreeing on k positions holds at least k - (m - distinct) distinct syllables
            if count < self._needed(len(keys)) - (len(keys) - len(set(keys))) or len(keys) > len(heard):
                continue
            best = max(sum(a == b for a, b in zip(keys, heard[start:start + len(keys)]))
                       for start in range(len(heard) - len(keys) + 1))
            if best >= self._needed(len(keys)):
                scored.append((-best / len(keys), -len(keys), number))
        return [self.words[number] for _, _, number in sorted(scored)[:limit]]


def read_hotwords_file(path: str) -> list[str]:
    """One hotword per line (UTF-8); blank lines and lines starting with ``#`` are skipped.

    Raises:
        InvalidOptionError: the file cannot be read or is not UTF-8 (naming it).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidOptionError(f"hotwords_file {path}: cannot be read as UTF-8 text ({error})") from error


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> HotwordList:
    return HotwordList(read_hotwords_file(path))


def load_hotwords_file(path: str) -> HotwordList:
    """The :class:`HotwordList` of ``path``, built once per file version (path, mtime, size).

    Raises:
        InvalidOptionError: a missing or unreadable file, or one with no hotwords.
    """
    try:
        status = os.stat(path)
    except OSError as error:
        raise InvalidOptionError(f"hotwords_file {path}: {error.strerror or error}") from error
    with _cache_lock:
        hotwords = _load(os.path.abspath(path), status.st_mtime_ns, status.st_size)
    if not len(hotwords):
        raise InvalidOptionError(f"hotwords_file {path}: holds no hotwords (one per line)")
    return hotwords
