"""Fun-ASR-Nano as a :class:`~funasr_nano.models.base.FamilyModel`: fbank/LFR -> SAN-M encoder -> adaptor ->
audio positions of the official prompt.

Reproduces ``FunASRNano.inference_prepare`` (funasr 1.4.16, ``funasr/models/fun_asr_nano/model.py``):
the prompt of :mod:`.prompt`, the first :func:`.prompt.num_audio_tokens` adaptor frames spliced into its
audio slot. The model definition is transformers' ``FunAsrNanoForConditionalGeneration`` (see
:mod:`.checkpoint`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ...errors import CheckpointError, InvalidOptionError
from ...results import Word
from ..alignment import CtcAnalysis, TokenSpan, analyse, forced_align, words_from_spans
from ..base import FamilyModel
from .checkpoint import LoadedCheckpoint
from .ctc_tokenizer import no_ctc_error
from .frontend import Frontend
from .prompt import FunAsrNanoPrompts, chat_format_for, num_audio_tokens

logger = logging.getLogger(__name__)


ENCODER_PRECISIONS = ("fp32", "bf16", "int8")


class FunAsrNanoModel(FunAsrNanoPrompts, FamilyModel):
    """A loaded Fun-ASR-Nano checkpoint (official, transformers or GGUF layout).

    Args:
        checkpoint: from :func:`.checkpoint.load_checkpoint`.
        encoder_precision: how the encoder and adaptor compute: ``"fp32"`` (as FunASR, the default),
            ``"bf16"`` (autocast) or ``"int8"`` (torch's dynamic int8 quantization of their linear
            layers; replaces them in ``checkpoint.model``). Faster on CPUs, with an embedding error
            measured by ``benchmarks/bench_encoder.py`` (README, *The llama.cpp engine*).
    """

    def __init__(self, checkpoint: LoadedCheckpoint, encoder_precision: str = "fp32"):
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.tasks = checkpoint.tasks
        self.path = checkpoint.path
        self.frontend = Frontend(checkpoint.frontend)
        self.use_low_frame_rate = checkpoint.use_low_frame_rate
        if encoder_precision not in ENCODER_PRECISIONS:
            raise InvalidOptionError(f"encoder_precision must be one of {ENCODER_PRECISIONS}, not {encoder_precision!r}")
        self.encoder_precision = encoder_precision
        if encoder_precision == "int8":
            import warnings

            from torch.ao.quantization import quantize_dynamic

            inner = self.model.model
            # torch.ao's eager dynamic quantization is deprecated for torchao (pytorch/ao#2259), but torchao
            # 0.18's int8 path on CPU is no replacement here: its Int8DynamicActivationInt8WeightConfig ran
            # an encoder-sized Linear stack in 5.8 s against 0.12 s (torch.ao) and 0.21 s (fp32) on our
            # 2-core AVX2 machine, and once installed transformers imports it (+6 s) on every model load.
            # So the deprecation and the quantized-tensor notice are silenced for these calls only.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
                warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated",
                                        category=DeprecationWarning)
                for name in ("audio_tower", "multi_modal_projector"):
                    setattr(inner, name, quantize_dynamic(getattr(inner, name), {torch.nn.Linear}, dtype=torch.qint8))
        try:
            self.chat = chat_format_for(self.tokenizer, self.model.config)
            config_eos = self.model.config.text_config.eos_token_id
            config_eos = [] if config_eos is None else [config_eos] if isinstance(config_eos, int) else list(config_eos)
            # FunASR stops at the LLM config's eos_token_id (<|im_end|> for Qwen3-0.6B).
            self._stop_token_ids = self.chat.stop_token_ids(self.tokenizer, config_eos)
        except ValueError as error:
            raise CheckpointError(f"{checkpoint.path}: {error}") from error

    @property
    def llm(self) -> torch.nn.Module:
        if self.checkpoint.llm_gguf is not None:
            raise CheckpointError(f"{self.path}: the LLM is the GGUF file {self.checkpoint.llm_gguf}; "
                                  "decode it with the llama.cpp engine")
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.model.audio_tower.parameters()).device

    @property
    def stop_token_ids(self) -> list[int]:
        return list(self._stop_token_ids)

    @property
    def max_audio_seconds(self) -> float:
        # the encoder's sinusoidal positional table (transformers: max_position_embeddings of the audio
        # config, 2048 LFR frames of 60 ms); longer input fails inside the encoder
        frames = getattr(self.model.config.audio_config, "max_position_embeddings", None) or 2048
        return frames * self.frontend.config.lfr_n * self.frontend.config.frame_shift_ms / 1000.0

    # -- audio -> embeddings --------------------------------------------------------------------------

    def features(self, waveform: np.ndarray) -> torch.Tensor:
        """``(samples,)`` 16 kHz float32 -> ``(frames, 560)`` LFR fbank, 60 ms per frame."""
        return self.frontend(waveform)

    @torch.inference_mode()
    def encode(self, features: torch.Tensor, lengths: torch.Tensor | None = None, *,
               with_encoder_out: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run the audio encoder and adaptor.

        Args:
            features: ``(batch, frames, 560)`` float32 LFR features (right-padded).
            lengths: ``(batch,)`` valid frames per row (default: all frames).
            with_encoder_out: also return the SAN-M encoder output the adaptor ran on (what the CTC head
                takes), from the same pass.

        Returns:
            ``(batch, frames, llm_hidden)`` float32 adaptor output (padded positions hold garbage); with
            ``with_encoder_out``, ``(adaptor output, (batch, frames, encoder_dim) float32 encoder output)``.
        """
        batch, frames, _ = features.shape
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long)
        mask = (torch.arange(frames)[None, :] < lengths[:, None]).to(self.device)
        inner = self.model.model
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.encoder_precision == "bf16")
        with autocast:
            encoder_out = inner.audio_tower(
                input_features=features.to(self.device, torch.float32), input_features_mask=mask
            ).last_hidden_state
            adaptor_out = inner.multi_modal_projector(encoder_out, mask).float()
        return (adaptor_out, encoder_out.float()) if with_encoder_out else adaptor_out

    @torch.inference_mode()
    def encoder_output(self, waveform: np.ndarray) -> torch.Tensor:
        """``(samples,)`` 16 kHz float32 -> ``(frames, encoder_dim)`` float32 SAN-M encoder output (after
        the timestamp-prediction blocks and ``tp_norm``, what FunASR's ``encode`` returns), 60 ms per frame."""
        features = self.features(waveform)[None]
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.encoder_precision == "bf16")
        with autocast:
            out = self.model.model.audio_tower(input_features=features.to(self.device, torch.float32),
                                               input_features_mask=mask).last_hidden_state
        return out[0].float()

    def audio_positions(self, samples: int) -> int:
        return num_audio_tokens(self.frontend.num_frames(samples), self.use_low_frame_rate)

    def audio_embeddings(self, waveform: np.ndarray) -> torch.Tensor:
        """The audio positions spliced into the prompt: ``(num_audio, llm_hidden)`` float32.

        ``num_audio`` follows :func:`.prompt.num_audio_tokens` (the first adaptor frames when the
        checkpoint uses ``use_low_frame_rate``).
        """
        features = self.features(waveform)
        adaptor_out = self.encode(features[None])[0]
        return adaptor_out[: num_audio_tokens(features.shape[0], self.use_low_frame_rate)]

    # -- CTC branch: timestamps, no-speech probability ----------------------------------------------

    @property
    def has_ctc(self) -> bool:
        return self.checkpoint.ctc is not None

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder frame (LFR ``lfr_n`` x frame shift: 0.06)."""
        return self.frontend.config.lfr_n * self.frontend.config.frame_shift_ms / 1000.0

    def _ctc(self, what: str):
        if self.checkpoint.ctc is None:
            raise no_ctc_error(self.path, what)
        return self.checkpoint.ctc

    def check_word_timestamps(self) -> None:
        self._ctc("word timestamps")

    def ctc_analysis(self, waveform: np.ndarray) -> CtcAnalysis:
        """Encoder, adaptor and CTC head on one utterance, the encoder run once for both (FunASR's
        ``inference_llm``: ``ctc_decoder`` on the encoder output, log-softmax of ``ctc_lo``); see
        :class:`~funasr_nano.models.alignment.CtcAnalysis`. Its ``audio_embeddings`` are what
        :meth:`audio_embeddings` returns, so the pipeline decodes from them without a second pass.

        Raises:
            CheckpointError: the checkpoint has no CTC branch (transformers/GGUF layouts, or an official
                folder without it).
        """
        ctc = self._ctc("the CTC head's outputs")
        features = self.features(waveform)
        adaptor_out, encoder_out = self.encode(features[None], with_encoder_out=True)
        embeddings = adaptor_out[0][: num_audio_tokens(features.shape[0], self.use_low_frame_rate)]
        log_probs = ctc.log_probs(encoder_out[0]).cpu().numpy()
        return analyse(log_probs, ctc.blank_id, ctc.tokenizer.decode, encoder_out=encoder_out[0],
                       frame_seconds=self.frame_seconds, duration=waveform.size / self.frontend.config.sample_rate,
                       audio_embeddings=embeddings)

    def align_tokens(self, analysis: CtcAnalysis, text: str) -> list[TokenSpan]:
        """FunASR's ``timestamps`` of ``text``: re-tokenized with the CTC tokenizer and force-aligned to
        the CTC posteriors (frames of 60 ms).

        Raises:
            CheckpointError: no CTC branch. AlignmentError: more tokens than frames.
        """
        ctc = self._ctc("timestamps")
        log_probs = ctc.log_probs(analysis.encoder_out).cpu().numpy()
        return forced_align(log_probs, ctc.tokenizer.encode(text), ctc.blank_id)

    def align_words(self, analysis: CtcAnalysis, text: str, offset: float = 0.0) -> tuple[Word, ...]:
        ctc = self._ctc("word timestamps")
        spans = self.align_tokens(analysis, text)
        return tuple(words_from_spans(spans, ctc.tokenizer.token_bytes, frame_seconds=self.frame_seconds,
                                      offset=offset, duration=analysis.duration))
