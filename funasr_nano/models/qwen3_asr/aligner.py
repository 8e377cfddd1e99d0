"""Qwen3-ForcedAligner: the times of a given transcript's words in its audio, in one forward pass.

Reproduces ``qwen-asr`` 0.0.6 (``qwen_asr/inference/qwen3_forced_aligner.py``: ``Qwen3ForcedAligner.align``
and ``Qwen3ForceAlignProcessor``):

1. The text is cut into units: each CJK ideograph alone, other text at whitespace, characters that are
   not letters, digits or ``'`` dropped (punctuation); Japanese by ``nagisa``'s words, Korean by
   ``soynlp``'s (both optional packages). transformers' ``Qwen3ASRProcessor.split_words_for_alignment``
   is the port of those rules that runs here.
2. The prompt is ``<|audio_start|><|audio_pad|><|audio_end|>`` followed by every unit and two
   ``<timestamp>`` tokens after it, no chat template; the audio placeholder becomes one position per
   encoder output frame (the audio path of Qwen3-ASR: :mod:`.frontend`, :func:`.encoder.encode_audio`).
3. One forward pass of the network (transformers' ``Qwen3ASRForTokenClassification``, see
   :mod:`.aligner_checkpoint`); at each ``<timestamp>`` slot the arg-max of the classifier is a time bin
   of ``timestamp_segment_time`` (80 ms): the first slot of a unit is its start, the second its end.
4. Out-of-order times are repaired: the longest non-decreasing run is kept, runs of up to two others
   snap to the nearer kept neighbour, longer runs are spread evenly between their neighbours; times in
   seconds rounded to milliseconds (``Qwen3ASRProcessor.decode_forced_alignment``, the port of
   ``fix_timestamp``/``parse_timestamp``).

qwen-asr aligns at most 180 s of audio at once (``MAX_FORCE_ALIGN_INPUT_SECONDS``: with timestamps it
cuts audio into chunks of at most 180 s and transcribes and aligns each); :class:`ForcedAligner` refuses a
longer clip (the classifier's 5000 bins span 400 s), and transcription aligns each segment, which the
pipeline keeps within that bound.

On top of the reference's units, :func:`words_from_units` gives :class:`~funasr_nano.results.Word` records
whose texts join back to the transcript exactly (punctuation attached as whisper does), times capped at
the audio's end, and a probability: the classifier's softmax probability of the chosen bin, averaged over
the unit's two slots (the reference reports none).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np
import torch

from ...audio.io import SAMPLE_RATE, AudioInput, load_audio
from ...errors import AudioTooLongError, CheckpointError, InvalidOptionError, MissingDependencyError
from ...results import Word
from ..alignment import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS, AlignmentError
from .aligner_checkpoint import LoadedAligner
from .frontend import Frontend, FrontendConfig
from .encoder import ENCODER_ATTENTIONS, encode_audio
from .prompt import SUPPORTED_LANGUAGES, language_name

logger = logging.getLogger(__name__)

# qwen-asr's utils.MAX_FORCE_ALIGN_INPUT_SECONDS
MAX_ALIGN_SECONDS = 180.0
AUDIO_START, AUDIO_PAD, AUDIO_END = "<|audio_start|>", "<|audio_pad|>", "<|audio_end|>"
TIMESTAMP = "<timestamp>"
# the packages transformers' word splitter imports for these languages
SPLITTER_PACKAGES = {"Japanese": "nagisa", "Korean": "soynlp"}


@dataclasses.dataclass(frozen=True)
class AlignedUnit:
    """One unit the aligner times, as the reference's ``ForcedAlignItem``.

    Attributes:
        text: a CJK character or a word, punctuation removed.
        start: seconds from the start of the clip (milliseconds / 1000, rounded to 3 decimals).
        end: seconds.
        probability: the classifier's probability of the chosen bins (mean of the two slots).
    """

    text: str
    start: float
    end: float
    probability: float


class ForcedAligner:
    """A loaded Qwen3-ForcedAligner. Holds no per-call state (safe across threads).

    Args:
        checkpoint: from :func:`.aligner_checkpoint.load_aligner`.
        encoder_attention: as :class:`.model.Qwen3AsrModel` (``"windowed"``: the model as built;
            ``"full"``: what the reference's transformers backend computes on the CPU; the two differ on
            clips longer than one 8 s window).
    """

    def __init__(self, checkpoint: LoadedAligner, encoder_attention: str = "windowed"):
        from transformers import Qwen3ASRFeatureExtractor, Qwen3ASRProcessor

        if encoder_attention not in ENCODER_ATTENTIONS:
            raise InvalidOptionError(f"encoder_attention must be one of {ENCODER_ATTENTIONS}, "
                                     f"not {encoder_attention!r}")
        self.checkpoint = checkpoint
        self.encoder_attention = encoder_attention
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.path = checkpoint.path
        self.n_window = int(self.model.config.audio_config.n_window)
        self.frontend = Frontend(FrontendConfig.from_checkpoint(checkpoint.feature_config, self.n_window))
        self.audio_token_id = int(self.model.config.audio_token_id)
        ids = self.tokenizer.convert_tokens_to_ids([AUDIO_START, AUDIO_PAD, AUDIO_END])
        if ids[1] != self.audio_token_id or any(i is None or i == self.tokenizer.unk_token_id for i in ids):
            raise CheckpointError(f"{self.path}: the tokenizer lacks {AUDIO_START}{AUDIO_PAD}{AUDIO_END} at the "
                                  f"config's audio_token_id {self.audio_token_id}")
        try:
            self.processor = Qwen3ASRProcessor(feature_extractor=Qwen3ASRFeatureExtractor(), tokenizer=self.tokenizer,
                                               timestamp_segment_time=checkpoint.timestamp_segment_time)
        except (AttributeError, ValueError, TypeError) as error:
            raise CheckpointError(f"{self.path}: transformers' Qwen3ASRProcessor does not accept this tokenizer "
                                  f"({error}); it needs the audio tokens in extra_special_tokens") from error

    @property
    def device(self) -> torch.device:
        return next(self.model.model.audio_tower.parameters()).device

    # -- text -----------------------------------------------------------------------------------------

    def split_units(self, text: str, language: str | None) -> list[str]:
        """The units of ``text`` the aligner times (see the module docstring, step 1).

        Raises:
            UnsupportedLanguageError: an unknown language. MissingDependencyError: Japanese without
                ``nagisa``, Korean without ``soynlp``.
        """
        name = language_name(language, SUPPORTED_LANGUAGES)
        try:
            return list(self.processor.split_words_for_alignment(text, name))
        except ImportError as error:
            package = SPLITTER_PACKAGES.get(name or "", "a word splitter")
            raise MissingDependencyError(f"{name} forced alignment cuts words with {package}, which is not installed: "
                                         f"pip install {package}") from error

    def prompt_ids(self, units: Sequence[str], num_audio: int) -> tuple[list[int], int]:
        """``(ids, audio_start)``: the prompt's token ids with ``num_audio`` audio positions from
        ``audio_start`` on (see the module docstring, step 2). The text after the audio is tokenized
        alone; the reference tokenizes the whole string, which gives the same ids since the audio is
        fenced by special tokens."""
        body = AUDIO_END + "".join(unit + TIMESTAMP + TIMESTAMP for unit in units)
        prefix = list(self.tokenizer.encode(AUDIO_START, add_special_tokens=False))
        suffix = list(self.tokenizer.encode(body, add_special_tokens=False))
        return prefix + [self.audio_token_id] * num_audio + suffix, len(prefix)

    # -- alignment ------------------------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, waveform: np.ndarray, units: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (1, length), logits (1, length, classify_num))``: the prompt of ``units`` with the audio of
        ``waveform`` (``(samples,)`` 16 kHz float32) and the classifier's float32 logits at every position."""
        features, mask = self.frontend(waveform)
        audio = encode_audio(self.model.model, features, mask, self.n_window, self.encoder_attention)
        ids, start = self.prompt_ids(units, audio.shape[0])
        ids_tensor = torch.tensor([ids], dtype=torch.long, device=self.device)
        embeddings = self.model.model.get_input_embeddings()(ids_tensor)
        embeddings[0, start:start + audio.shape[0]] = audio.to(embeddings.dtype)
        return ids_tensor, self.model(inputs_embeds=embeddings).logits.float()

    def align_units(self, waveform: np.ndarray, text: str, language: str | None = None) -> list[AlignedUnit]:
        """The reference's alignment of ``text`` to one clip: its units with start and end times in
        seconds from the clip's start (not capped; see :func:`words_from_units`).

        Args:
            waveform: ``(samples,)`` 16 kHz float32, at most :data:`MAX_ALIGN_SECONDS` long.
            text: the transcript (any text; punctuation is ignored).
            language: ``None``, a name (``"Chinese"``) or a code (``"zh"``): only Japanese and Korean
                change how words are cut.

        Raises:
            AudioTooLongError: a clip longer than 180 s. UnsupportedLanguageError, MissingDependencyError:
            see :meth:`split_units`.
        """
        waveform = np.asarray(waveform, dtype=np.float32)
        seconds = waveform.size / SAMPLE_RATE
        if seconds > MAX_ALIGN_SECONDS:
            raise AudioTooLongError(f"{seconds:.1f} s of audio: Qwen3-ForcedAligner aligns at most "
                                    f"{MAX_ALIGN_SECONDS:g} s at once (qwen-asr's limit); cut the audio, or "
                                    "transcribe it with word_timestamps (each segment is aligned)")
        units = self.split_units(text, language)
        if not units:
            return []
        ids, logits = self.logits(waveform, units)
        return self.decode(ids, logits, units)

    def decode(self, ids: torch.Tensor, logits: torch.Tensor, units: Sequence[str]) -> list[AlignedUnit]:
        """Steps 3 and 4 of the module docstring: the classifier's ``logits`` ``(1, length, classify_num)``
        at the ``<timestamp>`` slots of ``ids`` ``(1, length)`` -> the units' times.

        Raises:
            AlignmentError: not two slots per unit (a text holding ``<timestamp>`` tokens of its own).
        """
        slots = ids[0] == self.checkpoint.timestamp_token_id
        if int(slots.sum()) != 2 * len(units):
            raise AlignmentError(f"{int(slots.sum())} <timestamp> slots for {len(units)} units: the text holds "
                                 "<timestamp> tokens of its own")
        items = self.processor.decode_forced_alignment(logits, ids, [list(units)], self.checkpoint.timestamp_token_id,
                                                       self.checkpoint.timestamp_segment_time)[0]
        chosen = logits[0, slots].float().softmax(-1).max(-1).values.view(-1, 2).mean(-1).tolist()
        return [AlignedUnit(text=item["text"], start=float(item["start_time"]), end=float(item["end_time"]),
                            probability=round(float(p), 3)) for item, p in zip(items, chosen)]

    def align(self, audio: AudioInput, text: str, language: str | None = None, *,
              offset: float = 0.0) -> list[Word]:
        """Forced alignment of a known transcript: the words of ``text`` with their times in ``audio``.

        Args:
            audio: a file path, bytes of a file, or ``(samples,)`` 16 kHz float32 samples
                (:func:`funasr_nano.audio.io.load_audio`); at most 180 s.
            text: the transcript.
            language: as :meth:`align_units`.
            offset: seconds added to every time (the clip's start in a longer input).

        Returns:
            :class:`~funasr_nano.results.Word` records joining back to ``text`` (see
            :func:`words_from_units`); empty when ``text`` holds no letters or digits.

        Raises:
            AudioDecodeError, AudioTooShortError: the audio. AudioTooLongError, UnsupportedLanguageError,
            MissingDependencyError: see :meth:`align_units`. AlignmentError: a unit not found in ``text``.
        """
        waveform = load_audio(audio)
        units = self.align_units(waveform, text, language)
        return words_from_units(text, units, offset=offset, duration=waveform.size / SAMPLE_RATE)


def _locate(text: str, units: Sequence[AlignedUnit]) -> list[tuple[int, int]]:
    """``[(first, last + 1)]``: where each unit's characters sit in ``text``, matched in order (a unit is
    its word's letters and digits, so they appear in ``text`` in the same order, maybe with punctuation
    between them, as in ``e-mail`` -> ``email``).

    Raises:
        AlignmentError: a unit whose characters are not found.
    """
    spans, position = [], 0
    for unit in units:
        first = None
        for char in unit.text:
            found = text.find(char, position)
            if found < 0:
                raise AlignmentError(f"the aligner's unit {unit.text!r} is not in the text after position {position}")
            first = found if first is None else first
            position = found + 1
        spans.append((first if first is not None else position, position))
    return spans


def _split_gap(gap: str) -> tuple[str, str]:
    """Text between two units -> ``(what joins the previous word, what joins the next)``: up to the first
    whitespace to the previous word (closing punctuation), the rest to the next; without whitespace,
    trailing opening marks (``“``, ``(``, ...) join the next word (whisper's ``merge_punctuations``)."""
    for index, char in enumerate(gap):
        if char.isspace():
            return gap[:index], gap[index:]
    index = len(gap)
    while index > 0 and gap[index - 1] in PREPEND_PUNCTUATIONS and gap[index - 1] not in APPEND_PUNCTUATIONS:
        index -= 1
    return gap[:index], gap[index:]


def words_from_units(text: str, units: Sequence[AlignedUnit], *, offset: float = 0.0,
                     duration: float | None = None) -> list[Word]:
    """The aligner's units -> :class:`~funasr_nano.results.Word` records, as faster-whisper's words.

    Each word is its unit's stretch of ``text`` (letters kept with what the unit dropped inside them)
    with the text around it: punctuation right after it (a closing mark), and before it its leading
    whitespace and opening marks; text before the first unit joins the first word, text after the last
    the last word. The words' texts therefore join back to ``text`` exactly.

    Args:
        text: the aligned transcript.
        units: :meth:`ForcedAligner.align_units` of ``text``.
        offset: seconds added to every time.
        duration: seconds of the clip: times are capped there (the classifier's bins reach 400 s).

    Raises:
        AlignmentError: a unit not found in ``text``.
    """
    if not units:
        return []
    spans = _locate(text, units)
    texts = [text[first:end] for first, end in spans]
    texts[0] = text[:spans[0][0]] + texts[0]
    for index in range(1, len(spans)):
        previous, following = _split_gap(text[spans[index - 1][1]:spans[index][0]])
        texts[index - 1] += previous
        texts[index] = following + texts[index]
    texts[-1] += text[spans[-1][1]:]
    limit = np.inf if duration is None else float(duration)

    def seconds(value: float) -> float:
        return round(offset + min(max(value, 0.0), limit), 3)

    return [Word(start=seconds(unit.start), end=seconds(unit.end), word=word, probability=unit.probability)
            for word, unit in zip(texts, units)]
