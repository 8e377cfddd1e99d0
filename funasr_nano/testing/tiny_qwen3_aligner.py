"""Tiny random Qwen3-ForcedAligner checkpoints, written in the real folder layouts.

Qwen3-ForcedAligner-0.6B is Qwen3-ASR's network with its output layer replaced by a classifier over
time bins (:mod:`funasr_nano.models.qwen3_asr.aligner`). This module writes random checkpoints of that
architecture at any size, in the two layouts :mod:`funasr_nano.models.qwen3_asr.aligner_checkpoint` reads:

* ``"official"``, as ``Qwen/Qwen3-ForcedAligner-0.6B`` ships (what ``qwen-asr``'s ``Qwen3ForcedAligner``
  loads): ``config.json`` with ``model_type: qwen3_asr``, the top-level ``timestamp_token_id`` (151705,
  ``<timestamp>``) and ``timestamp_segment_time`` (80 ms), a ``thinker_config`` whose ``model_type`` is
  ``qwen3_forced_aligner`` with ``classify_num`` (5000 time bins) and an untied text config
  (``vocab_size`` 152064); ``model.safetensors`` with ``thinker.audio_tower.*``, ``thinker.model.*`` and
  ``thinker.lm_head.weight`` of shape ``(classify_num, hidden)``; the Qwen2 tokenizer files,
  ``preprocessor_config.json``, ``chat_template.json`` and ``generation_config.json`` of the Qwen3-ASR
  writer (:mod:`.tiny_qwen3_asr`), whose tokenizer has ``<timestamp>`` at 151705;
* ``"hf"``: what transformers' ``Qwen3ASRForTokenClassification.save_pretrained`` and
  ``Qwen3ASRProcessor.save_pretrained`` write (``model.*`` and ``score.weight``).

The released sizes are in :meth:`TinyAlignerConfig.full_size`. A tiny checkpoint keeps ``classify_num``
small by default (60 bins: 4.8 s) so that a random model's times fall inside the test recordings.
"""

from __future__ import annotations

import dataclasses
import os

from . import tiny_qwen3_asr as asr

# The languages Qwen3-ForcedAligner was trained for (its model card; transformers' FORCED_ALIGNER_LANGUAGES).
ALIGNER_LANGUAGES = ("Chinese", "English", "Cantonese", "French", "German", "Italian", "Japanese", "Korean",
                     "Portuguese", "Russian", "Spanish")
TIMESTAMP_TOKEN = "<timestamp>"


@dataclasses.dataclass(frozen=True)
class TinyAlignerConfig:
    """Sizes of a random forced aligner: the Qwen3-ASR network sizes (:class:`.tiny_qwen3_asr.TinyQwen3AsrConfig`)
    plus the classifier. ``classify_num`` time bins of ``timestamp_segment_time`` ms each."""

    # init_std 0.5: a random network whose bins differ from slot to slot (0.2 gives one bin everywhere)
    network: asr.TinyQwen3AsrConfig = asr.TinyQwen3AsrConfig(vocab_size=152064, tie_word_embeddings=False,
                                                             init_std=0.5)
    classify_num: int = 60
    timestamp_segment_time: float = 80.0

    @classmethod
    def full_size(cls) -> "TinyAlignerConfig":
        """Qwen3-ForcedAligner-0.6B: 24-layer 1024-wide AuT encoder (16 heads, FFN 4096), 28-layer Qwen3
        (1024 wide, head_dim 128, 16/8 heads), 5000 bins of 80 ms."""
        network = dataclasses.replace(asr.TinyQwen3AsrConfig.full_size(), encoder_dim=1024, encoder_layers=24,
                                      encoder_heads=16, encoder_ffn=4096, vocab_size=152064,
                                      tie_word_embeddings=False, init_std=0.02)
        return cls(network=network, classify_num=5000)


def official_config(config: TinyAlignerConfig) -> dict:
    """The official ``config.json`` (the structure of Qwen3-ForcedAligner-0.6B's) for ``config``."""
    official = asr.official_config(config.network)
    ids = {token: i for i, token, _ in asr.added_tokens()}
    official["thinker_config"]["model_type"] = "qwen3_forced_aligner"
    official["thinker_config"]["classify_num"] = config.classify_num
    official["timestamp_token_id"] = ids[TIMESTAMP_TOKEN]
    official["timestamp_segment_time"] = config.timestamp_segment_time
    official["support_languages"] = list(ALIGNER_LANGUAGES)
    return official


def build_random_aligner(config: TinyAlignerConfig = TinyAlignerConfig(), seed: int = 0):
    """``(Qwen3ASRForTokenClassification, official config.json dict)`` with random weights drawn from
    ``seed`` (norm weights near 1, the rest normal with ``config.network.init_std``)."""
    from ..models.qwen3_asr.aligner_checkpoint import hf_config_from_official, new_model

    official = official_config(config)
    model = new_model(hf_config_from_official(official))
    asr.randomize(model, seed, config.network.init_std)
    return model.eval(), official


def write_official(path: str, model, official: dict) -> None:
    """Write ``model`` in the official layout (see the module docstring)."""
    from safetensors.torch import save_file

    from ..models.qwen3_asr.aligner_checkpoint import hf_to_official_state_dict

    os.makedirs(path, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in hf_to_official_state_dict(model.state_dict()).items()}
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    asr.write_official_files(path, official)


def write_tiny_aligner(path: str, layout: str = "official", config: TinyAlignerConfig = TinyAlignerConfig(),
                       seed: int = 0) -> str:
    """Write a random Qwen3-ForcedAligner checkpoint of ``config``'s size to ``path`` in ``layout``
    (``"official"`` or ``"hf"``: ``save_pretrained`` of the model and of a ``Qwen3ASRProcessor``, as
    :func:`.tiny_qwen3_asr.write_hf`); the same ``seed`` gives the same weights in both layouts. Returns ``path``."""
    asr.check_layout(layout)
    model, official = build_random_aligner(config, seed)
    return asr.write_in_layout(
        path, layout, lambda out: write_official(out, model, official),
        lambda out, tokenizer_dir: asr.write_hf(out, model, tokenizer_dir, generation=False,
                                                timestamp_segment_time=config.timestamp_segment_time))


def write_tiny(path: str, *, layout: str = "official", seed: int = 0, ctc: bool = False) -> str:
    """``funasr-nano tiny --family qwen3-forced-aligner`` (a ``tiny`` hook of Qwen3-ASR's family):
    :func:`write_tiny_aligner`.

    Raises:
        InvalidOptionError: ``ctc`` (the aligner has no CTC branch).
    """
    if ctc:
        from ..errors import InvalidOptionError

        raise InvalidOptionError("--ctc needs --family fun-asr-nano --layout official (the layout that carries "
                                 "the CTC branch)")
    return write_tiny_aligner(path, layout=layout, seed=seed)
