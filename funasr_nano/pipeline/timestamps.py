"""What happens around the LLM for each segment: the CTC head's analysis before decoding (the silence
gate, ``no_speech_prob``), the word alignment after it.

Fun-ASR-Nano's official checkpoint has a CTC head beside the LLM (:mod:`funasr_nano.models.fun_asr_nano.ctc`).
Before a segment is decoded, the head tells whether it hears any token at all (``no_speech_prob``, the
lowest blank posterior over its frames); the silence gate drops the segment when that is above
``no_speech_threshold``, so that the LLM never writes text into silence or noise. After decoding, the
LLM's text is force-aligned to the same posteriors (FunASR's timestamps) and cut into words.
Without a CTC head, ``no_speech_prob`` comes from silero-vad (1 - the highest speech probability of a
32 ms window), computed only when the gate is asked for (``silence_gate=True``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..audio.vad import speech_probabilities
from ..models.alignment import AlignmentError, CtcAnalysis
from ..options import TranscribeOptions
from ..results import Segment

if TYPE_CHECKING:
    from .speech_model import SpeechModel

logger = logging.getLogger(__name__)


def check_timestamps(model: "SpeechModel", options: TranscribeOptions) -> None:
    """Refuse ``word_timestamps`` on a model without a CTC head, before any audio is decoded.

    Raises:
        CheckpointError: naming the missing CTC branch (from the family).
    """
    if options.word_timestamps:
        model.family.check_word_timestamps()


def gate_applies(model: "SpeechModel", options: TranscribeOptions, vad_segment: bool) -> bool:
    """Whether the silence gate looks at a segment (see ``TranscribeOptions.silence_gate``)."""
    if options.silence_gate is None:
        return vad_segment and model.family.has_ctc
    return options.silence_gate


@dataclasses.dataclass(frozen=True)
class PreparedSegment:
    """A segment before decoding.

    Attributes:
        waveform: its 16 kHz samples.
        start: seconds from the start of the input.
        end: seconds.
        analysis: the CTC head's analysis, when computed.
        no_speech_prob: when computed (CTC, else silero).
        speech: ``False`` when the silence gate drops it.
    """

    waveform: np.ndarray
    start: float
    end: float
    analysis: CtcAnalysis | None
    no_speech_prob: float | None
    speech: bool


def prepare(model: "SpeechModel", options: TranscribeOptions, waveform: np.ndarray, start: float, end: float,
            vad_segment: bool) -> PreparedSegment:
    """The CTC analysis (when timestamps or the gate need it) and the gate's decision for one segment."""
    gate = gate_applies(model, options, vad_segment)
    analysis = None
    no_speech = None
    if model.family.has_ctc and (options.word_timestamps or gate):
        analysis = model.family.ctc_analysis(waveform)
        no_speech = analysis.no_speech_prob
    elif gate:
        probs = speech_probabilities(waveform)
        no_speech = float(1.0 - probs.max()) if probs.size else 1.0
    speech = not (gate and no_speech is not None and no_speech > options.no_speech_threshold)
    if not speech:
        logger.info("silence gate: %.2f-%.2f s dropped (no_speech_prob %.3f > %.2f)", start, end, no_speech,
                    options.no_speech_threshold)
    return PreparedSegment(waveform, start, end, analysis, no_speech, speech)


def finish(model: "SpeechModel", options: TranscribeOptions, prepared: PreparedSegment, tokens: Sequence[int],
           text: str, avg_logprob: float | None = None) -> Segment:
    """The :class:`Segment` of a decoded segment, with its words when asked for.

    A text the CTC frames cannot hold (more CTC tokens than 60 ms frames, e.g. a looping LLM output)
    gets no words (``()``) and a warning: times are never invented.
    """
    words = None
    if options.word_timestamps:
        try:
            words = model.family.align_words(prepared.analysis, text, offset=prepared.start)
        except AlignmentError as error:
            logger.warning("segment %.2f-%.2f s: no word timestamps (%s)", prepared.start, prepared.end, error)
            words = ()
    return Segment(start=prepared.start, end=prepared.end, text=text, tokens=tuple(tokens), words=words,
                   avg_logprob=avg_logprob, no_speech_prob=prepared.no_speech_prob)
