"""Voice activity detection: cut long audio into speech segments of at most ~30 s, at pauses.

Fun-ASR-Nano decodes one segment of up to ~30 s well and loops on longer input, so long audio is cut
first. Speech probabilities come from silero-vad: its 16 kHz "sequence" ONNX model in onnxruntime (the
model of silero's public ``silero_vad.sequence_vad.SileroVADSequence``, carried in
``funasr_nano/assets/silero_vad`` with its MIT licence, since the ``silero-vad`` package requires torch):
one probability per 32 ms window of 512 samples, with the 64 samples before the window as context, one
ONNX call per block of up to 512 windows, the LSTM state ``(h, c)`` passed in and out. The state is the
caller's, so one loaded :class:`SileroVAD` serves any number of concurrent streams.

The segmentation (:class:`VadSegmenter`) is online: it consumes audio block by block and emits each
speech segment as soon as it can no longer change, keeping in memory only the audio of the segment
still open (at most ``max_segment_duration`` plus ``max_merge_gap``). The same class serves offline
long-audio transcription and live streaming, so both cut the same audio at the same samples whatever
the block sizes.

Rules (all durations in :class:`VadOptions`):

1. *Speech regions*, with silero's hysteresis: a region starts at a window whose probability is
   ``>= threshold`` and ends where probabilities stay below ``neg_threshold`` for ``min_silence_duration``;
   regions shorter than ``min_speech_duration`` are dropped.
2. *Merging*: consecutive regions separated by at most ``max_merge_gap`` join one segment while the
   padded segment stays within ``max_segment_duration`` (short regions are merged, long pauses split).
3. *Cutting*: a single region longer than the maximum is cut at its least speech-like window in the
   second half of the allowed length (as silero's ``max_speech_duration_s`` does, without padding at
   the cut).
4. *Padding*: segments are widened by ``speech_pad`` on each side, never overlapping a neighbour
   (between close segments each gets at most half the gap).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import threading
from typing import Iterable, Iterator

import numpy as np

from ..errors import InvalidOptionError, MissingDependencyError
from ..validation import check_number
from .io import SAMPLE_RATE

logger = logging.getLogger(__name__)

WINDOW = 512  # samples per silero-vad window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window that silero-vad v5 prepends
BLOCK = 512  # windows per ONNX call (silero's sequence_vad.DEFAULT_MAX_FRAMES, ~16 s)
MODEL_FILE = "silero_vad_16k_sequence.onnx"


@dataclasses.dataclass(frozen=True)
class VadOptions:
    """How long audio is cut into speech segments. Durations in seconds.

    Attributes:
        threshold: speech probability at or above which a window is speech (silero's default 0.5).
        neg_threshold: probability below which a window counts as silence once speech started
            (``None``: ``threshold - 0.15``, silero's default).
        min_speech_duration: speech regions shorter than this are dropped (clicks, breaths).
        min_silence_duration: silence that ends a speech region.
        speech_pad: padding added on each side of a segment (the model needs the onset and the tail).
        max_segment_duration: longest segment, padding included. Fun-ASR-Nano was trained on
            utterances up to ~30 s and loops on longer ones.
        max_merge_gap: regions separated by at most this much silence are merged into one segment
            (while it fits in ``max_segment_duration``); a longer pause always starts a new segment.
            In live streaming this is also how long a pause must last before a segment is final.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration: float = 0.25
    min_silence_duration: float = 0.3
    speech_pad: float = 0.2
    max_segment_duration: float = 30.0
    max_merge_gap: float = 2.0

    def __post_init__(self):
        check_number("threshold", self.threshold, 0.0, 1.0, low_open=True, high_open=True)
        if self.neg_threshold is not None:
            check_number("neg_threshold", self.neg_threshold, 0.0, low_open=True)
            if self.neg_threshold > self.threshold:
                raise InvalidOptionError(f"neg_threshold must be in (0, threshold], got {self.neg_threshold}")
        for name in ("min_speech_duration", "min_silence_duration", "speech_pad", "max_merge_gap"):
            check_number(name, getattr(self, name), 0.0)
        check_number("max_segment_duration", self.max_segment_duration)
        if self.max_segment_duration < 1.0 + 2 * self.speech_pad:
            raise InvalidOptionError(
                f"max_segment_duration must be >= 1 s plus twice speech_pad, got {self.max_segment_duration}"
            )
        if self.max_merge_gap < self.speech_pad:
            raise InvalidOptionError(f"max_merge_gap ({self.max_merge_gap}) must be >= speech_pad ({self.speech_pad})")

    @property
    def silence_threshold(self) -> float:
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)


@dataclasses.dataclass(frozen=True)
class SpeechChunk:
    """A padded speech segment found by the VAD.

    Attributes:
        start: first sample (16 kHz) from the beginning of the input.
        end: one past the last sample.
        samples: ``(end - start,)`` float32 audio.
    """

    start: int
    end: int
    samples: np.ndarray

    @property
    def start_time(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_time(self) -> float:
        return self.end / SAMPLE_RATE


class SileroVAD:
    """Silero VAD's 16 kHz sequence model in onnxruntime, stateless: the caller carries the LSTM state.

    Raises:
        MissingDependencyError: onnxruntime is not installed.
    """

    def __init__(self):
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingDependencyError("voice activity detection needs onnxruntime (pip install funasr-nano "
                                         "brings it)") from error
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # as silero's wrappers
        options.log_severity_level = 3  # its exported graph warns about unused initializers
        model = importlib.resources.files("funasr_nano") / "assets" / "silero_vad" / MODEL_FILE
        with importlib.resources.as_file(model) as path:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, frames: np.ndarray, state: tuple[np.ndarray, np.ndarray] | None
                 ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Speech probabilities of consecutive windows of one stream.

        Args:
            frames: ``(n, 576)`` float32: each row a 512-sample window preceded by the 64 samples before it.
            state: the LSTM state ``(h, c)`` (each ``(1, 1, 128)``) returned by the previous call for this
                stream, or ``None`` at its start.

        Returns:
            ``(n,)`` float32 probabilities and the new state.
        """
        if state is None:
            state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))
        hidden, cell = state
        probs = []
        for begin in range(0, frames.shape[0], BLOCK):
            block = np.ascontiguousarray(frames[begin : begin + BLOCK], dtype=np.float32)
            values, hidden, cell = self._session.run(["speech_probs", "hn", "cn"],
                                                     {"input": block, "h": hidden, "c": cell})
            probs.append(np.asarray(values, np.float32).reshape(-1))
        return (np.concatenate(probs) if probs else np.zeros(0, np.float32)), (hidden, cell)


_vad_lock = threading.Lock()
_vad: SileroVAD | None = None


def load_vad() -> SileroVAD:
    """The process-wide :class:`SileroVAD` (loaded on first use, ~1.3 MB, thread-safe)."""
    global _vad
    with _vad_lock:
        if _vad is None:
            _vad = SileroVAD()
        return _vad


class VadSegmenter:
    """Online speech segmentation of one audio stream (rules in the module docstring).

    Feed 16 kHz float32 samples with :meth:`push`, end with :meth:`finish`; both return the segments
    that became final. Holds per-stream state: make one per stream (it is cheap; the network is shared).
    """

    def __init__(self, options: VadOptions | None = None, vad: SileroVAD | None = None):
        self.options = options or VadOptions()
        self._vad = vad or load_vad()
        o = self.options
        self._min_speech = o.min_speech_duration * SAMPLE_RATE
        self._min_silence = o.min_silence_duration * SAMPLE_RATE
        self._pad = int(round(o.speech_pad * SAMPLE_RATE))
        self._max_len = int(o.max_segment_duration * SAMPLE_RATE) - 2 * self._pad  # unpadded
        self._merge_gap = o.max_merge_gap * SAMPLE_RATE
        self._threshold, self._silence = o.threshold, o.silence_threshold
        # audio: every sample from _offset on (older ones are no longer needed)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0
        self._total = 0  # samples received
        self._pos = 0  # samples run through the VAD (a multiple of WINDOW)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._state = None  # silero's LSTM state (h, c), each (1, 1, 128)
        self._triggered = False
        self._region_start = 0
        self._temp_end: int | None = None
        self._region_probs: list[tuple[int, float]] = []
        self._pending: list[int] | None = None  # [start, end] of the unpadded segment still open
        self._last_end = 0  # padded end of the last emitted segment
        self._ready: list[SpeechChunk] = []
        self._finished = False

    @property
    def samples_received(self) -> int:
        return self._total

    def push(self, samples: np.ndarray) -> list[SpeechChunk]:
        """Add ``(n,)`` float32 16 kHz samples; return the segments that became final (in order)."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._buffer = np.concatenate([self._buffer, samples])
        self._total += samples.size
        count = (self._total - self._pos) // WINDOW
        if count:
            self._run(count)
        self._trim()
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[SpeechChunk]:
        """End of stream: close the open speech and return the last segments."""
        if self._finished:
            return []
        tail = self._total - self._pos
        if tail:  # the last partial window, zero-padded as silero does
            self._buffer = np.concatenate([self._buffer, np.zeros(WINDOW - tail, dtype=np.float32)])
            self._run(1)
            self._buffer = self._buffer[: self._total - self._offset]
        if self._triggered:
            end = self._temp_end if self._temp_end is not None else self._total
            end = min(end, self._total)
            self._triggered = False
            if end - self._region_start >= self._min_speech:
                self._add_region(self._region_start, end)
        if self._pending is not None:
            self._emit_pending(next_start=None)
        self._finished = True
        ready, self._ready = self._ready, []
        return ready

    def open_speech(self) -> tuple[int, np.ndarray] | None:
        """The not yet final segment as heard so far: ``(start sample, samples up to now)``, or ``None``
        when no speech is open. Used by live streaming for partial results."""
        if self._pending is not None:
            start = self._pending[0]
        elif self._triggered:
            start = self._region_start
        else:
            return None
        start = max(start - self._pad, self._last_end, 0)
        return start, self._buffer[start - self._offset : self._total - self._offset].copy()

    # -- internals ------------------------------------------------------------------------------------

    def _run(self, count: int) -> None:
        begin = self._pos - self._offset
        audio = self._buffer[begin : begin + count * WINDOW]
        windows = audio.reshape(count, WINDOW)
        context = np.concatenate([self._context[None], windows[:-1, -CONTEXT:]]) if count > 1 else self._context[None]
        frames = np.concatenate([context, windows], axis=1)
        self._context = windows[-1, -CONTEXT:].copy()
        probs, self._state = self._vad(frames, self._state)
        for prob in probs.tolist():
            self._step(self._pos, prob)
            self._pos += WINDOW

    def _step(self, cur: int, prob: float) -> None:
        if self._triggered:
            self._region_probs.append((cur, prob))
            if prob >= self._threshold:
                self._temp_end = None
            elif prob < self._silence:
                if self._temp_end is None:
                    self._temp_end = cur
                if cur + WINDOW - self._temp_end >= self._min_silence:
                    end, self._temp_end, self._triggered, self._region_probs = self._temp_end, None, False, []
                    if end - self._region_start >= self._min_speech:
                        self._add_region(self._region_start, end)
            if self._triggered and self._temp_end is None and cur + WINDOW - self._region_start > self._max_len:
                self._force_cut()
        elif prob >= self._threshold:
            self._triggered, self._region_start, self._temp_end = True, cur, None
            self._region_probs = [(cur, prob)]
        if self._pending is not None:  # can the open segment still grow?
            if self._triggered:
                least_end = self._temp_end if self._temp_end is not None else cur + WINDOW
                if (self._region_start - self._pending[1] > self._merge_gap
                        or least_end - self._pending[0] > self._max_len):
                    self._emit_pending(next_start=self._region_start)
            elif cur + WINDOW - self._pending[1] > self._merge_gap:
                self._emit_pending(next_start=None)

    def _add_region(self, start: int, end: int) -> None:
        if (self._pending is not None and start - self._pending[1] <= self._merge_gap
                and end - self._pending[0] <= self._max_len):
            self._pending[1] = end
            return
        if self._pending is not None:
            self._emit_pending(next_start=start)
        self._pending = [start, end]

    def _force_cut(self) -> None:
        """The current region reached the maximum length without a pause: cut it."""
        if self._pending is not None:
            self._emit_pending(next_start=self._region_start)
        earliest = self._region_start + self._max_len // 2
        candidates = [(prob, sample) for sample, prob in self._region_probs if sample >= earliest]
        cut = min(candidates)[1] if candidates else self._region_probs[-1][0]
        logger.debug("speech longer than %.1f s without a pause: cut at %.2f s",
                     self.options.max_segment_duration, cut / SAMPLE_RATE)
        self._pending = [self._region_start, cut]
        self._emit_pending(next_start=cut)
        self._region_start = cut
        self._region_probs = [(sample, prob) for sample, prob in self._region_probs if sample >= cut]

    def _emit_pending(self, next_start: int | None) -> None:
        start, end = self._pending
        self._pending = None
        left = max(start - self._pad, self._last_end, 0)
        right = end + self._pad if next_start is None else min(end + self._pad, end + (next_start - end) // 2)
        right = min(right, self._total)
        assert self._offset <= left < right <= self._offset + self._buffer.size, (left, right, self._offset)
        samples = self._buffer[left - self._offset : right - self._offset].copy()
        self._ready.append(SpeechChunk(start=left, end=right, samples=samples))
        self._last_end = right

    def _trim(self) -> None:
        """Drop audio no future segment can include: before the earliest possible (padded) start."""
        earliest = self._pos  # a future region starts at a window not yet run
        if self._pending is not None:
            earliest = min(earliest, self._pending[0])
        if self._triggered:
            earliest = min(earliest, self._region_start)
        keep = min(max(earliest - self._pad, self._last_end, 0), self._pos)
        if keep > self._offset:
            self._buffer = self._buffer[keep - self._offset :]
            self._offset = keep


def speech_probabilities(waveform: np.ndarray, vad: SileroVAD | None = None) -> np.ndarray:
    """silero's speech probability of every whole 32 ms window of ``waveform`` (16 kHz float32), the
    stream starting from silence (a trailing part window is left out): ``(windows,)`` float32."""
    count = waveform.size // WINDOW
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    windows = np.ascontiguousarray(waveform[: count * WINDOW], dtype=np.float32).reshape(count, WINDOW)
    context = np.concatenate([np.zeros((1, CONTEXT), np.float32), windows[:-1, -CONTEXT:]])
    probs, _ = (vad or load_vad())(np.concatenate([context, windows], axis=1), None)
    return probs


def speech_chunks(blocks: Iterable[np.ndarray], options: VadOptions | None = None,
                  vad: SileroVAD | None = None) -> Iterator[SpeechChunk]:
    """Lazily cut a stream of 16 kHz float32 blocks (e.g. :func:`funasr_nano.audio.io.iter_audio`) into
    padded speech segments of at most ``options.max_segment_duration`` seconds."""
    segmenter = VadSegmenter(options, vad)
    for block in blocks:
        yield from segmenter.push(block)
    yield from segmenter.finish()
