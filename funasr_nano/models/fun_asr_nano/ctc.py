"""Fun-ASR-Nano's CTC branch: the head over the encoder output and its tokenizer.

The official checkpoint (ModelScope ``FunAudioLLM/Fun-ASR-Nano-2512``) carries, besides the encoder,
adaptor and LLM, a CTC branch that FunASR uses for character timestamps (funasr 1.4.16,
``funasr/models/fun_asr_nano/model.py``, ``FunASRNano.__init__`` and ``inference_llm``):

* ``ctc_decoder`` (``config.yaml: ctc_decoder: Transformer``, ``ctc_decoder_conf``): the adaptor
  architecture (``funasr/models/llm_asr/adaptor.py: Transformer``: linear -> ReLU -> linear, then
  ``n_layer`` transformer blocks, LayerNorm eps 1e-12) on the SAN-M encoder output; 84 tensors for the
  released model (5 blocks of 512);
* ``ctc.ctc_lo``: a linear layer to ``ctc_vocab_size`` (60515) logits; the blank is the last id
  (``ctc_conf.blank_id`` overrides it);
* the CTC tokenizer (``dataset_conf.ctc_tokenizer: SenseVoiceTokenizer``): a tiktoken BPE whose ranks
  are ``multilingual.tiktoken`` in the checkpoint folder (base64 token, rank per line; 58836 ranks in
  the released model, then 1679 special tokens up to the blank); :mod:`.ctc_tokenizer` reads it
  (without torch, for the light runtime too).

The transformers-layout copy (Hugging Face ``FunAudioLLM/Fun-ASR-Nano-2512-hf``) has no CTC branch.

:class:`CtcHead` is a separate torch module with ``forward(encoder_out) -> logits`` so that it can be
exported on its own (ONNX, :mod:`funasr_nano.export.onnx_ctc`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
from typing import Any, Mapping

import torch

from ...errors import CheckpointError
from ..weights import KeyMapCheck
from .ctc_tokenizer import CTC_VOCAB_FILE, CtcTokenizer  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

CTC_PREFIXES = ("ctc_decoder.", "ctc.")
# funasr 1.4.16 FunASRNano: kwargs.get("ctc_vocab_size", 60515)
DEFAULT_CTC_VOCAB_SIZE = 60515
# The official adaptor blocks (funasr transformer LayerNorm) use eps 1e-12.
CTC_DECODER_LAYER_NORM_EPS = 1e-12


class CtcHead(torch.nn.Module):
    """``ctc_decoder`` + ``ctc.ctc_lo``: encoder output -> CTC logits.

    Args:
        decoder: the adaptor-architecture decoder (transformers ``FunAsrNanoMultiModalProjector``).
        vocab_size: CTC vocabulary size (logits), blank included.
        encoder_dim: the width of the decoder's output (``ctc_lo`` input).
    """

    def __init__(self, decoder: torch.nn.Module, vocab_size: int, encoder_dim: int):
        super().__init__()
        self.decoder = decoder
        self.ctc_lo = torch.nn.Linear(encoder_dim, vocab_size)

    def forward(self, encoder_out: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, frames, encoder_dim)`` SAN-M encoder output -> ``(batch, frames, vocab)`` logits
        (60 ms per frame); ``mask`` ``(batch, frames)``, 1 for valid frames (default: all)."""
        if mask is None:
            mask = torch.ones(encoder_out.shape[:2], dtype=torch.bool, device=encoder_out.device)
        return self.ctc_lo(self.decoder(encoder_out, mask))


@dataclasses.dataclass(frozen=True)
class CtcBranch:
    """The loaded CTC branch.

    Attributes:
        head: :class:`CtcHead` in eval mode, float32.
        tokenizer: :class:`CtcTokenizer`.
        blank_id: the blank (last id unless ``ctc_conf.blank_id`` says otherwise).
    """

    head: CtcHead
    tokenizer: CtcTokenizer
    blank_id: int

    @torch.inference_mode()
    def log_probs(self, encoder_out: torch.Tensor) -> torch.Tensor:
        """``(frames, encoder_dim)`` encoder output of one utterance -> ``(frames, vocab)`` float32
        log-softmax (``CTC.log_softmax`` of funasr)."""
        logits = self.head(encoder_out[None].float())[0]
        return torch.log_softmax(logits, dim=-1)


def has_ctc_config(cfg: Mapping[str, Any]) -> bool:
    """Whether an official ``config.yaml`` declares a CTC branch (``ctc_decoder``)."""
    return bool(cfg.get("ctc_decoder"))


def _vocab_path(path: str, cfg: Mapping[str, Any], file_path_metas: Mapping[str, Any]) -> str:
    conf = ((cfg.get("dataset_conf") or {}).get("ctc_tokenizer_conf") or {})
    metas = ((file_path_metas.get("dataset_conf") or {}).get("ctc_tokenizer_conf") or {})
    name = conf.get("vocab_path") or metas.get("vocab_path") or CTC_VOCAB_FILE
    return name if os.path.isabs(name) else os.path.join(path, name)


def build_ctc_head(cfg: Mapping[str, Any], encoder_dim: int) -> tuple[CtcHead, int]:
    """An uninitialised :class:`CtcHead` for an official ``config.yaml``; returns ``(head, blank_id)``.

    Raises:
        CheckpointError: a CTC decoder other than ``Transformer``, or a downsampling one.
    """
    from transformers.models.fun_asr_nano.configuration_fun_asr_nano import FunAsrNanoAdaptorConfig
    from transformers.models.fun_asr_nano.modeling_fun_asr_nano import FunAsrNanoMultiModalProjector

    if cfg.get("ctc_decoder") != "Transformer":
        raise CheckpointError(f"unsupported ctc_decoder {cfg.get('ctc_decoder')!r}; expected Transformer")
    conf = dict(cfg.get("ctc_decoder_conf") or {})
    if int(conf.get("downsample_rate", 2)) != 1:
        raise CheckpointError(f"ctc_decoder_conf.downsample_rate={conf.get('downsample_rate', 2)} is not supported "
                              "(expected 1)")
    width = int(conf.get("llm_dim", 4096))
    if width != encoder_dim:
        raise CheckpointError(f"ctc_decoder_conf.llm_dim={width} differs from the encoder output size {encoder_dim} "
                              "that ctc.ctc_lo takes")
    vocab_size = int(cfg.get("ctc_vocab_size", DEFAULT_CTC_VOCAB_SIZE))
    blank_id = int((cfg.get("ctc_conf") or {}).get("blank_id", vocab_size - 1))
    adaptor = FunAsrNanoAdaptorConfig(
        hidden_size=width,
        num_attention_heads=int(conf.get("attention_heads", 8)),
        intermediate_size=width // 4,
        num_hidden_layers=int(conf.get("n_layer", 2)),
        projector_hidden_size=int(conf.get("ffn_dim", 2048)),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        layer_norm_eps=CTC_DECODER_LAYER_NORM_EPS,
    )
    adaptor._attn_implementation = "eager"  # the official arithmetic (see checkpoint.py)
    # the projector reads only the encoder width and its adaptor config
    config = types.SimpleNamespace(audio_config=types.SimpleNamespace(hidden_size=encoder_dim), adaptor_config=adaptor)
    return CtcHead(FunAsrNanoMultiModalProjector(config), vocab_size, encoder_dim), blank_id


def official_ctc_key(key: str, rename_layer_tail) -> str:
    """Official CTC tensor name -> :class:`CtcHead` name (``ctc_decoder.blocks.0.self_attn.linear_q.weight``
    -> ``decoder.layers.0.self_attn.q_proj.weight``, ``ctc.ctc_lo.weight`` -> ``ctc_lo.weight``).

    Raises:
        CheckpointError: a name outside the CTC branch's layout.
    """
    if key.startswith("ctc.ctc_lo."):
        return "ctc_lo." + key[len("ctc.ctc_lo."):]
    if key.startswith("ctc_decoder."):
        tail = key[len("ctc_decoder."):]
        if match := re.fullmatch(r"linear([12])\.(weight|bias)", tail):
            return f"decoder.linear_{match[1]}.{match[2]}"
        if match := re.fullmatch(r"blocks\.(\d+)\.(.+)", tail):
            return f"decoder.layers.{match[1]}." + rename_layer_tail(match[2], key)
    raise CheckpointError(f"unexpected tensor {key!r} in model.pt")


def hf_to_official_ctc_key(name: str, inverse_tail) -> str:
    """Inverse of :func:`official_ctc_key` (for writing official-layout checkpoints)."""
    if name.startswith("ctc_lo."):
        return "ctc.ctc_lo." + name[len("ctc_lo."):]
    if match := re.fullmatch(r"decoder\.linear_([12])\.(.+)", name):
        return f"ctc_decoder.linear{match[1]}.{match[2]}"
    if match := re.fullmatch(r"decoder\.layers\.(\d+)\.(.+)", name):
        return f"ctc_decoder.blocks.{match[1]}." + inverse_tail(match[2])
    raise KeyError(f"no official name for {name!r}")


def load_ctc_branch(path: str, cfg: Mapping[str, Any], file_path_metas: Mapping[str, Any],
                    state_dict: Mapping[str, torch.Tensor], encoder_dim: int,
                    rename_layer_tail) -> CtcBranch | None:
    """The CTC branch of an official checkpoint, or ``None`` when it has none.

    A ``config.yaml`` without ``ctc_decoder`` gives ``None`` (CTC tensors, if any, stay unused, as in
    FunASR). A config with it but no CTC tensors in ``model.pt`` gives ``None`` with a warning (FunASR
    disables its timestamps then, ``disable_incomplete_ctc``). Some CTC tensors missing or mis-shaped
    raise; so does a missing or unreadable ``multilingual.tiktoken``.

    Raises:
        CheckpointError: naming the problem tensors or file.
    """
    if not has_ctc_config(cfg):
        return None
    ctc_state = {k: v for k, v in state_dict.items() if k.startswith(CTC_PREFIXES)}
    if not ctc_state:
        logger.warning("%s: config.yaml declares a CTC branch but model.pt has no ctc_decoder.*/ctc.* tensors; "
                       "timestamps are unavailable", path)
        return None
    head, blank_id = build_ctc_head(cfg, encoder_dim)
    expected = {k: v.shape for k, v in head.state_dict().items()}
    check = KeyMapCheck(expected)
    for key, tensor in ctc_state.items():
        try:
            name = official_ctc_key(key, rename_layer_tail)
        except CheckpointError:
            name = None
        check.add(key, name, tensor)
    converted = check.result(f"{path}/model.pt (CTC branch)")
    head.load_state_dict(converted, strict=True, assign=True)
    head.eval().requires_grad_(False).float()
    vocab_path = _vocab_path(path, cfg, file_path_metas)
    if not os.path.isfile(vocab_path):
        raise CheckpointError(f"{path}: the CTC branch needs its tokenizer {vocab_path} (dataset_conf.ctc_tokenizer_conf."
                              f"vocab_path, default {CTC_VOCAB_FILE} in the checkpoint folder)")
    tokenizer = CtcTokenizer(vocab_path)
    if tokenizer.num_ordinary > head.ctc_lo.out_features or not 0 <= blank_id < head.ctc_lo.out_features:
        raise CheckpointError(f"{vocab_path}: {tokenizer.num_ordinary} tokens and blank {blank_id} do not fit the "
                              f"CTC head's {head.ctc_lo.out_features} outputs")
    logger.info("loaded the CTC branch (%d tensors, %d outputs, blank %d)", len(converted),
                head.ctc_lo.out_features, blank_id)
    return CtcBranch(head=head, tokenizer=tokenizer, blank_id=blank_id)
