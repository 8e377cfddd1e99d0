"""GGUF architectures: how one transformers LLM family becomes a llama.cpp architecture, one small class
each, as the model classes of llama.cpp's ``convert_hf_to_gguf.py`` (``Qwen3Model``, ``LlamaModel``,
...): which config values become which GGUF keys, and which transformers tensor becomes which
llama.cpp tensor, with its shape. Names come from the ``gguf`` package's constants (``gguf.Keys``,
``gguf.MODEL_ARCH``, ``gguf.MODEL_TENSOR``, ``gguf.TENSOR_NAMES``).

Used by :mod:`funasr_nano.export.gguf`; to support another LLM family (Llama, Gemma, ...), add a
subclass of :class:`GgufArchitecture` here and list it in :data:`ARCHITECTURES`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CheckpointError


def _import_gguf():
    from .gguf import import_gguf  # the ImportError there names the extra

    return import_gguf()


class GgufArchitecture:
    """How one transformers LLM family becomes a llama.cpp architecture.

    Subclasses set :attr:`model_type` (``text_config.model_type``) and :attr:`arch`, and implement
    :meth:`check_config`, :meth:`hyperparameters` and :meth:`tensor_map`. Register them in
    :data:`ARCHITECTURES` (one small class per architecture, as ``convert_hf_to_gguf.py``).
    """

    model_type: ClassVar[str]
    arch_name: ClassVar[str]  # attribute name of gguf.MODEL_ARCH

    def __init__(self, config):
        self.gguf = _import_gguf()
        self.config = config
        self.check_config()

    @property
    def arch(self):
        return getattr(self.gguf.MODEL_ARCH, self.arch_name)

    @property
    def arch_string(self) -> str:
        """The architecture as GGUF spells it (``general.architecture``, the key prefix)."""
        return self.gguf.MODEL_ARCH_NAMES[self.arch]

    def key(self, template: str) -> str:
        """A per-architecture GGUF key, e.g. ``gguf.Keys.LLM.BLOCK_COUNT`` -> ``qwen3.block_count``."""
        return template.format(arch=self.arch_string)

    def tensor_name(self, tensor, bid: int | None = None, suffix: str = ".weight") -> str:
        """llama.cpp's name of ``tensor`` (a ``gguf.MODEL_TENSOR``), checked against the architecture's
        tensor list; ``bid``: the block (layer) index of per-layer tensors."""
        if tensor not in self.gguf.MODEL_TENSORS[self.arch]:
            raise AssertionError(f"{tensor} is not a tensor of {self.arch_string}")
        template = self.gguf.TENSOR_NAMES[tensor]
        return (template.format(bid=bid) if bid is not None else template) + suffix

    def check_config(self) -> None:
        """Raise :class:`CheckpointError` for settings llama.cpp's architecture cannot express."""
        raise NotImplementedError

    def hyperparameters(self) -> list[tuple[str, Any, Any]]:
        """``(GGUF key, value, gguf.GGUFValueType)`` for every hyper-parameter."""
        raise NotImplementedError

    def tensor_map(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """transformers name (as in ``Qwen3ForCausalLM``'s state dict) -> (llama.cpp name, shape).
        Tensors that llama.cpp does not need (a tied ``lm_head.weight``) are absent."""
        raise NotImplementedError


class Qwen3Architecture(GgufArchitecture):
    """Qwen3 (``Qwen3ForCausalLM``) -> llama.cpp ``qwen3``.

    Hyper-parameters as ``convert_hf_to_gguf.py`` ``Qwen3Model`` writes them; the attention head size
    is written explicitly (``attention.key_length``/``value_length``) because Qwen3's ``head_dim``
    need not equal ``hidden_size / num_attention_heads`` (Qwen3-0.6B: 1024 / 16 = 64, head_dim 128).
    RoPE is NeoX-style in both, so q/k are written as they are (no permutation, unlike ``llama``).
    Tied embeddings (``tie_word_embeddings``) write no ``output.weight``: llama.cpp's qwen3 loader
    then uses ``token_embd.weight`` for the output projection.

    Tensors (``L`` layers, ``H`` hidden, ``F`` FFN, ``V`` vocabulary, ``n_q``/``n_kv`` heads of
    ``d`` dims), transformers -> llama.cpp, shape as (rows, cols) of the torch weight:

    ==========================================  ==========================  =============
    ``model.embed_tokens.weight``                ``token_embd.weight``        (V, H)
    ``model.layers.{i}.input_layernorm.weight``  ``blk.{i}.attn_norm.weight`` (H,)
    ``...self_attn.q_proj.weight``               ``blk.{i}.attn_q.weight``    (n_q*d, H)
    ``...self_attn.k_proj.weight``               ``blk.{i}.attn_k.weight``    (n_kv*d, H)
    ``...self_attn.v_proj.weight``               ``blk.{i}.attn_v.weight``    (n_kv*d, H)
    ``...self_attn.q_norm.weight``               ``blk.{i}.attn_q_norm.weight`` (d,)
    ``...self_attn.k_norm.weight``               ``blk.{i}.attn_k_norm.weight`` (d,)
    ``...self_attn.o_proj.weight``               ``blk.{i}.attn_output.weight`` (H, n_q*d)
    ``...post_attention_layernorm.weight``       ``blk.{i}.ffn_norm.weight``  (H,)
    ``...mlp.gate_proj.weight``                  ``blk.{i}.ffn_gate.weight``  (F, H)
    ``...mlp.up_proj.weight``                    ``blk.{i}.ffn_up.weight``    (F, H)
    ``...mlp.down_proj.weight``                  ``blk.{i}.ffn_down.weight``  (H, F)
    ``model.norm.weight``                        ``output_norm.weight``       (H,)
    ``lm_head.weight`` (untied only)             ``output.weight``            (V, H)
    ==========================================  ==========================  =============
    """

    model_type = "qwen3"
    arch_name = "QWEN3"

    def check_config(self) -> None:
        c = self.config
        problems = []
        if getattr(c, "hidden_act", "silu") != "silu":
            problems.append(f"hidden_act={c.hidden_act!r} (llama.cpp's qwen3 uses SiLU)")
        if getattr(c, "attention_bias", False):
            problems.append("attention_bias=True (llama.cpp's qwen3 has no attention biases)")
        if getattr(c, "use_sliding_window", False):
            problems.append("use_sliding_window=True (llama.cpp's qwen3 has no sliding window)")
        layer_types = getattr(c, "layer_types", None) or []
        if any(t != "full_attention" for t in layer_types):
            problems.append(f"layer_types {sorted(set(layer_types))} (only full_attention)")
        rope_type = self.rope_parameters().get("rope_type", "default")
        if rope_type not in ("default", None):
            problems.append(f"rope_type={rope_type!r} (only the default RoPE is exported)")
        if problems:
            raise CheckpointError("the LLM cannot be exported to GGUF: " + "; ".join(problems))

    def rope_parameters(self) -> dict:
        # transformers 5 keeps rope_theta in rope_parameters; earlier versions on the config itself
        params = dict(getattr(self.config, "rope_parameters", None) or {})
        if "rope_theta" not in params and getattr(self.config, "rope_theta", None) is not None:
            params["rope_theta"] = self.config.rope_theta
        if "rope_theta" not in params:
            raise CheckpointError("the LLM config has no rope_theta (rope_parameters)")
        return params

    @property
    def head_dim(self) -> int:
        c = self.config
        return int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)

    def hyperparameters(self) -> list[tuple[str, Any, Any]]:
        Keys, T = self.gguf.Keys, self.gguf.GGUFValueType
        c = self.config
        return [
            (self.key(Keys.LLM.CONTEXT_LENGTH), int(c.max_position_embeddings), T.UINT32),
            (self.key(Keys.LLM.EMBEDDING_LENGTH), int(c.hidden_size), T.UINT32),
            (self.key(Keys.LLM.BLOCK_COUNT), int(c.num_hidden_layers), T.UINT32),
            (self.key(Keys.LLM.FEED_FORWARD_LENGTH), int(c.intermediate_size), T.UINT32),
            (self.key(Keys.Attention.HEAD_COUNT), int(c.num_attention_heads), T.UINT32),
            (self.key(Keys.Attention.HEAD_COUNT_KV), int(c.num_key_value_heads), T.UINT32),
            (self.key(Keys.Attention.KEY_LENGTH), self.head_dim, T.UINT32),
            (self.key(Keys.Attention.VALUE_LENGTH), self.head_dim, T.UINT32),
            (self.key(Keys.Attention.LAYERNORM_RMS_EPS), float(c.rms_norm_eps), T.FLOAT32),
            (self.key(Keys.Rope.DIMENSION_COUNT), self.head_dim, T.UINT32),
            (self.key(Keys.Rope.FREQ_BASE), float(self.rope_parameters()["rope_theta"]), T.FLOAT32),
            (self.key(Keys.LLM.VOCAB_SIZE), int(c.vocab_size), T.UINT32),
        ]

    def tensor_map(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        MT = self.gguf.MODEL_TENSOR
        c = self.config
        hidden, ffn, vocab, d = int(c.hidden_size), int(c.intermediate_size), int(c.vocab_size), self.head_dim
        q_rows, kv_rows = int(c.num_attention_heads) * d, int(c.num_key_value_heads) * d
        mapping = {
            "model.embed_tokens.weight": (self.tensor_name(MT.TOKEN_EMBD), (vocab, hidden)),
            "model.norm.weight": (self.tensor_name(MT.OUTPUT_NORM), (hidden,)),
        }
        per_layer = (
            ("input_layernorm.weight", MT.ATTN_NORM, (hidden,)),
            ("self_attn.q_proj.weight", MT.ATTN_Q, (q_rows, hidden)),
            ("self_attn.k_proj.weight", MT.ATTN_K, (kv_rows, hidden)),
            ("self_attn.v_proj.weight", MT.ATTN_V, (kv_rows, hidden)),
            ("self_attn.q_norm.weight", MT.ATTN_Q_NORM, (d,)),
            ("self_attn.k_norm.weight", MT.ATTN_K_NORM, (d,)),
            ("self_attn.o_proj.weight", MT.ATTN_OUT, (hidden, q_rows)),
            ("post_attention_layernorm.weight", MT.FFN_NORM, (hidden,)),
            ("mlp.gate_proj.weight", MT.FFN_GATE, (ffn, hidden)),
            ("mlp.up_proj.weight", MT.FFN_UP, (ffn, hidden)),
            ("mlp.down_proj.weight", MT.FFN_DOWN, (hidden, ffn)),
        )
        for layer in range(int(c.num_hidden_layers)):
            for hf_tail, tensor, shape in per_layer:
                mapping[f"model.layers.{layer}.{hf_tail}"] = (self.tensor_name(tensor, layer), shape)
        if not getattr(c, "tie_word_embeddings", False):
            mapping["lm_head.weight"] = (self.tensor_name(MT.OUTPUT), (vocab, hidden))
        return mapping


# text_config.model_type -> its exporter; add Llama, Gemma, ... here.
ARCHITECTURES: dict[str, type[GgufArchitecture]] = {cls.model_type: cls for cls in (Qwen3Architecture,)}


def architecture_for(text_config) -> GgufArchitecture:
    """The exporter of ``text_config``'s architecture.

    Raises:
        CheckpointError: an architecture with no exporter (the message names it and the supported ones).
    """
    model_type = getattr(text_config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise CheckpointError(
            f"GGUF export does not support the LLM architecture {model_type!r}; supported: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[model_type](text_config)


class Qwen3VLArchitecture(Qwen3Architecture):
    """A Qwen3 text model with interleaved multimodal RoPE (Qwen3-VL's text model, Qwen3-ASR's
    thinker) -> llama.cpp ``qwen3vl``: Qwen3's tensors and keys, plus

    * ``rope.dimension_sections``: the config's ``mrope_section`` (rotary pairs per axis t, h, w)
      padded with zeros to the four entries llama.cpp reads (``[24, 20, 20]`` -> ``[24, 20, 20, 0]``);
      llama.cpp's loader requires the key (``llama-model.cpp``, ``LLM_ARCH_QWEN3VL``: ``get_key_or_arr(
      LLM_KV_ROPE_DIMENSION_SECTIONS, rope_sections, 4, true)``) and rotates with
      ``LLAMA_ROPE_TYPE_IMROPE``, which assigns pair ``i`` to axis ``i % 3`` while ``i < 3 * section``
      (as transformers' ``Qwen3VLTextRotaryEmbedding``);
    * ``n_deepstack_layers`` = 0 (no visual deepstack inputs: the input embedding width stays the
      hidden size).

    One difference from transformers, measured with llama-cpp-python 0.3.36: a rotary pair ``i`` that no
    section claims (``i % 3 == 1`` with ``i >= 3 * h``, or ``i % 3 == 2`` with ``i >= 3 * w``; pairs 61
    and 62 of Qwen3-ASR's 64) is rotated by llama.cpp's fourth position axis (ggml ``rope_multi``,
    ``theta_e``), which is 0 for token inputs and for audio as llama.cpp's multimodal helper fills it,
    where transformers uses the t axis. These are the two lowest frequencies (about 2e-6 rad per
    position for Qwen3-ASR), so logits differ slightly and increasingly with position; the plain
    ``qwen3`` form has no such pairs (exact for speech prompts, see :mod:`funasr_nano.export.thinker_gguf`).

    The sections come from ``config.mrope_section`` (our exported thinker config) or
    ``config.rope_parameters["mrope_section"]`` (transformers' ``Qwen3VLTextConfig``).
    """

    model_type = "qwen3_vl_text"
    arch_name = "QWEN3VL"

    def mrope_section(self) -> list[int]:
        """The sections as written (four entries)."""
        params = dict(getattr(self.config, "rope_parameters", None) or {})
        section = getattr(self.config, "mrope_section", None) or params.get("mrope_section")
        if not section:
            raise CheckpointError("the LLM config has no mrope_section; write it as plain qwen3 instead")
        return [int(v) for v in section] + [0] * (4 - len(section))

    def check_config(self) -> None:
        super().check_config()
        params = dict(getattr(self.config, "rope_parameters", None) or {})
        section = self.mrope_section()
        interleaved = getattr(self.config, "mrope_interleaved", params.get("mrope_interleaved", True))
        problems = []
        if len(section) != 4 or any(v < 0 for v in section):
            problems.append(f"mrope_section {section[:3]} must be up to three non-negative entries")
        elif sum(section) != self.head_dim // 2:
            problems.append(f"mrope_section {section[:3]} sums to {sum(section)}, not head_dim / 2 = "
                            f"{self.head_dim // 2} rotary pairs")
        if not interleaved:
            problems.append("mrope_interleaved is false (qwen3vl rotates interleaved sections only)")
        if problems:
            raise CheckpointError("the LLM cannot be exported to GGUF qwen3vl: " + "; ".join(problems))

    def rope_parameters(self) -> dict:
        params = super().rope_parameters()
        params.pop("mrope_section", None)
        params.pop("mrope_interleaved", None)
        return params

    def hyperparameters(self) -> list[tuple[str, Any, Any]]:
        Keys, T = self.gguf.Keys, self.gguf.GGUFValueType
        return super().hyperparameters() + [
            (self.key(Keys.Rope.DIMENSION_SECTIONS), self.mrope_section(), T.ARRAY),
            (self.key(Keys.LLM.NUM_DEEPSTACK_LAYERS), 0, T.UINT32),
        ]


ARCHITECTURES[Qwen3VLArchitecture.model_type] = Qwen3VLArchitecture
