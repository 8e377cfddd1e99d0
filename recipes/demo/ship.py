"""Step 5 of the demo recipe: ship the trained model into the package, with its example and test data.

* ``funasr_nano/assets/demo/``: the newest checkpoint of the run that ``--config`` names
  (``output_dir/checkpoints/step-N``, so a run cut short ships what it has), in the transformers
  layout with fp16 weights (the loader converts to float32), ``use_low_frame_rate: false``, ``tasks``
  (the tasks it was trained for) and ``demo_training_steps`` (the steps of each pass) in
  ``config.json``;
* ``examples/demo_zh.wav``: one held-out sentence (the first of 8+ characters in ``test.tsv``);
* ``tests/data/demo_heldout/``: the first ``--subset`` held-out sentences as 16 kHz FLAC, their
  manifest, and ``expected.json``: the shipped model's outputs on the example and its CER on the
  subset, which ``tests/test_demo_model.py`` checks.

Usage: ``python recipes/demo/ship.py WORK [--config recipes/demo/train2.yaml] [--subset 36]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import soundfile
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

from evaluate import cer  # noqa: E402

from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint  # noqa: E402
from funasr_nano.manifests import read_manifest  # noqa: E402
from funasr_nano.load import DEFAULT_MODEL, from_checkpoint  # noqa: E402
from funasr_nano.training.trainer import TrainConfig, Trainer, latest_checkpoint  # noqa: E402

TASK_NAMES = ["transcribe", "translate", "text_translate"]
EXAMPLE = os.path.join(ROOT, "examples", "demo_zh.wav")
SUBSET = os.path.join(ROOT, "tests", "data", "demo_heldout")
CER_MARGIN = 0.02  # the test's allowance over the recorded subset CER (float differences across CPUs)


def export_latest(work: str, config: TrainConfig) -> tuple[str, int]:
    """Export the newest checkpoint of the run to ``WORK/ship-src`` (official layout, fp32)."""
    trainer = Trainer(config)
    step = trainer.resume()
    path, _ = trainer.export(os.path.join(work, "ship-src"))
    print(f"exported step {step} -> {path}")
    return path, step


def earlier_passes(model: str) -> list[int]:
    """Steps of the earlier training passes that ``model`` comes from (oldest first): a pass's start
    model is the ``RUN/model`` export of the one before, whose checkpoints name its own start model."""
    run, name = os.path.split(os.path.abspath(model))
    checkpoint = latest_checkpoint(run) if name == "model" else None
    if checkpoint is None:
        return []
    with open(os.path.join(checkpoint, "state.json"), encoding="utf-8") as f:
        state = json.load(f)
    return earlier_passes(state["config"]["model"]) + [int(state["step"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", help="work folder of the recipe")
    parser.add_argument("--config", default=os.path.join(HERE, "train2.yaml"), help="the training config")
    parser.add_argument("--subset", type=int, default=36, help="held-out sentences shipped for the tests")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = TrainConfig.from_yaml(args.config)
    source, step = export_latest(args.work, config)
    steps = earlier_passes(config.model) + [step]  # per training pass
    loaded = load_checkpoint(source)
    model = loaded.model
    model.config.tasks = list(TASK_NAMES)
    model.config.use_low_frame_rate = loaded.use_low_frame_rate
    model.config.demo_training_steps = steps
    shutil.rmtree(DEFAULT_MODEL, ignore_errors=True)
    model.half().save_pretrained(DEFAULT_MODEL)
    loaded.tokenizer.save_pretrained(DEFAULT_MODEL)
    size = sum(os.path.getsize(os.path.join(DEFAULT_MODEL, n)) for n in os.listdir(DEFAULT_MODEL))
    print(f"shipped {DEFAULT_MODEL} ({size / 1e6:.1f} MB)")

    # outputs are recorded from the shipped (fp16-rounded) weights, loaded as a user loads them
    shipped = from_checkpoint(load_checkpoint(DEFAULT_MODEL))
    torch.manual_seed(0)
    held_out = read_manifest(os.path.join(args.work, "data", "test", "manifest.jsonl"))
    transcribe = [e for e in held_out if e.task == "transcribe"]
    english = {e.audio: e.target for e in held_out if e.task == "translate"}

    example = next(e for e in transcribe if len(e.target) >= 8)
    os.makedirs(os.path.dirname(EXAMPLE), exist_ok=True)
    shutil.copyfile(example.audio, EXAMPLE)
    result = shipped.transcribe(EXAMPLE)
    translation = shipped.run("translate", audio=EXAMPLE)

    # replace the audio, manifest and expected.json; keep README.md (the sentences' Tatoeba attribution)
    os.makedirs(SUBSET, exist_ok=True)
    for name in os.listdir(SUBSET):
        if name != "README.md":
            os.remove(os.path.join(SUBSET, name))
    lines, hypotheses = [], []
    for example_ in transcribe[: args.subset]:
        name = os.path.splitext(os.path.basename(example_.audio))[0] + ".flac"
        samples, rate = soundfile.read(example_.audio, dtype="int16")
        soundfile.write(os.path.join(SUBSET, name), samples, rate, format="FLAC")
        lines.append({"key": example_.key, "audio": name, "target": example_.target, "task": "transcribe",
                      "language": "zh"})
        lines.append({"key": example_.key + "-en", "audio": name, "target": english[example_.audio],
                      "task": "translate", "language": "zh", "source_text": example_.target})
        hypotheses.append(shipped.transcribe(os.path.join(SUBSET, name)).text)
    with open(os.path.join(SUBSET, "manifest.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    references = [line["target"] for line in lines if line["task"] == "transcribe"]
    subset_cer = cer(references, hypotheses)
    expected = {
        "training_steps": steps,
        "example": {"audio": os.path.relpath(EXAMPLE, ROOT), "reference": example.target,
                    "english": english.get(example.audio), "transcript": result.text,
                    "tokens": list(result.tokens), "speech_translation": translation.text},
        "subset": {"sentences": len(references), "cer": subset_cer, "cer_bound": subset_cer + CER_MARGIN,
                   "transcripts": hypotheses},
    }
    with open(os.path.join(SUBSET, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
    print(json.dumps(expected["example"], ensure_ascii=False))
    print(f"subset CER {100 * subset_cer:.1f}% on {len(references)} sentences")


if __name__ == "__main__":
    main()
