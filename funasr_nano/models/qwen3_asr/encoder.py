"""Qwen3-ASR's audio path in torch: transformers' audio tower and projector on one clip, shared by the speech
model (:class:`.model.Qwen3AsrModel`) and Qwen3-ForcedAligner (:class:`.aligner.ForcedAligner`), whose
networks hold the same tower."""

from __future__ import annotations

import torch

from .prompt import num_audio_tokens

ENCODER_ATTENTIONS = ("windowed", "full")


@torch.inference_mode()
def encode_audio(inner, features: torch.Tensor, mask: torch.Tensor, n_window: int,
                 encoder_attention: str = "windowed") -> torch.Tensor:
    """The audio encoder and projector of a transformers ``Qwen3ASRModel`` (``inner``: Qwen3-ASR's, or
    Qwen3-ForcedAligner's) on one clip; ``encoder_attention`` as :class:`.model.Qwen3AsrModel`.

    Args:
        features: ``(1, mel_bins, padded_frames)`` float32, padded to a multiple of ``2 * n_window``.
        mask: ``(1, padded_frames)``, 1 on real frames.

    Returns:
        ``(num_audio, llm_hidden)`` float32, ``num_audio`` = :func:`num_audio_tokens` of the real frames.
    """
    device = next(inner.audio_tower.parameters()).device
    extra = {}
    if encoder_attention == "full":  # one window spanning the clip
        total = num_audio_tokens(int(mask.sum()), n_window)
        extra["cu_seqlens"] = torch.tensor([0, total], dtype=torch.int32, device=device)
    hidden = inner.audio_tower(input_features=features.to(device, torch.float32),
                               input_features_mask=mask.to(device), **extra).last_hidden_state
    return inner.multi_modal_projector(hidden).float()
