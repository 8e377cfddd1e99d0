"""Runs the reference package ``qwen-asr`` (0.0.6) on a checkpoint and records what enters and leaves its
LLM. Executed by :mod:`funasr_nano.testing.qwen_asr_reference` with the Python of the reference's own
virtual environment (it pins transformers 4.57.6), so this file imports nothing from funasr_nano.

    python qwen_asr_runner.py REQUEST.json RESULT.pt

``REQUEST.json``: ``{"model": folder, "max_new_tokens": n, "cases": [{"audio": wav path, "context": str,
"language": str | null}, ...]}``. ``RESULT.pt`` (``torch.save``): ``{"cases": [{"language", "text", "raw",
"tokens" (generated ids, end token excluded), "prompt_ids", "inputs_embeds" ((length, hidden) float32
entering the thinker's text model), "position_ids" ((3, length): the multimodal-RoPE positions)}],
"weights_checked": n}``.

Each case goes through the public ``Qwen3ASRModel.transcribe`` (greedy, fp32); forward hooks capture the
text model's first call of each generation.
"""

from __future__ import annotations

import json
import sys


def main(request_path: str, result_path: str) -> None:
    import torch
    from reference_weights import check_reference_weights  # a sibling file: this folder is on sys.path

    from qwen_asr import Qwen3ASRModel

    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    torch.manual_seed(0)
    model = Qwen3ASRModel.from_pretrained(request["model"], dtype=torch.float32,
                                          max_new_tokens=int(request["max_new_tokens"]))
    thinker = model.model.thinker

    # every tensor of the file must be what the reference model holds (no silently skipped weights)
    checked = check_reference_weights(model.model.state_dict(), request["model"], complete=False)

    captured: dict = {}

    def text_model_hook(module, args, kwargs):
        cache_position = kwargs.get("cache_position")
        if "inputs_embeds" not in captured and (cache_position is None or int(cache_position[0]) == 0):
            captured["inputs_embeds"] = kwargs["inputs_embeds"].detach().clone()
            captured["position_ids"] = kwargs["position_ids"].detach().clone()

    thinker.model.register_forward_pre_hook(text_model_hook, with_kwargs=True)
    generate = model.model.generate

    def capture_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        captured["input_ids"] = kwargs["input_ids"].detach().clone()
        captured["sequences"] = out.sequences.detach().clone()
        return out

    model.model.generate = capture_generate
    stop = {151643, 151645}
    results = []
    for case in request["cases"]:
        captured.clear()
        out = model.transcribe(audio=case["audio"], context=case.get("context") or "", language=case.get("language"))
        prompt = captured["input_ids"][0].tolist()
        generated = captured["sequences"][0, len(prompt):].tolist()
        tokens = []
        for token in generated:
            if token in stop:
                break
            tokens.append(token)
        raw = model.processor.batch_decode([tokens], skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]
        results.append({
            "language": out[0].language, "text": out[0].text, "raw": raw, "tokens": tokens, "prompt_ids": prompt,
            "inputs_embeds": captured["inputs_embeds"][0].float(), "position_ids": captured["position_ids"][:, 0],
        })
    torch.save({"cases": results, "weights_checked": checked}, result_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
