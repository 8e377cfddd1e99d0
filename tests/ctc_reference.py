"""A stand-in for ``torchaudio.functional.forced_align`` in the funasr 1.4.16 reference runs.

torchaudio has no build for our torch (its releases pair with one torch each; the PyPI wheel also
links CUDA), and funasr's ``forced_align`` swallows the ImportError and returns no timestamps. The
parity tests therefore run funasr's own code (CTC decoder, log-softmax, CTC tokenizer, its
``forced_align`` with the run grouping, scores and 60 ms frames) with this reference in torchaudio's
place: a plain-Python transcription of torchaudio's CPU kernel (``forced_align/cpu/compute.cpp``:
the pruned ``start``/``end`` state window, the tie order stay > previous > skip, the final choice of
the last blank unless the last token scores strictly higher), loops and lists only, written apart
from the vectorised implementation it checks (``funasr_nano/models/alignment.py``).
``tests/test_timestamps.py`` checks both against an exhaustive search of all CTC paths.
"""

from __future__ import annotations

import math
import types

import torch


def reference_forced_align(log_probs: torch.Tensor, targets: torch.Tensor, blank: int = 0):
    """``torchaudio.functional.forced_align(log_probs (1, T, C), targets (1, L), blank=...)`` ->
    ``(paths (1, T), scores (1, T))``, the scores being the log-probabilities of the path's labels."""
    emissions = log_probs[0].tolist()
    target = targets[0].tolist()
    frames, length = len(emissions), len(target)
    states = 2 * length + 1
    repeats = sum(1 for i in range(1, length) if target[i] == target[i - 1])
    if frames < length + repeats:
        raise RuntimeError("targets length is too long for CTC")

    def label(state):
        return blank if state % 2 == 0 else target[state // 2]

    alpha = [-math.inf] * states
    pointers = [[-1] * states for _ in range(frames)]
    start = 0 if frames - (length + repeats) > 0 else 1
    end = 1 if states == 1 else 2
    for state in range(start, end):
        alpha[state] = emissions[0][label(state)]
    for t in range(1, frames):
        if frames - t <= length + repeats:
            if start % 2 == 1 and target[start // 2] != target[start // 2 + 1]:
                start += 1
            start += 1
        if t <= length + repeats:
            if end % 2 == 0 and end < 2 * length and target[end // 2 - 1] != target[end // 2]:
                end += 1
            end += 1
        new = [-math.inf] * states
        first = start
        if start == 0:
            new[0] = alpha[0] + emissions[t][blank]
            pointers[t][0] = 0
            first = 1
        for state in range(first, end):
            stay, previous, skip = alpha[state], alpha[state - 1], -math.inf
            if state % 2 == 1 and state != 1 and target[state // 2] != target[state // 2 - 1]:
                skip = alpha[state - 2]
            if skip > previous and skip > stay:
                best, pointers[t][state] = skip, 2
            elif previous > stay:
                best, pointers[t][state] = previous, 1
            else:
                best, pointers[t][state] = stay, 0
            new[state] = best + emissions[t][label(state)]
        alpha = new
    state = states - 1 if states == 1 or alpha[states - 1] > alpha[states - 2] else states - 2
    path = [0] * frames
    for t in range(frames - 1, -1, -1):
        path[t] = label(state)
        state -= pointers[t][state]
    paths = torch.tensor([path], dtype=targets.dtype)
    scores = log_probs[0, torch.arange(frames), paths[0]][None]
    return paths, scores


# what funasr's ``require_torchaudio("forced_align")`` hands back in the reference runs
TORCHAUDIO_STAND_IN = types.SimpleNamespace(functional=types.SimpleNamespace(forced_align=reference_forced_align))
