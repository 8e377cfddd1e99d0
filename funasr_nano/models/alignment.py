"""CTC forced alignment: the most probable CTC path that spells a given token sequence.

This is the computation of ``torchaudio.functional.forced_align`` (CPU kernel,
``src/libtorchaudio/forced_align/cpu/compute.cpp``), which FunASR calls for Fun-ASR-Nano's character
timestamps (funasr 1.4.16, ``funasr/models/fun_asr_nano/tools/utils.py: forced_align``). We do not call
torchaudio: its releases pair with one torch version each (2.11, while we run 2.13) and its PyPI wheel
links the CUDA runtime. The algorithm is small (a Viterbi pass over the ``2L + 1`` CTC states), so it is
written here, vectorised over states with numpy, with torchaudio's rules for ties so that the paths
are the same: at a tie the path stays in its state, then prefers the previous state over the skip of a
blank, and it ends in the last blank unless the last token scores strictly higher.
``tests/test_timestamps.py`` checks it against an exhaustive search and against funasr 1.4.16's
pipeline.
"""

from __future__ import annotations

import dataclasses
from itertools import groupby
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FunASRNanoError
from ..results import Word


class AlignmentError(FunASRNanoError):
    """The tokens cannot be aligned to the frames: more tokens (plus one blank between each repeated
    pair) than frames."""


@dataclasses.dataclass(frozen=True)
class TokenSpan:
    """One aligned token.

    Attributes:
        token: the token id.
        start: first frame (inclusive).
        end: last frame + 1 (exclusive).
        score: the highest posterior probability of the token over its frames (as FunASR reports it).
    """

    token: int
    start: int
    end: int
    score: float


def viterbi_path(log_probs: np.ndarray, targets: Sequence[int], blank: int) -> np.ndarray:
    """The label of every frame on the best CTC path spelling ``targets``.

    Args:
        log_probs: ``(frames, vocab)`` log posteriors (float32 or float64).
        targets: token ids to align (none equal to ``blank``).
        blank: the blank id.

    Returns:
        ``(frames,)`` int64: the label of each frame (``blank`` or a target token).

    Raises:
        AlignmentError: ``frames < len(targets) + repeats`` (no CTC path exists).
        ValueError: a target equals ``blank`` or is outside the vocabulary.
    """
    log_probs = np.asarray(log_probs)
    frames, vocab = log_probs.shape
    targets = np.asarray(list(targets), dtype=np.int64)
    length = targets.size
    if length and (np.any(targets == blank) or targets.min() < 0 or targets.max() >= vocab):
        raise ValueError(f"targets must be ids in [0, {vocab}) other than the blank {blank}")
    repeats = int(np.sum(targets[1:] == targets[:-1])) if length > 1 else 0
    if frames < length + repeats:
        raise AlignmentError(f"{length} tokens ({repeats} repeats) cannot be aligned to {frames} frames")
    states = 2 * length + 1
    labels = np.full(states, blank, dtype=np.int64)
    labels[1::2] = targets
    # a token state may be entered from two states back (skipping the blank) unless it repeats the token
    may_skip = np.zeros(states, dtype=bool)
    if length > 1:
        may_skip[3::2] = targets[1:] != targets[:-1]
    neg_inf = np.array(-np.inf, dtype=log_probs.dtype)
    alpha = np.full(states, neg_inf, dtype=log_probs.dtype)
    alpha[: min(2, states)] = log_probs[0, labels[: min(2, states)]]
    back = np.zeros((frames, states), dtype=np.int8)
    stay = np.empty(states, dtype=log_probs.dtype)
    step = np.empty(states, dtype=log_probs.dtype)
    skip = np.empty(states, dtype=log_probs.dtype)
    for t in range(1, frames):
        stay[:] = alpha
        step[0] = neg_inf
        step[1:] = alpha[:-1]
        skip[:] = neg_inf
        skip[2:][may_skip[2:]] = alpha[:-2][may_skip[2:]]
        take_skip = (skip > step) & (skip > stay)
        take_step = ~take_skip & (step > stay)
        pointer = np.where(take_skip, 2, np.where(take_step, 1, 0)).astype(np.int8)
        best = np.where(take_skip, skip, np.where(take_step, step, stay))
        back[t] = pointer
        alpha = best + log_probs[t, labels]
    state = states - 1 if states == 1 or alpha[states - 1] > alpha[states - 2] else states - 2
    path = np.empty(frames, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = labels[state]
        state -= int(back[t, state])
    return path


def forced_align(log_probs: np.ndarray, targets: Sequence[int], blank: int) -> list[TokenSpan]:
    """Align ``targets`` to the frames: one :class:`TokenSpan` per target token, in order.

    The spans are FunASR's (``forced_align`` of funasr 1.4.16): runs of the same label on the best path
    (:func:`viterbi_path`), blanks left out; ``score`` is the highest ``exp(log_prob)`` of the token over
    its run, rounded to 3 decimals.

    Args:
        log_probs: ``(frames, vocab)`` log posteriors (log-softmax of the CTC head).
        targets: token ids of the text to align.
        blank: the blank id.

    Raises:
        AlignmentError: more tokens than the frames can hold.
    """
    if len(targets) == 0:
        return []
    log_probs = np.asarray(log_probs)
    path = viterbi_path(log_probs, targets, blank)
    posteriors = np.exp(log_probs[np.arange(path.size), path])
    spans = []
    for token, run in groupby(range(path.size), key=lambda t: int(path[t])):
        if token == blank:
            continue
        frames = list(run)
        score = float(posteriors[frames[0]: frames[-1] + 1].max())
        spans.append(TokenSpan(token=token, start=frames[0], end=frames[-1] + 1, score=round(score, 3)))
    return spans


@dataclasses.dataclass(frozen=True)
class CtcAnalysis:
    """What a CTC head says about one utterance before the LLM decodes it.

    Attributes:
        encoder_out: ``(frames, encoder_dim)`` float32 encoder output (kept to align the LLM's text
            afterwards without running the encoder again).
        blank_prob: ``(frames,)`` posterior of the blank per frame.
        greedy_tokens: best-path CTC tokens (argmax per frame, repeats merged, blanks dropped).
        greedy_text: their text.
        frame_seconds: seconds per frame (0.06 for Fun-ASR-Nano: LFR 6 x 10 ms).
        duration: seconds of audio analysed (the last frame may reach past it).
        audio_embeddings: ``(num_audio, llm_hidden)`` float32, the prompt's audio positions from the
            same encoder pass (the adaptor on ``encoder_out``), so that decoding does not run the encoder
            again; ``None`` when not computed.
    """

    encoder_out: Any
    blank_prob: np.ndarray
    greedy_tokens: tuple[int, ...]
    greedy_text: str
    frame_seconds: float
    duration: float
    audio_embeddings: Any = None

    @property
    def no_speech_prob(self) -> float:
        """The lowest blank posterior over the frames: near 1 when the CTC head hears no token anywhere
        (silence, noise), near 0 as soon as one frame holds a confident token. 1.0 for no frames."""
        return float(self.blank_prob.min()) if self.blank_prob.size else 1.0


def greedy_tokens(log_probs: np.ndarray, blank: int) -> list[int]:
    """Best-path CTC decoding of ``(frames, vocab)`` log posteriors: the argmax per frame, repeats merged,
    blanks dropped (FunASR's ``ctc_text``)."""
    best = np.asarray(log_probs).argmax(axis=-1)
    if best.size == 0:
        return []
    runs = best[np.concatenate([[True], best[1:] != best[:-1]])]
    return [int(t) for t in runs if t != blank]


def analyse(log_probs: np.ndarray, blank: int, decode: Callable[[Sequence[int]], str], *, encoder_out: Any,
            frame_seconds: float, duration: float, audio_embeddings: Any = None) -> CtcAnalysis:
    """The :class:`CtcAnalysis` of one utterance from its ``(frames, vocab)`` CTC log posteriors
    (``blank`` the blank id, ``decode`` the CTC tokenizer's ids -> text); the other fields are stored
    as given."""
    log_probs = np.asarray(log_probs)
    tokens = greedy_tokens(log_probs, blank)
    return CtcAnalysis(encoder_out=encoder_out, blank_prob=np.exp(log_probs[:, blank]), greedy_tokens=tuple(tokens),
                       greedy_text=decode(tokens), frame_seconds=frame_seconds, duration=duration,
                       audio_embeddings=audio_embeddings)


# whisper's word_timestamps rules (openai/whisper timing.py: merge_punctuations): opening marks join the
# next word, closing ones the previous word
PREPEND_PUNCTUATIONS = "\"'“¿([{-«「『（《【"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、；;…»」』）》】"


def _is_cjk(char: str) -> bool:
    import unicodedata

    name = unicodedata.name(char, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) or unicodedata.east_asian_width(char) == "W" \
        and char not in APPEND_PUNCTUATIONS + PREPEND_PUNCTUATIONS


def _pieces(spans: Sequence[TokenSpan], token_bytes: Callable[[int], bytes]) -> list[tuple[str, int, int, list[float]]]:
    """Tokens grouped into the shortest runs that decode as UTF-8: ``(text, start, end, scores)``."""
    pieces, data, first, scores = [], b"", None, []
    for span in spans:
        data += token_bytes(span.token)
        first = span if first is None else first
        scores.append(span.score)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        pieces.append((text, first.start, span.end, scores))
        data, first, scores = b"", None, []
    if first is not None:
        pieces.append((data.decode("utf-8", errors="replace"), first.start, spans[-1].end, scores))
    return pieces


def words_from_spans(spans: Sequence[TokenSpan], token_bytes: Callable[[int], bytes], *, frame_seconds: float,
                     offset: float = 0.0, duration: float | None = None) -> list[Word]:
    """Aligned tokens -> :class:`~funasr_nano.results.Word` records, as faster-whisper's words.

    Tokens are joined until their bytes decode; a CJK character (or a token holding CJK) is a word of
    its own (Chinese and Japanese have no spaces), other text is cut before a leading space;
    punctuation joins the previous word (an opening mark the next), as whisper's ``merge_punctuations``.
    Each word keeps its leading space, so the words' texts join back to the aligned text exactly.
    ``probability`` is the mean CTC score of its tokens.

    Args:
        spans: :func:`forced_align`'s output.
        token_bytes: token id -> its bytes.
        frame_seconds: seconds per frame.
        offset: seconds added to every time (the segment's start in the input).
        duration: seconds of audio; times are capped there (the last frame, padded by the frontend,
            may reach past the audio).
    """
    words: list[list] = []  # [text, start, end, scores]
    pending = ""  # whitespace or opening marks waiting for the next word
    for text, start, end, scores in _pieces(spans, token_bytes):
        core = text.strip()
        if not core:  # whitespace only
            pending += text
            continue
        punctuation = all(c in APPEND_PUNCTUATIONS or c in PREPEND_PUNCTUATIONS for c in core)
        if punctuation and words and not text[0].isspace() and not pending and core[0] not in PREPEND_PUNCTUATIONS:
            words[-1][0] += text
            words[-1][2] = end
            words[-1][3] = words[-1][3] + scores
            continue
        if punctuation and all(c in PREPEND_PUNCTUATIONS for c in core):
            if not words or pending or text[0].isspace() or core[0] in PREPEND_PUNCTUATIONS:
                pending += text
                continue
        glue = (words and not pending and not text[0].isspace() and not any(_is_cjk(c) for c in core)
                and not _is_cjk(words[-1][0].strip()[-1]) and not words[-1][4])
        if glue:
            words[-1][0] += text
            words[-1][2] = end
            words[-1][3] = words[-1][3] + scores
        else:
            words.append([pending + text, start, end, list(scores), any(_is_cjk(c) for c in core)])
            pending = ""
    if pending:
        if words:
            words[-1][0] += pending
        else:
            return []
    limit = np.inf if duration is None else duration

    def seconds(frame: int) -> float:
        return round(offset + min(frame * frame_seconds, limit), 3)

    return [Word(start=seconds(start), end=seconds(end), word=text,
                 probability=round(float(np.mean(scores)), 3) if scores else 0.0)
            for text, start, end, scores, _ in words]
