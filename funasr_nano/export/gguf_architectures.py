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
from .native import import_gguf


class GgufArchitecture:
    """How one transformers LLM family becomes a llama.cpp architecture.

    Subclasses set :attr:`model_type` (``text_config.model_type``) and :attr:`arch`, and implement
    :meth:`config_problems`, :meth:`hyperparameters` and :meth:`tensor_map`. Register them in
    :data:`ARCHITECTURES` (one small class per architecture, as ``convert_hf_to_gguf.py``).
    """

    model_type: ClassVar[str]
    arch_name: ClassVar[str]  # attribute name of gguf.MODEL_ARCH

    def __init__(self, config):
        self.gguf = import_gguf()  # a missing package: an error naming the extra
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
        """Raise :class:`CheckpointError` naming every :meth:`config_problems`."""
        problems = self.config_problems()
        if problems:
            raise CheckpointError("the LLM cannot be exported to GGUF: " + "; ".join(problems))

    def config_problems(self) -> list[str]:
        """The settings of :attr:`config` that llama.cpp's architecture cannot express (empty: none)."""
        raise NotImplementedError

    def hyperparameters(self) -> list[tuple[str, Any, Any]]:
        """``(GGUF key, value, gguf.GGUFValueType)`` for every hyper-parameter."""
        raise NotImplementedError

    def tensor_map(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """transformers name (as in ``Qwen3ForCausalLM``'s state dict) -> (llama.cpp name, shape).
        Tensors that llama.cpp does not need (a tied ``lm_head.weight``) are absent."""
        raise NotImplementedError

    def convert_tensor(self, name: str, tensor):
        """The tensor as llama.cpp stores it (default: unchanged); ``name`` is the transformers name."""
        return tensor

    def extra_tensors(self) -> dict:
        """Tensors llama.cpp needs that are not in the state dict (llama.cpp name -> tensor)."""
        return {}


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

    def config_problems(self) -> list[str]:
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
        return problems

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


class LlamaArchitecture(Qwen3Architecture):
    """Llama (``LlamaForCausalLM``, Llama 2/3.x) -> llama.cpp ``llama``, as ``convert_hf_to_gguf.py``
    ``LlamaModel`` writes it.

    The tensors are Qwen3's without the q/k norms (same names, table in :class:`Qwen3Architecture`),
    plus ``output.weight`` when untied. Two differences:

    * llama.cpp's ``llama`` applies RoPE to adjacent pairs (GPT-J style) where transformers rotates
      the two halves of each head, so the rows of ``q_proj`` (per query head) and ``k_proj`` (per KV
      head) are permuted: within each head, row ``i`` of the first half and row ``i`` of the second
      half become rows ``2i`` and ``2i + 1``;
    * Llama 3.1+ RoPE scaling (``rope_type: llama3``) becomes the ``rope_freqs.weight`` tensor of
      per-frequency divisors: 1 for wavelengths below ``original_max_position_embeddings /
      high_freq_factor``, ``factor`` above ``original / low_freq_factor``, interpolated between
      (Meta's Llama 3.1 scaling rule, the values transformers' ``_compute_llama3_parameters`` applies).
    """

    model_type = "llama"
    arch_name = "LLAMA"

    def config_problems(self) -> list[str]:
        c = self.config
        problems = []
        if getattr(c, "hidden_act", "silu") != "silu":
            problems.append(f"hidden_act={c.hidden_act!r} (llama.cpp's llama uses SiLU)")
        if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
            problems.append("attention_bias/mlp_bias=True (not exported)")
        rope_type = self.rope_parameters().get("rope_type", "default")
        if rope_type not in ("default", None, "llama3"):
            problems.append(f"rope_type={rope_type!r} (default and llama3 RoPE are exported)")
        return problems

    def hyperparameters(self) -> list[tuple[str, Any, Any]]:
        Keys = self.gguf.Keys
        qwen3_only = {self.key(Keys.Attention.KEY_LENGTH), self.key(Keys.Attention.VALUE_LENGTH)}
        values = [item for item in super().hyperparameters() if item[0] not in qwen3_only]
        c = self.config
        if self.head_dim != int(c.hidden_size) // int(c.num_attention_heads):
            T = self.gguf.GGUFValueType
            values += [(self.key(Keys.Attention.KEY_LENGTH), self.head_dim, T.UINT32),
                       (self.key(Keys.Attention.VALUE_LENGTH), self.head_dim, T.UINT32)]
        return values

    def tensor_map(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        MT = self.gguf.MODEL_TENSOR
        return _dense_tensor_map(self, (("input_layernorm.weight", MT.ATTN_NORM),
                                        ("post_attention_layernorm.weight", MT.FFN_NORM)))

    def convert_tensor(self, name: str, tensor):
        c = self.config
        if name.endswith("self_attn.q_proj.weight"):
            return _rope_pairs(tensor, int(c.num_attention_heads))
        if name.endswith("self_attn.k_proj.weight"):
            return _rope_pairs(tensor, int(c.num_key_value_heads))
        return tensor

    def extra_tensors(self) -> dict:
        import math

        import torch

        params = self.rope_parameters()
        if params.get("rope_type") != "llama3":
            return {}
        factor = float(params.get("factor", 8.0))
        low, high = float(params.get("low_freq_factor", 1.0)), float(params.get("high_freq_factor", 4.0))
        original = float(params.get("original_max_position_embeddings", 8192))
        theta, dim = float(params["rope_theta"]), self.head_dim
        divisors = []
        for index in range(0, dim, 2):
            wavelength = 2 * math.pi * theta ** (index / dim)
            if wavelength < original / high:
                divisors.append(1.0)
            elif wavelength > original / low:
                divisors.append(factor)
            else:
                smooth = (original / wavelength - low) / (high - low)
                divisors.append(1.0 / ((1 - smooth) / factor + smooth))
        return {self.tensor_name(self.gguf.MODEL_TENSOR.ROPE_FREQS): torch.tensor(divisors, dtype=torch.float32)}


def _dense_tensor_map(architecture: Qwen3Architecture, norms) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The tensor map of a dense decoder with ``norms`` (``(transformers tail, gguf.MODEL_TENSOR)`` per
    layer): embeddings, q/k/v/o, gate/up/down, final norm and, when untied, the output projection."""
    MT = architecture.gguf.MODEL_TENSOR
    c = architecture.config
    hidden, ffn, vocab, d = int(c.hidden_size), int(c.intermediate_size), int(c.vocab_size), architecture.head_dim
    q_rows, kv_rows = int(c.num_attention_heads) * d, int(c.num_key_value_heads) * d
    name = architecture.tensor_name
    mapping = {"model.embed_tokens.weight": (name(MT.TOKEN_EMBD), (vocab, hidden)),
               "model.norm.weight": (name(MT.OUTPUT_NORM), (hidden,))}
    per_layer = tuple((tail, tensor, (hidden,)) for tail, tensor in norms) + (
        ("self_attn.q_proj.weight", MT.ATTN_Q, (q_rows, hidden)),
        ("self_attn.k_proj.weight", MT.ATTN_K, (kv_rows, hidden)),
        ("self_attn.v_proj.weight", MT.ATTN_V, (kv_rows, hidden)),
        ("self_attn.o_proj.weight", MT.ATTN_OUT, (hidden, q_rows)),
        ("mlp.gate_proj.weight", MT.FFN_GATE, (ffn, hidden)),
        ("mlp.up_proj.weight", MT.FFN_UP, (ffn, hidden)),
        ("mlp.down_proj.weight", MT.FFN_DOWN, (hidden, ffn)),
    )
    for layer in range(int(c.num_hidden_layers)):
        for tail, tensor, shape in per_layer:
            mapping[f"model.layers.{layer}.{tail}"] = (name(tensor, layer), shape)
    if not getattr(c, "tie_word_embeddings", False):
        mapping["lm_head.weight"] = (name(MT.OUTPUT), (vocab, hidden))
    return mapping


def _rope_pairs(weight, heads: int):
    """``(heads * d, H)`` projection rows of transformers' half-split RoPE -> llama.cpp's adjacent pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


class Gemma2Architecture(Qwen3Architecture):
    """Gemma-2 (``Gemma2ForCausalLM``) -> llama.cpp ``gemma2``, as ``convert_hf_to_gguf.py``
    ``Gemma2Model`` writes it.

    Keys: Qwen3's, plus ``attn_logit_softcapping``, ``final_logit_softcapping`` and
    ``attention.sliding_window`` (llama.cpp alternates sliding and global layers starting with a
    sliding one, as transformers' default ``layer_types``). Gemma's RMSNorm multiplies by ``1 +
    weight``; llama.cpp by ``weight``, so every norm weight is written plus one. Embeddings are always
    tied (no ``output.weight``). Both scale the input embeddings by ``sqrt(hidden_size)``, audio
    positions included. Tensors: Qwen3's without the q/k norms, with Gemma-2's four norms per layer:

    =================================================  ==============================
    ``...input_layernorm.weight``                      ``blk.{i}.attn_norm.weight``
    ``...post_attention_layernorm.weight``             ``blk.{i}.post_attention_norm.weight``
    ``...pre_feedforward_layernorm.weight``            ``blk.{i}.ffn_norm.weight``
    ``...post_feedforward_layernorm.weight``           ``blk.{i}.post_ffw_norm.weight``
    =================================================  ==============================
    """

    model_type = "gemma2"
    arch_name = "GEMMA2"

    def config_problems(self) -> list[str]:
        c = self.config
        problems = []
        if getattr(c, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
            problems.append(f"hidden_activation={c.hidden_activation!r} (llama.cpp's gemma2 uses tanh GELU)")
        if not getattr(c, "tie_word_embeddings", True):
            problems.append("tie_word_embeddings=False (llama.cpp's gemma2 has no output.weight)")
        # llama.cpp scales queries by 1/sqrt(head_dim) (27B: 1/sqrt(hidden/heads)); transformers by
        # query_pre_attn_scalar**-0.5, equal in the released 2B and 9B
        if int(getattr(c, "query_pre_attn_scalar", self.head_dim)) != self.head_dim:
            problems.append(f"query_pre_attn_scalar={c.query_pre_attn_scalar} != head_dim {self.head_dim}")
        layer_types = list(getattr(c, "layer_types", None) or [])
        expected = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(int(c.num_hidden_layers))]
        if layer_types and layer_types != expected:
            problems.append("layer_types other than alternating sliding/full attention")
        if self.rope_parameters().get("rope_type", "default") not in ("default", None):
            problems.append("RoPE scaling (only the default RoPE is exported)")
        return problems

    def hyperparameters(self) -> list[tuple[str, Any, Any]]:
        Keys, T = self.gguf.Keys, self.gguf.GGUFValueType
        c = self.config
        values = super().hyperparameters()
        for key, value in ((Keys.LLM.ATTN_LOGIT_SOFTCAPPING, c.attn_logit_softcapping),
                           (Keys.LLM.FINAL_LOGIT_SOFTCAPPING, c.final_logit_softcapping)):
            if value is not None:
                values.append((self.key(key), float(value), T.FLOAT32))
        values.append((self.key(Keys.Attention.SLIDING_WINDOW), int(c.sliding_window), T.UINT32))
        return values

    def tensor_map(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        MT = self.gguf.MODEL_TENSOR
        return _dense_tensor_map(self, (("input_layernorm.weight", MT.ATTN_NORM),
                                        ("post_attention_layernorm.weight", MT.ATTN_POST_NORM),
                                        ("pre_feedforward_layernorm.weight", MT.FFN_PRE_NORM),
                                        ("post_feedforward_layernorm.weight", MT.FFN_POST_NORM)))

    def convert_tensor(self, name: str, tensor):
        return tensor + 1 if name.endswith("norm.weight") else tensor


# text_config.model_type -> its exporter; add Llama, Gemma, ... here.
ARCHITECTURES: dict[str, type[GgufArchitecture]] = {cls.model_type: cls for cls in (Qwen3Architecture,)}
ARCHITECTURES.update({cls.model_type: cls for cls in (LlamaArchitecture, Gemma2Architecture)})


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
