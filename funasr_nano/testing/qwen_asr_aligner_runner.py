"""Runs the forced aligner of the reference package ``qwen-asr`` (0.0.6) on a checkpoint and records what
enters and leaves its network. Executed by :func:`funasr_nano.testing.qwen_asr_reference.run_aligner_reference`
with the Python of the reference's own virtual environment, so this file imports nothing from funasr_nano.

    python qwen_asr_aligner_runner.py REQUEST.json RESULT.pt

``REQUEST.json``: ``{"model": folder, "cases": [{"audio": wav path, "text": str, "language": str,
"bins": null or [bin, ...]}, ...]}``. ``RESULT.pt`` (``torch.save``): ``{"cases": [{"items": [(text,
start_time, end_time), ...], "input_ids" (the prompt's ids), "slot_logits" ((2 * units, classify_num)
float32 classifier logits at the <timestamp> slots)}], "weights_checked": n}``.

Each case goes through the public ``Qwen3ForcedAligner.align`` (fp32); a forward hook on the thinker
captures its input ids and logits. A case with ``bins`` has the thinker's logits replaced by one-hot
rows choosing those bins at the ``<timestamp>`` slots, so that the reference's fix-up of out-of-order
times (``Qwen3ForceAlignProcessor.fix_timestamp``) runs on chosen sequences.
"""

from __future__ import annotations

import json
import sys


def main(request_path: str, result_path: str) -> None:
    import torch
    from reference_weights import check_reference_weights  # a sibling file: this folder is on sys.path

    from qwen_asr import Qwen3ForcedAligner

    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    aligner = Qwen3ForcedAligner.from_pretrained(request["model"], dtype=torch.float32)

    # every tensor of the file must be what the reference model holds (no silently skipped weights)
    checked = check_reference_weights(aligner.model.state_dict(), request["model"])

    captured: dict = {}

    def hook(module, args, kwargs, output):
        ids = kwargs["input_ids"]
        captured["input_ids"] = ids.detach().clone()
        captured["logits"] = output.logits.detach().float().clone()
        if captured.get("bins") is not None:
            logits = torch.zeros_like(output.logits)
            slots = (ids[0] == timestamp_id).nonzero().flatten()
            logits[0, slots, torch.tensor(captured["bins"])] = 1.0
            output.logits = logits
        return output

    aligner.model.thinker.register_forward_hook(hook, with_kwargs=True)
    timestamp_id = aligner.timestamp_token_id
    results = []
    for case in request["cases"]:
        captured.clear()
        captured["bins"] = case.get("bins")
        out = aligner.align(audio=case["audio"], text=case["text"], language=case["language"])[0]
        ids = captured["input_ids"][0]
        results.append({
            "items": [(item.text, item.start_time, item.end_time) for item in out],
            "input_ids": ids.tolist(),
            "slot_logits": captured["logits"][0][ids == timestamp_id],
        })
    torch.save({"cases": results, "weights_checked": checked}, result_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
