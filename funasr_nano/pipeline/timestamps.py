"""What happens around the LLM for each segment: the CTC head's analysis before decoding (the silence
gate, ``no_speech_prob``), the word alignment after it.

Fun-ASR-Nano's official checkpoint has a CTC head beside the LLM (:mod:`funasr_nano.models.fun_asr_nano.ctc`).
Before a segment is decoded, the head tells whether it hears any token at all (``no_speech_prob``, the
lowest blank posterior over its frames); the silence gate drops the segment when that is above
``no_speech_threshold``, so that the LLM never writes text into silence or noise. After decoding, the
LLM's text is force-aligned to the same posteriors (FunASR's timestamps) and cut into words.
The analysis runs the encoder once for both the CTC head and the adaptor; the LLM decodes from the
adaptor output it kept (:attr:`PreparedSegment.audio_embeddings`). Qwen3-ASR has no CTC head: with Qwen3-ForcedAligner loaded beside it, that separate model reads each
segment's audio again and times the words of the text (:mod:`funasr_nano.models.qwen3_asr.aligner`).
Without a CTC head, ``no_speech_prob`` comes from silero-vad (1 - the highest speech probability of a
32 ms window), computed only when the gate is asked for (``silence_gate=True``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..audio.vad import speech_probabilities
from ..errors import CheckpointError, InvalidOptionError
from ..models.alignment import AlignmentError, CtcAnalysis
from ..options import TranscribeOptions
from ..results import Segment
from .hotwords import load_hotwords_file

if TYPE_CHECKING:
    from .speech_model import SpeechModel

logger = logging.getLogger(__name__)


def check_timestamps(model: "SpeechModel", options: TranscribeOptions) -> None:
    """Refuse ``word_timestamps`` or ``hotwords_file`` on a model without a CTC head, and an unreadable
    ``hotwords_file``, before any audio is decoded.

    Raises:
        CheckpointError: naming the missing CTC branch. InvalidOptionError: the hotwords file.
    """
    if options.word_timestamps:
        model.family.check_word_timestamps()
        limit = model.family.max_align_seconds
        longest = max(options.max_duration, options.vad_options.max_segment_duration if options.vad is not False else 0)
        if limit is not None and longest > limit:
            raise InvalidOptionError(f"word_timestamps: this model's aligner takes at most {limit:g} s at once; lower "
                                     f"max_duration / vad_options.max_segment_duration ({longest:g} s) to {limit:g}")
    if options.hotwords_file is not None:
        if not model.family.has_ctc:
            raise CheckpointError(f"{model.family.path}: hotwords_file is narrowed per segment by the CTC head's read-out, "
                                  "which this checkpoint does not have (official Fun-ASR-Nano with its CTC branch); "
                                  "pass a short list as hotwords instead")
        load_hotwords_file(options.hotwords_file)


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
        hotwords: the entries of ``hotwords_file`` its CTC read-out matched.
    """

    waveform: np.ndarray
    start: float
    end: float
    analysis: CtcAnalysis | None
    no_speech_prob: float | None
    speech: bool
    hotwords: tuple[str, ...] = ()

    @property
    def audio_embeddings(self):
        """The prompt's audio embeddings from the CTC analysis' encoder pass, else ``None`` (decoding
        computes them): the encoder runs once per segment either way."""
        return None if self.analysis is None else self.analysis.audio_embeddings


def prepare(model: "SpeechModel", options: TranscribeOptions, waveform: np.ndarray, start: float, end: float,
            vad_segment: bool) -> PreparedSegment:
    """The CTC analysis (when timestamps or the gate need it) and the gate's decision for one segment."""
    gate = gate_applies(model, options, vad_segment)
    analysis = None
    no_speech = None
    if model.family.has_ctc and (options.word_timestamps or gate or options.hotwords_file is not None):
        analysis = model.family.ctc_analysis(waveform)
        no_speech = analysis.no_speech_prob
    elif gate:
        probs = speech_probabilities(waveform)
        no_speech = float(1.0 - probs.max()) if probs.size else 1.0
    speech = not (gate and no_speech is not None and no_speech > options.no_speech_threshold)
    if not speech:
        logger.info("silence gate: %.2f-%.2f s dropped (no_speech_prob %.3f > %.2f)", start, end, no_speech,
                    options.no_speech_threshold)
    matched: tuple[str, ...] = ()
    if speech and options.hotwords_file is not None:
        matched = tuple(load_hotwords_file(options.hotwords_file).match(analysis.greedy_text, options.max_file_hotwords))
        logger.debug("segment %.2f-%.2f s: hotwords %s from %s", start, end, matched, options.hotwords_file)
    return PreparedSegment(waveform, start, end, analysis, no_speech, speech, matched)


def prompts(model: "SpeechModel", options: TranscribeOptions, prompt: str,
            prepared: Sequence[PreparedSegment]) -> list[str] | str:
    """The prompt text of each segment: ``prompt`` unless ``hotwords_file`` matched
    entries for it (then they join ``options.hotwords``)."""
    if options.hotwords_file is None:
        return prompt
    return [model.family.transcription_prompt(
        options.language, tuple(options.hotwords) + tuple(w for w in p.hotwords if w not in options.hotwords),
        options.itn) if p.hotwords else prompt for p in prepared]


def finish(model: "SpeechModel", options: TranscribeOptions, prepared: PreparedSegment, tokens: Sequence[int],
           text: str, avg_logprob: float | None = None) -> Segment:
    """The :class:`Segment` of a decoded segment, with its words when asked for.

    A text the CTC frames cannot hold (more CTC tokens than 60 ms frames, e.g. a looping LLM output)
    gets no words (``()``) and a warning: times are never invented.
    """
    words = None
    if options.word_timestamps:
        try:
            if model.family.has_ctc:
                words = model.family.align_words(prepared.analysis, text, offset=prepared.start)
            else:  # a separate aligner reads the audio again (Qwen3-ASR: Qwen3-ForcedAligner)
                language = model.family.parse_transcription(tokens, options.language)[0]
                words = model.family.align_waveform(prepared.waveform, text, language, offset=prepared.start)
        except AlignmentError as error:
            logger.warning("segment %.2f-%.2f s: no word timestamps (%s)", prepared.start, prepared.end, error)
            words = ()
    return Segment(start=prepared.start, end=prepared.end, text=text, tokens=tuple(tokens), words=words,
                   avg_logprob=avg_logprob, no_speech_prob=prepared.no_speech_prob)
