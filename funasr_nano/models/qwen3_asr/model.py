"""Qwen3-ASR as a :class:`~funasr_nano.models.base.FamilyModel`: log-mel -> AuT encoder (windowed attention
over 100-frame chunks) -> projector -> the audio positions of the reference prompt.

Reproduces the transformers backend of ``qwen-asr`` 0.0.6 (``Qwen3ASRModel._infer_asr_transformers``):
features of :mod:`.frontend`, one prompt position per encoder output frame
(:func:`num_audio_tokens`), the prompt of :mod:`.prompt`, greedy decoding until ``<|im_end|>`` or
``<|endoftext|>``, and the answer parsed into language and text. The model definition is transformers'
``Qwen3ASRForConditionalGeneration`` (see :mod:`.checkpoint`); its LLM decodes from embeddings with
position ids taken from the attention mask, identical on the three multimodal-RoPE axes, as the reference.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ...audio.io import SAMPLE_RATE
from ...errors import CheckpointError, InvalidOptionError
from ..base import FamilyModel
from .checkpoint import LoadedCheckpoint
from .frontend import Frontend, FrontendConfig
from .encoder import ENCODER_ATTENTIONS, encode_audio
from .prompt import STOP_TOKENS, SUPPORTED_LANGUAGES, TASKS, Qwen3AsrPrompts, num_audio_tokens

__all__ = ["Qwen3AsrModel", "num_audio_tokens", "MAX_AUDIO_SECONDS", "STOP_TOKENS", "TASKS"]

if TYPE_CHECKING:
    from ...results import Word
    from .aligner import ForcedAligner

logger = logging.getLogger(__name__)

# The reference decodes up to 1200 s in one piece (utils.MAX_ASR_INPUT_SECONDS) and cuts longer audio.
MAX_AUDIO_SECONDS = 1200.0


class Qwen3AsrModel(Qwen3AsrPrompts, FamilyModel):
    """A loaded Qwen3-ASR checkpoint (official or transformers layout).

    Args:
        checkpoint: from :func:`.checkpoint.load_checkpoint`.
        encoder_attention: ``"windowed"`` (default): the encoder attends within windows of
            ``n_window_infer`` mel frames (8 s), as the model is built (the reference with
            flash-attention, its vLLM backend, transformers' port). ``"full"``: across the whole clip, which
            is what the reference's transformers backend computes without flash-attention (it builds the
            windows but never passes them to sdpa/eager attention); the two differ on clips longer than
            one window.
        aligner: a loaded Qwen3-ForcedAligner (:class:`.aligner.ForcedAligner`), which gives the words of
            each transcript their times (``word_timestamps``); ``None``: word timestamps are refused.
    """

    def __init__(self, checkpoint: LoadedCheckpoint, encoder_attention: str = "windowed",
                 aligner: "ForcedAligner | None" = None):
        if encoder_attention not in ENCODER_ATTENTIONS:
            raise InvalidOptionError(f"encoder_attention must be one of {ENCODER_ATTENTIONS}, not {encoder_attention!r}")
        self.encoder_attention = encoder_attention
        self.checkpoint = checkpoint
        self.aligner = aligner
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.path = checkpoint.path
        audio = self.model.config.audio_config
        self.n_window = int(audio.n_window)
        self.frontend = Frontend(FrontendConfig.from_checkpoint(checkpoint.feature_config, self.n_window))
        self.languages = tuple(checkpoint.support_languages) or SUPPORTED_LANGUAGES
        self._setup_prompts(checkpoint.chat_template, int(self.model.config.audio_token_id))

    @property
    def llm(self) -> torch.nn.Module:
        return self.model

    @property
    def mrope_section(self) -> tuple[int, ...] | None:
        """The LLM's multimodal-RoPE sections as the checkpoint records them (``None``: not recorded)."""
        return self.checkpoint.mrope_section

    @property
    def device(self) -> torch.device:
        return next(self.model.model.audio_tower.parameters()).device

    @property
    def max_audio_seconds(self) -> float:
        return MAX_AUDIO_SECONDS

    # -- audio -> embeddings --------------------------------------------------------------------------

    def features(self, waveform: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(samples,)`` 16 kHz float32 -> ``(features (1, 128, padded_frames), mask (1, padded_frames))``,
        10 ms per frame (see :class:`.frontend.Frontend`)."""
        return self.frontend(waveform)

    @torch.inference_mode()
    def encode(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the audio encoder and projector on one clip.

        Args:
            features: ``(1, mel_bins, padded_frames)`` float32, padded to a multiple of ``2 * n_window``.
            mask: ``(1, padded_frames)``, 1 on real frames.

        Returns:
            ``(num_audio, llm_hidden)`` float32, ``num_audio`` = :func:`num_audio_tokens` of the real frames.
        """
        return encode_audio(self.model.model, features, mask, self.n_window, self.encoder_attention)

    def audio_positions(self, samples: int) -> int:
        return num_audio_tokens(self.frontend.num_frames(samples), self.n_window)

    def audio_embeddings(self, waveform: np.ndarray) -> torch.Tensor:
        features, mask = self.features(waveform)
        embeddings = self.encode(features, mask)
        expected = self.audio_positions(int(np.asarray(waveform).shape[0]))
        assert embeddings.shape[0] == expected, (embeddings.shape, expected)
        return embeddings

    # -- prompts and outputs: Qwen3AsrPrompts ---------------------------------------------------------

    # -- word timestamps (Qwen3-ForcedAligner) ---------------------------------------------------------

    def check_word_timestamps(self) -> None:
        """Raises CheckpointError when no aligner was loaded beside the model."""
        if self.aligner is None:
            raise CheckpointError(
                f"{self.path}: Qwen3-ASR has no timestamps of its own; its word timestamps come from "
                "Qwen3-ForcedAligner, a separate model: load it beside this one (load_model(..., aligner=DIR), "
                "--aligner DIR)")

    @property
    def max_align_seconds(self) -> float | None:
        from .aligner import MAX_ALIGN_SECONDS

        return MAX_ALIGN_SECONDS if self.aligner is not None else None

    def align_waveform(self, waveform: np.ndarray, text: str, language: str | None,
                       offset: float = 0.0) -> tuple["Word", ...]:
        """The words of ``text`` (this model's transcript of ``waveform``) timed by the aligner
        (:meth:`.aligner.ForcedAligner.align_units`, :func:`.aligner.words_from_units`); ``language`` as
        the model wrote it (only Japanese and Korean change how words are cut).

        Raises:
            CheckpointError: no aligner. AlignmentError: the aligner's units are not found in ``text``.
        """
        from .aligner import words_from_units

        self.check_word_timestamps()
        waveform = np.asarray(waveform, dtype=np.float32)
        if language not in self.languages:  # a name the model wrote but does not list: cut as spaced text
            language = None
        units = self.aligner.align_units(waveform, text, language)
        return tuple(words_from_units(text, units, offset=offset, duration=waveform.size / SAMPLE_RATE))


    def _raw_text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=False)
