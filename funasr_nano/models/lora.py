"""LoRA on the LLM: add adapters for training, save/load them in peft's format, switch and merge them.

Adapters are injected in place into the Qwen3 LLM (``model.model.language_model``) with
``peft.inject_adapter_in_model``, so the model stays a ``FunAsrNanoForConditionalGeneration`` whose
``generate`` and key names are unchanged apart from the LoRA layers. Only the LLM is targeted: the
SAN-M encoder has ``q_proj``/``k_proj``/``v_proj`` layers too, which LoRA must not touch.

An adapter folder is what ``peft.PeftModel.save_pretrained`` writes for a ``PeftModel`` wrapping the
LLM (``Qwen3Model``): ``adapter_config.json`` + ``adapter_model.safetensors`` with keys
``base_model.model.layers.N.self_attn.q_proj.lora_A.weight``. Loading maps every key explicitly and
reports missing, unexpected and mis-shaped tensors by name.

Merging computes ``W' = W + scaling * B @ A`` with ``scaling = lora_alpha / r`` (``lora_alpha /
sqrt(r)`` for rsLoRA), the LoRA update of Hu et al. 2021 (arXiv:2106.09685), eq. 3.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
from typing import Iterator, Sequence

import torch

from ..errors import CheckpointError
from .json_files import read_json_object

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # key prefix peft's PeftModel gives the wrapped LLM's modules
# what load_model says for a GGUF LoRA file on the transformers engine
GGUF_LORA_NEEDS_LLAMA_CPP = ("a GGUF LoRA file runs on the llama.cpp engine (a GGUF-layout folder); the transformers "
                             "engine takes the peft adapter folder")
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters, in peft's ``LoraConfig`` vocabulary.

    Attributes:
        r: rank of the update ``B @ A`` (A: ``(r, in)``, B: ``(out, r)``).
        lora_alpha: the update is scaled by ``lora_alpha / r``.
        lora_dropout: dropout on the LoRA branch's input during training.
        target_modules: names of the LLM's linear layers to adapt (all attention and MLP
            projections of Qwen3 by default).
    """

    r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"lora r must be >= 1, got {self.r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            raise ValueError("lora target_modules is empty")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=list(self.target_modules), bias="none")


def language_model(model) -> torch.nn.Module:
    """The LLM (``Qwen3Model``) inside a ``FunAsrNanoForConditionalGeneration``."""
    return model.model.language_model


def lora_layers(llm: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    """``(module path, peft LoraLayer)`` for every LoRA-wrapped layer of ``llm``."""
    from peft.tuners.lora import LoraLayer

    for name, module in llm.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module


def adapter_names(model) -> list[str]:
    """Names of the adapters injected into ``model``'s LLM."""
    names: set[str] = set()
    for _, layer in lora_layers(language_model(model)):
        names.update(layer.lora_A.keys())
    return sorted(names)


def add_lora(model, settings: LoraSettings, adapter_name: str = "default") -> int:
    """Inject a new, trainable LoRA adapter into ``model``'s LLM (B = 0, so the model's output is
    unchanged until it trains). Returns the number of adapted layers.

    Raises:
        ValueError: no LLM layer matches ``settings.target_modules``.
    """
    from peft import inject_adapter_in_model

    llm = language_model(model)
    try:
        inject_adapter_in_model(settings.peft_config(), llm, adapter_name=adapter_name)
    except ValueError as error:
        raise ValueError(f"cannot add LoRA to the LLM: {error}") from error
    count = sum(1 for _, layer in lora_layers(llm) if adapter_name in layer.lora_A)
    logger.info("LoRA adapter %r on %d LLM layers (r=%d, alpha=%s)", adapter_name, count, settings.r,
                settings.lora_alpha)
    return count


def adapter_state_dict(model, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's tensors under peft's key names (``base_model.model.<path>.lora_A.weight``)."""
    state = {}
    for path, layer in lora_layers(language_model(model)):
        if adapter_name in layer.lora_A:
            state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = layer.lora_A[adapter_name].weight.detach().cpu().contiguous()
            state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = layer.lora_B[adapter_name].weight.detach().cpu().contiguous()
    if not state:
        raise ValueError(f"the model has no LoRA adapter {adapter_name!r}")
    return state


def save_adapter(model, path: str, adapter_name: str = "default") -> str:
    """Write ``adapter_name`` to the folder ``path`` in peft's format; returns ``path``."""
    from safetensors.torch import save_file

    llm = language_model(model)
    layer = next((layer for _, layer in lora_layers(llm) if adapter_name in layer.lora_A), None)
    if layer is None:
        raise ValueError(f"the model has no LoRA adapter {adapter_name!r}")
    os.makedirs(path, exist_ok=True)
    save_file(adapter_state_dict(model, adapter_name), os.path.join(path, ADAPTER_WEIGHTS), metadata={"format": "pt"})
    targets = sorted({name.rsplit(".", 1)[-1] for name, lay in lora_layers(llm) if adapter_name in lay.lora_A})
    config = {
        "peft_type": "LORA", "task_type": None, "r": layer.r[adapter_name],
        "lora_alpha": layer.lora_alpha[adapter_name], "lora_dropout": _dropout_p(layer, adapter_name),
        "target_modules": targets, "bias": "none", "use_rslora": False, "fan_in_fan_out": False,
        "base_model_name_or_path": None, "inference_mode": True,
    }
    with open(os.path.join(path, ADAPTER_CONFIG), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return path


def _dropout_p(layer, adapter_name: str) -> float:
    dropout = layer.lora_dropout[adapter_name]
    return float(getattr(dropout, "p", 0.0))


def read_adapter_settings(path: str) -> LoraSettings:
    """The :class:`LoraSettings` of an adapter folder.

    Raises:
        CheckpointError: missing files, or an adapter type/option this package does not support.
    """
    config_path = os.path.join(path, ADAPTER_CONFIG)
    if not os.path.isfile(config_path) or not os.path.isfile(os.path.join(path, ADAPTER_WEIGHTS)):
        raise CheckpointError(f"{path}: not a LoRA adapter folder (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    config = read_json_object(config_path)
    if config.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{config_path}: peft_type {config.get('peft_type')!r} is not supported (LORA only)")
    for option in ("use_rslora", "use_dora", "fan_in_fan_out"):
        if config.get(option):
            raise CheckpointError(f"{config_path}: {option} is not supported")
    if config.get("bias", "none") != "none":
        raise CheckpointError(f"{config_path}: bias={config['bias']!r} is not supported (none only)")
    targets = config.get("target_modules")
    if isinstance(targets, str):
        raise CheckpointError(f"{config_path}: target_modules as a regular expression is not supported")
    missing = [key for key in ("r", "lora_alpha") if key not in config]
    if missing:
        raise CheckpointError(f"{config_path}: no {' and no '.join(missing)} (the LoRA rank and scaling)")
    try:
        return LoraSettings(r=int(config["r"]), lora_alpha=float(config["lora_alpha"]),
                            lora_dropout=float(config.get("lora_dropout", 0.0)), target_modules=tuple(targets or ()))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: {error}") from error


def load_adapter(model, path: str, adapter_name: str = "default") -> None:
    """Inject the adapter stored in folder ``path`` into ``model``'s LLM as ``adapter_name``.

    Every tensor is matched by name and shape; the adapter is left inactive for training (no
    gradients) and active for inference.

    Raises:
        CheckpointError: unreadable folder, or missing/unexpected/mis-shaped tensors (listed by name).
    """
    from safetensors.torch import load_file

    from .weights import raise_on_key_problems

    settings = read_adapter_settings(path)
    if adapter_name in adapter_names(model):
        raise ValueError(f"the model already has an adapter named {adapter_name!r}")
    add_lora(model, settings, adapter_name)
    stored = load_file(os.path.join(path, ADAPTER_WEIGHTS))
    expected = {}
    for module_path, layer in lora_layers(language_model(model)):
        if adapter_name in layer.lora_A:
            expected[f"{PEFT_PREFIX}{module_path}.lora_A.weight"] = layer.lora_A[adapter_name].weight
            expected[f"{PEFT_PREFIX}{module_path}.lora_B.weight"] = layer.lora_B[adapter_name].weight
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    mismatched = [f"{k}: adapter {tuple(v.shape)}, model {tuple(expected[k].shape)}"
                  for k, v in stored.items() if k in expected and v.shape != expected[k].shape]
    raise_on_key_problems(missing, unexpected, mismatched, os.path.join(path, ADAPTER_WEIGHTS))
    with torch.no_grad():
        for key, parameter in expected.items():
            parameter.copy_(stored[key].to(parameter.dtype))
            parameter.requires_grad_(False)
    logger.info("loaded LoRA adapter %r from %s (%d tensors)", adapter_name, path, len(expected))


# Per-row adapter selection: each LoRA layer of an inference model gets a forward pre-hook that passes
# the calling thread's per-row adapter names to peft's mixed-batch forward (``adapter_names``, as
# ``PeftModel.generate(..., adapter_names=...)`` does), so concurrent calls with different adapters need
# no lock and no global switch. Rows without an adapter use peft's ``"__base__"``.
_ROWS = threading.local()
BASE_ADAPTER = "__base__"


def _pass_row_adapters(module, args, kwargs):
    names = getattr(_ROWS, "names", None)
    if names is not None:
        kwargs["adapter_names"] = names
    return args, kwargs


def enable_row_adapters(model) -> None:
    """Prepare ``model``'s LoRA layers for per-row adapters (:func:`row_adapters`); call it again after
    loading another adapter. Idempotent."""
    for _, layer in lora_layers(language_model(model)):
        if not getattr(layer, "_row_adapter_hook", False):
            layer.register_forward_pre_hook(_pass_row_adapters, with_kwargs=True)
            layer._row_adapter_hook = True
        layer.enable_adapters(True)
    model._row_adapters = frozenset(adapter_names(model))  # read on every generate call: not walked again


@contextlib.contextmanager
def row_adapters(model, names: Sequence[str | None]):
    """Within this context, forward passes of ``model`` run in the calling thread apply adapter
    ``names[i]`` to batch row ``i`` (``None``: the base weights). Does nothing for a model without
    adapters (:func:`enable_row_adapters` not called) when no row asks for one.

    Raises:
        ValueError: a row asks for an adapter the model does not have.
    """
    known = getattr(model, "_row_adapters", None)
    if known is None:
        wanted = sorted({name for name in names if name is not None})
        if wanted:
            raise ValueError(f"no LoRA adapter named {wanted[0]!r}; the model has none loaded")
        yield
        return
    for name in names:
        if name is not None and name not in known:
            raise ValueError(f"no LoRA adapter named {name!r}; the model has {sorted(known)}")
    previous = getattr(_ROWS, "names", None)
    _ROWS.names = [BASE_ADAPTER if name is None else name for name in names]
    try:
        yield
    finally:
        _ROWS.names = previous


def merge_adapter(model, adapter_name: str = "default") -> int:
    """Fold ``adapter_name`` into the LLM's weights, ``W' = W + (lora_alpha / r) * B @ A``, and remove
    every LoRA layer (the other adapters are dropped). Returns the number of merged layers."""
    llm = language_model(model)
    layers = list(lora_layers(llm))
    merged = 0
    with torch.no_grad():
        for path, layer in layers:
            base = layer.get_base_layer()
            if adapter_name in layer.lora_A:
                a = layer.lora_A[adapter_name].weight.float()  # (r, in)
                b = layer.lora_B[adapter_name].weight.float()  # (out, r)
                delta = layer.scaling[adapter_name] * (b @ a)  # (out, in)
                base.weight.copy_((base.weight.float() + delta).to(base.weight.dtype))
                merged += 1
            _replace_module(llm, path, base)
    return merged


def strip_lora(model) -> None:
    """Remove every LoRA layer from ``model``'s LLM without merging (back to the base weights)."""
    llm = language_model(model)
    for path, layer in list(lora_layers(llm)):
        _replace_module(llm, path, layer.get_base_layer())


def _replace_module(root: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    """Put ``module`` at the dotted ``path`` under ``root`` (torch's public ``get_submodule`` for the
    parent, then ``setattr``; ``ModuleList`` children have numeric names, which ``setattr`` handles)."""
    parent_path, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent_path), child, module)
