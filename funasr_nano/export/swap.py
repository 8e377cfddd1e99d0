"""``funasr-nano swap BASE --llm LLM_DIR OUT``: the same audio encoder in front of another causal LLM.

The new checkpoint (transformers layout, ``FunAsrNanoForConditionalGeneration`` with the LLM's config as
``text_config``) holds:

* BASE's SAN-M encoder and frontend settings, unchanged (tensor by tensor, every shape checked);
* an audio adaptor sized for the LLM: ``linear_1`` (encoder dim -> ``adaptor_ffn``), ``linear_2``
  (-> the LLM's hidden size ``H``), then ``adaptor_layers`` Transformer blocks of width ``H`` with FFN
  ``H // 4`` and BASE's head count (transformers' ``FunAsrNanoAdaptorConfig`` fixes the FFN at ``H // 4``).
  **Init**: what FunASR's ``Transformer`` adaptor starts from when trained from scratch, torch's own
  module initialisation (``nn.Linear``: Kaiming-uniform weights with ``a=sqrt(5)``, biases uniform in
  ``+-1/sqrt(fan_in)``; ``LayerNorm``: weight 1, bias 0), drawn from ``seed``. It is untrained: train it
  with ``funasr-nano train`` (``train_adaptor: true``; encoder and LLM frozen) before use.
  ``keep_adaptor=True`` copies BASE's trained adaptor instead (the hidden sizes must match): swapping
  Qwen3-0.6B Instruct into Fun-ASR-Nano-2512 is then one command;
* the LLM's weights (its dtype), ``config.json`` and tokenizer (with its chat template), loaded with
  ``AutoModelForCausalLM``; any family whose base model takes ``inputs_embeds`` works.

Prompts (:func:`funasr_nano.models.fun_asr_nano.prompt.chat_format_for`): the LLM's own chat template
(system role when it has one, else the system text folded into the user turn; generation header; end of
turn as a stop token). A template with Qwen3's ``enable_thinking`` switch gets
``chat_template_kwargs: {"enable_thinking": false}``. Speech markers around the audio slot: a pair the
tokenizer already has (:data:`funasr_nano.models.chat.KNOWN_SPEECH_MARKERS`), else
``<|startofspeech|>`` / ``<|endofspeech|>`` are added as special tokens; their embedding rows (and
``lm_head`` rows when untied) are set to the mean of the existing rows, the embedding table growing
when the LLM has no spare rows. They stay frozen with the LLM (only the adaptor trains by default),
so the adaptor learns around two fixed, neutral vectors. With ``keep_adaptor`` no markers are used:
the kept adaptor was trained without them.

Families that scale input embeddings (Gemma: token rows times ``sqrt(H)``): the audio positions are
**not** scaled. They are ``inputs_embeds`` rows as transformers' model consumes them, i.e. in the space
of the *scaled* token rows (transformers 5 scales inside the embedding module,
``Gemma2TextScaledWordEmbedding``, and leaves ``inputs_embeds`` as given); the adaptor learns that
scale. llama.cpp's ``gemma2`` graph multiplies every input row by ``sqrt(H)``, so the llama.cpp engine
divides embedding rows by it first (:data:`funasr_nano.engines.llamacpp_context.EMBD_SCALED_ARCHITECTURES`);
both engines then see the same numbers (tested). The speech markers' rows are table rows, scaled by
the lookup like any token. Gemma-2's final logit soft-capping (``tanh(logits / 30) * 30``) is applied
by the checkpoint loader (:func:`funasr_nano.models.fun_asr_nano.checkpoint.load_checkpoint`), since
transformers' Fun-ASR-Nano head is a bare linear layer.

``config.json`` records the provenance under ``swapped_from`` (base and LLM folders, families,
adaptor sizes, init, seed, markers).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, InvalidOptionError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ADAPTOR_INIT = "torch default (nn.Linear kaiming_uniform a=sqrt(5), uniform bias; LayerNorm 1/0)"


@dataclasses.dataclass(frozen=True)
class SwapOptions:
    """How ``funasr-nano swap`` builds the adaptor.

    Attributes:
        adaptor_layers: Transformer blocks after the projector (default: BASE's).
        adaptor_ffn: the projector's hidden width, encoder dim -> this -> LLM hidden (default: BASE's).
        keep_adaptor: keep BASE's trained adaptor (needs the LLM's hidden size to equal BASE's).
        seed: seed of the new adaptor's initialisation.
    """

    adaptor_layers: int | None = None
    adaptor_ffn: int | None = None
    keep_adaptor: bool = False
    seed: int = 0

    def __post_init__(self):
        for name in ("adaptor_layers", "adaptor_ffn"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidOptionError(f"{name} must be a positive integer, not {value!r}")
        if self.keep_adaptor and (self.adaptor_layers is not None or self.adaptor_ffn is not None):
            raise InvalidOptionError("keep_adaptor keeps BASE's adaptor; adaptor_layers/adaptor_ffn cannot be set")


# ----------------------------------------------------------------------------------------------------
# checks on the LLM folder


def load_llm_config(llm_dir: str):
    """The LLM's transformers config, checked: a known architecture whose base model accepts
    ``inputs_embeds``.

    Raises:
        CheckpointError: no config, an architecture transformers does not know, or one that cannot
            take embeddings as input (the audio positions enter the LLM as embeddings).
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    if not os.path.isfile(os.path.join(llm_dir, "config.json")):
        raise CheckpointError(f"{llm_dir}: not an LLM folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(llm_dir)
    except Exception as error:
        raise CheckpointError(f"{llm_dir}: transformers cannot read config.json: {error}") from error
    for auto, what in ((AutoModel, "base model"), (AutoModelForCausalLM, "causal LM")):
        if type(config) not in auto._model_mapping:
            raise CheckpointError(f"{llm_dir}: {config.model_type!r} has no transformers {what} "
                                  f"({auto.__name__}); swap needs a causal LM")
    base_class = AutoModel._model_mapping[type(config)]
    if "inputs_embeds" not in inspect.signature(base_class.forward).parameters:
        raise CheckpointError(f"{llm_dir}: {base_class.__name__} ({config.model_type!r}) does not accept "
                              "inputs_embeds; the audio positions enter the LLM as embeddings, so this LLM "
                              "cannot be used")
    return config


def load_llm_tokenizer(llm_dir: str):
    """The LLM's tokenizer, which must have a chat template.

    Raises:
        CheckpointError: no tokenizer, or no chat template (a base, non-chat LLM: the prompt's system,
            user and assistant turns come from the template).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    except Exception as error:
        raise CheckpointError(f"{llm_dir}: cannot load the tokenizer: {error}") from error
    if not isinstance(getattr(tokenizer, "chat_template", None), str) or not tokenizer.chat_template:
        raise CheckpointError(f"{llm_dir}: the tokenizer has no chat template; swap needs a chat (instruct) "
                              "LLM whose tokenizer_config.json or chat_template.jinja defines one")
    return tokenizer


def check_adaptor_heads(hidden_size: int, heads: int) -> None:
    """Raises CheckpointError if the adaptor's ``heads`` do not divide the LLM's ``hidden_size``."""
    if hidden_size % heads:
        raise CheckpointError(f"the LLM's hidden size {hidden_size} is not divisible by the adaptor's {heads} "
                              f"attention heads (BASE's adaptor_config.num_attention_heads); the adaptor's "
                              "blocks split the hidden size evenly across heads")


# ----------------------------------------------------------------------------------------------------
# speech markers


def speech_markers(tokenizer) -> tuple[tuple[str, str], bool]:
    """``((start, end), added)``: a pair of :data:`KNOWN_SPEECH_MARKERS` the tokenizer has as single
    tokens (``added=False``), else :data:`SPEECH_MARKERS`, which the caller must add (``added=True``)."""
    from ..models.chat import KNOWN_SPEECH_MARKERS, SPEECH_MARKERS

    vocab = tokenizer.get_vocab()
    for pair in KNOWN_SPEECH_MARKERS:
        if all(token in vocab for token in pair):
            return pair, False
    return SPEECH_MARKERS, True


def add_speech_markers(tokenizer, llm, markers: tuple[str, str]) -> list[int]:
    """Add ``markers`` as special tokens; returns their ids. Grows ``llm``'s embeddings when needed and
    sets the new rows (input embeddings; output rows too when untied) to the mean of the rows of the
    tokens the tokenizer had."""
    import torch
    from tokenizers import AddedToken

    known = len(tokenizer)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in markers], special_tokens=True)
    ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in markers]
    rows = llm.get_input_embeddings().weight.shape[0]
    if max(ids) >= rows:
        llm.resize_token_embeddings(max(ids) + 1, mean_resizing=False)
    with torch.no_grad():
        tables = [llm.get_input_embeddings().weight]
        output = llm.get_output_embeddings()
        if output is not None and output.weight.data_ptr() != tables[0].data_ptr():
            tables.append(output.weight)
        for table in tables:
            mean = table[: min(known, rows)].float().mean(0)
            for index in ids:
                table[index] = mean.to(table.dtype)
    return ids


# ----------------------------------------------------------------------------------------------------
# the new checkpoint


def _adaptor_config(base_config, hidden_size: int, options: SwapOptions) -> dict:
    adaptor = base_config.adaptor_config.to_dict()
    if options.keep_adaptor:
        if int(adaptor["hidden_size"]) != hidden_size:
            raise CheckpointError(f"keep_adaptor: BASE's adaptor writes {adaptor['hidden_size']}-d embeddings but "
                                  f"the LLM's hidden size is {hidden_size}; build a new adaptor (drop --keep-adaptor)")
        return adaptor
    check_adaptor_heads(hidden_size, int(adaptor["num_attention_heads"]))
    adaptor.update(hidden_size=hidden_size, intermediate_size=hidden_size // 4)
    if options.adaptor_layers is not None:
        adaptor["num_hidden_layers"] = options.adaptor_layers
    if options.adaptor_ffn is not None:
        adaptor["projector_hidden_size"] = options.adaptor_ffn
    for key in ("model_type", "transformers_version", "_attn_implementation_autoset"):
        adaptor.pop(key, None)
    return adaptor


def _init_adaptor(projector: torch.nn.Module, seed: int) -> None:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in projector.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)):
                module.reset_parameters()


def build_swapped(base_path: str, llm_dir: str, options: SwapOptions = SwapOptions()):
    """``(model, tokenizer)``: the swapped ``FunAsrNanoForConditionalGeneration`` (see the module
    docstring) and the LLM's tokenizer (with speech markers added if needed), in memory.

    Raises:
        CheckpointError: an unusable BASE or LLM folder (no inputs_embeds, no chat template, a hidden
            size the adaptor heads do not divide, missing or mis-shaped tensors).
    """
    import torch

    from transformers import AutoModelForCausalLM, FunAsrNanoConfig

    from ..models.fun_asr_nano.checkpoint import empty_model, load_checkpoint
    from ..models.weights import raise_on_key_problems

    base = load_checkpoint(base_path)
    llm_config = load_llm_config(llm_dir)
    tokenizer = load_llm_tokenizer(llm_dir)
    hidden = int(llm_config.hidden_size)
    adaptor = _adaptor_config(base.model.config, hidden, options)
    try:
        llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype="auto")
    except Exception as error:
        raise CheckpointError(f"{llm_dir}: cannot load the LLM: {error}") from error
    if llm.get_input_embeddings() is None:
        raise CheckpointError(f"{llm_dir}: the LLM has no input embedding table")

    markers, marker_ids, marker_source = None, [], "none (kept adaptor, trained without markers)"
    if not options.keep_adaptor:
        markers, added = speech_markers(tokenizer)
        if added:
            marker_ids = add_speech_markers(tokenizer, llm, markers)
            marker_source = "added; embedding rows = mean of the existing rows, frozen with the LLM"
        else:
            marker_ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in markers]
            marker_source = "reused from the tokenizer"
    text_config = llm.config.to_dict()
    template_kwargs = {"enable_thinking": False} if "enable_thinking" in tokenizer.chat_template else {}
    audio_token_id = marker_ids[0] if marker_ids else int(getattr(base.model.config, "audio_token_id", 0))
    if audio_token_id >= llm.get_input_embeddings().weight.shape[0]:
        audio_token_id = int(tokenizer.pad_token_id or tokenizer.eos_token_id or 0)
    try:
        config = FunAsrNanoConfig(
            audio_config=base.model.config.audio_config.to_dict(), adaptor_config=adaptor, text_config=text_config,
            tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", False)),
            audio_token_id=audio_token_id,
        )
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"the LLM's config does not fit a Fun-ASR-Nano model: {error}") from error
    config.use_low_frame_rate = base.use_low_frame_rate
    config.tasks = ["transcribe"]
    if markers:
        config.speech_markers = list(markers)
    if template_kwargs:
        config.chat_template_kwargs = template_kwargs
    config.swapped_from = {
        "base": os.path.abspath(base_path), "llm": os.path.abspath(llm_dir),
        "llm_model_type": llm.config.model_type, "llm_architectures": list(getattr(llm.config, "architectures", None) or []),
        "llm_hidden_size": hidden, "adaptor": "kept from base" if options.keep_adaptor else "new, untrained",
        "adaptor_init": None if options.keep_adaptor else ADAPTOR_INIT, "seed": options.seed,
        "adaptor_layers": int(adaptor["num_hidden_layers"]), "adaptor_ffn": int(adaptor["projector_hidden_size"]),
        "speech_markers": marker_source,
    }
    model = empty_model(config)

    # explicit key map, every shape checked
    state: dict[str, torch.Tensor] = {}
    for key, tensor in base.model.state_dict().items():
        if key.startswith("model.audio_tower.") or (options.keep_adaptor and key.startswith("model.multi_modal_projector.")):
            state[key] = tensor
    for key, tensor in llm.base_model.state_dict().items():
        state["model.language_model." + key] = tensor
    output = llm.get_output_embeddings()
    if output is not None:
        state["lm_head.weight"] = output.weight
    expected = model.state_dict()
    new_adaptor = [] if options.keep_adaptor else [k for k in expected if k.startswith("model.multi_modal_projector.")]
    missing = [k for k in expected if k not in state and k not in new_adaptor and not k.endswith("inv_freq")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: source {tuple(v.shape)}, model {tuple(expected[k].shape)}"
                  for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    raise_on_key_problems(missing, unexpected, mismatched, f"swap {base_path} + {llm_dir}")
    model.load_state_dict(state, strict=False, assign=True)
    if not options.keep_adaptor:
        model.model.multi_modal_projector.to(torch.float32)
        _init_adaptor(model.model.multi_modal_projector, options.seed)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.model.audio_tower.float()
    logger.info("swapped %s onto %s (%s, hidden %d): adaptor %s, markers %s", base_path, llm_dir,
                llm.config.model_type, hidden, config.swapped_from["adaptor"], marker_source)
    return model.eval(), tokenizer


def swap_llm(base_path: str | os.PathLike, llm_dir: str | os.PathLike, out_dir: str | os.PathLike,
             options: SwapOptions = SwapOptions(), **overrides: Any) -> str:
    """Write a checkpoint with BASE's encoder, a new (or kept) adaptor and the LLM of ``llm_dir`` to
    ``out_dir`` (transformers layout, loadable by :func:`funasr_nano.load_model`). ``overrides``:
    fields of :class:`SwapOptions`. Returns ``out_dir``.

    Raises:
        InvalidOptionError: bad options, or ``out_dir`` is BASE or the LLM folder.
        CheckpointError: see :func:`build_swapped`.
    """
    try:
        options = dataclasses.replace(options, **overrides)
    except TypeError as error:
        raise TypeError(f"swap_llm: {error}") from None
    base_path, llm_dir, out_dir = (os.path.abspath(os.fspath(p)) for p in (base_path, llm_dir, out_dir))
    if out_dir in (base_path, llm_dir):
        raise InvalidOptionError(f"{out_dir}: the output folder must differ from BASE and the LLM folder")
    if not os.path.isdir(llm_dir):
        raise CheckpointError(f"{llm_dir}: not a folder")
    model, tokenizer = build_swapped(base_path, llm_dir, options)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    logger.info("wrote swapped checkpoint %s", out_dir)
    return out_dir
