"""What a speech-LLM family provides to the pipeline: features -> audio embeddings -> a prompt with an
audio slot, and the text conventions of its outputs.

A family (one folder under :mod:`funasr_nano.models`) implements :class:`FamilyModel`; the pipeline
(:mod:`funasr_nano.pipeline`) turns its :class:`~funasr_nano.models.llm_input.LLMInput` rows into tokens
with an engine (:mod:`funasr_nano.engines`) and never looks inside the family.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .llm_input import LLMInput
from ..errors import CheckpointError
from .chat import ChatFormat

if TYPE_CHECKING:
    import torch

    from ..results import Word
    from .alignment import CtcAnalysis


class FamilyModel(abc.ABC):
    """A family model: the loaded network of one family (its :class:`~funasr_nano.models.family.Family` in
    the registry says how it is recognised and loaded). A :class:`funasr_nano.SpeechModel` holds one as
    ``model.family``, beside the engine that decodes its LLM inputs.

    Attributes:
        tokenizer: the LLM's tokenizer (transformers fast tokenizer).
        chat: the chat format of the LLM (from its tokenizer's template).
        tasks: the tasks the checkpoint was trained for (see the family's task table).
        path: the folder it was loaded from.
    """

    tokenizer: Any
    chat: ChatFormat
    tasks: tuple[str, ...]
    path: str

    # -- audio ----------------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def max_audio_seconds(self) -> float:
        """The longest audio the encoder takes in one piece (its positional table), seconds."""

    @abc.abstractmethod
    def audio_positions(self, samples: int) -> int:
        """How many prompt positions ``samples`` of 16 kHz audio take."""

    @abc.abstractmethod
    def audio_embeddings(self, waveform: np.ndarray) -> "torch.Tensor | np.ndarray":
        """``(samples,)`` float32 16 kHz audio -> ``(num_audio, llm_hidden)`` float32 embeddings that fill
        the prompt's audio slot (a torch tensor on the torch path, a numpy array on the light runtime)."""

    # -- prompts --------------------------------------------------------------------------------------
    # A *prompt text* is the family's own description of one request, opaque to the pipeline: it is made by
    # transcription_prompt / task_prompt and handed back, as it is, to llm_input, which renders the chat and
    # the audio slot. Fun-ASR-Nano's is the user instruction (its chat template wraps it, as FunASR's
    # get_prompt); Qwen3-ASR's is the whole templated prompt (system context, user audio, forced language).

    @abc.abstractmethod
    def transcription_prompt(self, language: str | None, hotwords: Sequence[str], itn: bool) -> str:
        """The prompt text of a transcription (see the note above): ``language`` forced or ``None``,
        ``hotwords`` as the family puts them in its prompt, ``itn`` on or off."""

    @abc.abstractmethod
    def task_prompt(self, task: str, text: str | None = None) -> str:
        """The prompt text of ``task`` (a name of the family's task table); ``text`` for text-only tasks.

        Raises:
            ValueError: an unknown task, or a text-only task without text.
        """

    @abc.abstractmethod
    def task_uses_audio(self, task: str) -> bool:
        """Whether ``task``'s prompt has an audio slot."""

    @abc.abstractmethod
    def llm_input(self, prompt: str, audio: "torch.Tensor | np.ndarray | None", *, answer_prefix: str = "",
                  adapter: str | None = None) -> LLMInput:
        """The LLM input for one prompt text (:meth:`transcription_prompt`, :meth:`task_prompt`) with ``audio``
        (``(num_audio, llm_hidden)``, or ``None`` for a text-only prompt) in its slot."""

    # -- outputs --------------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def stop_token_ids(self) -> list[int]:
        """Tokens that end the answer."""

    @abc.abstractmethod
    def decode_text(self, tokens: Sequence[int]) -> str:
        """Generated token ids -> text, post-processed as the family's reference implementation does."""

    def parse_transcription(self, tokens: Sequence[int], language: str | None) -> tuple[str | None, str]:
        """``(language, text)`` of a transcription's generated tokens, given the caller's language hint.

        Default: the hint and :meth:`decode_text` (Fun-ASR-Nano does not name the language it heard). A
        family whose model writes the language (Qwen3-ASR: ``language Chinese<asr_text>...``) returns the
        one written, or the forced one.
        """
        return language, self.decode_text(tokens)

    # -- timestamps and silence (families with a CTC head or an aligner) -------------------------------

    @property
    def has_ctc(self) -> bool:
        """Whether the loaded checkpoint has a CTC head (word timestamps, no-speech probability, hotword
        narrowing)."""
        return False

    def check_word_timestamps(self) -> None:
        """Return if :meth:`align_words` can work on this checkpoint.

        Raises:
            CheckpointError: naming what the checkpoint lacks.
        """
        raise CheckpointError(f"{self.path}: word timestamps are not available for this model family")

    def ctc_analysis(self, waveform: np.ndarray) -> "CtcAnalysis":
        """The CTC head's view of one utterance (see :class:`funasr_nano.models.alignment.CtcAnalysis`).

        Raises:
            CheckpointError: the checkpoint has no CTC head.
        """
        raise CheckpointError(f"{self.path}: this model family has no CTC head (word timestamps, CTC no-speech "
                              "probability and hotword narrowing need one)")

    def align_words(self, analysis: "CtcAnalysis", text: str, offset: float = 0.0) -> tuple["Word", ...]:
        """Words of ``text`` (the LLM's transcript of the utterance) with times from ``analysis``,
        ``offset`` seconds added.

        Raises:
            CheckpointError: the checkpoint has no CTC head. AlignmentError: more tokens than frames.
        """
        raise CheckpointError(f"{self.path}: this model family cannot align words")

    @property
    def max_align_seconds(self) -> float | None:
        """The longest segment :meth:`align_waveform` aligns; ``None`` for no limit of its own."""
        return None

    def align_waveform(self, waveform: np.ndarray, text: str, language: str | None,
                       offset: float = 0.0) -> tuple["Word", ...]:
        """Words of ``text`` with times from a separate aligner model that reads the audio again
        (``waveform``: ``(samples,)`` 16 kHz float32; Qwen3-ASR's Qwen3-ForcedAligner), ``offset`` seconds
        added; for families without a CTC head.

        Raises:
            CheckpointError: the family has no aligner.
        """
        raise CheckpointError(f"{self.path}: this model family cannot align words")

    # -- the LLM, for engines ---------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def llm(self) -> "torch.nn.Module":
        """The causal LLM (a transformers ``PreTrainedModel`` whose ``generate`` takes
        ``inputs_embeds``), for the transformers engine and for export."""
