"""The weight check both reference runners make (:mod:`.qwen_asr_runner`, :mod:`.qwen_asr_aligner_runner`):
every tensor of a checkpoint's safetensors files is what the reference model holds, so no weight is skipped
in silence. The runners execute with the reference's own Python (``python RUNNER.py``), which puts this folder
on ``sys.path``; like them, this file imports nothing from funasr_nano.
"""

from __future__ import annotations

import os


def check_reference_weights(state: dict, folder: str, *, complete: bool = True) -> int:
    """Compare each tensor of ``folder``'s ``*.safetensors`` files with ``state`` (the reference model's
    ``state_dict()``), in float32.

    Args:
        complete: the files must hold every tensor of ``state`` too.

    Returns:
        How many tensors were checked.

    Raises:
        SystemExit: a tensor the reference model lacks or holds otherwise, or (``complete``) a count that
            differs.
    """
    import torch
    from safetensors.torch import load_file

    checked = 0
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            for key, tensor in load_file(os.path.join(folder, name)).items():
                if key not in state or not torch.equal(state[key].float(), tensor.float()):
                    raise SystemExit(f"reference model does not hold {key} as the checkpoint does")
                checked += 1
    if complete and checked != len(state):
        raise SystemExit(f"the reference model has {len(state)} tensors, the checkpoint {checked}")
    return checked
