"""Measure a model on the demo recipe's held-out split: CER (transcription), BLEU and chrF (speech ->
English and Chinese text -> English), and its output on real recordings.

The held-out manifest is the one ``funasr-nano data synth`` writes for ``test.tsv`` (a ``transcribe``
and a ``translate`` line per sentence); text translation uses the ``translate`` lines' transcripts.
CER is computed on characters with whitespace removed (jiwer), and again with punctuation removed as
well; BLEU and chrF are sacrebleu's corpus scores (default tokenizer ``13a``).

A diagnostic row, not a product path: the CER of the greedy CTC read-out of the audio positions (the
adaptor output through the LLM's output layer, blank = the pad token, repeats and blanks collapsed),
the auxiliary loss the recipe trains with (``ctc_weight``). It shows how much of the error is the
audio path and how much the LLM adds or removes.

Usage::

    python recipes/demo/evaluate.py MANIFEST [--model DIR] [--real WAV ...] [--json OUT.json] [--limit N]

Without ``--model`` the embedded default model is measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import unicodedata

# transcripts of the real recordings in ../shared/audio (see its README); others have none
REAL_REFERENCES = {
    "zh_binhai": "我想问我在滨海新区有房",
    "zh_welcome": "欢迎大家来体验达摩院推出的语音识别模型",
}


def strip_punctuation(text: str) -> str:
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "S", "Z")) and not ch.isspace())


def cer(references: list[str], hypotheses: list[str], punctuation: bool = True) -> float:
    """Character error rate (0..1) over a corpus: whitespace ignored; punctuation too unless
    ``punctuation``."""
    import jiwer

    norm = (lambda t: "".join(t.split())) if punctuation else strip_punctuation
    refs = [norm(r) or " " for r in references]
    hyps = [norm(h) for h in hypotheses]
    return float(jiwer.cer(refs, hyps))


@dataclasses.dataclass(frozen=True)
class Scores:
    sentences: int
    cer: float  # transcription, whitespace ignored (0..1)
    cer_no_punct: float  # transcription, punctuation also ignored (0..1)
    ctc_cer: float  # greedy CTC read-out of the audio positions, whitespace ignored (0..1); diagnostic
    speech_bleu: float
    speech_chrf: float
    text_bleu: float
    text_chrf: float
    seconds: float


def ctc_readout(model, audio: str) -> str:
    """Greedy CTC read-out of ``audio``'s LLM audio positions: argmax of ``lm_head`` per position,
    repeats collapsed, blanks (the pad token, as in training) dropped."""
    import torch

    from funasr_nano.audio.io import load_audio

    with torch.inference_mode():
        ids = model.family.model.lm_head(model.audio_embeddings(load_audio(audio))).argmax(-1).tolist()
    blank = model.tokenizer.pad_token_id
    kept = [t for i, t in enumerate(ids) if t != blank and (i == 0 or ids[i - 1] != t)]
    return model.tokenizer.decode(kept, skip_special_tokens=True)


def evaluate(model, manifest: str, limit: int | None = None) -> tuple[Scores, list[dict]]:
    """Run the three tasks on a held-out manifest; returns the scores and one record per sentence."""
    import sacrebleu

    from funasr_nano.manifests import read_manifest

    examples = read_manifest(manifest)
    transcribe = [e for e in examples if e.task == "transcribe"]
    translate = {e.audio: e for e in examples if e.task == "translate"}
    if limit is not None:
        transcribe = transcribe[:limit]
    started = time.perf_counter()
    records = []
    for example in transcribe:
        record = {"key": example.key, "audio": example.audio, "reference": example.target,
                  "transcript": model.transcribe(example.audio).text, "ctc_readout": ctc_readout(model, example.audio)}
        pair = translate.get(example.audio)
        if pair is not None:
            record["english"] = pair.target
            record["speech_translation"] = model.run("translate", audio=pair.audio).text
            record["text_translation"] = model.run("text_translate", text=pair.source_text or example.target).text
        records.append(record)
    pairs = [r for r in records if "english" in r]
    english = [[r["english"] for r in pairs]]

    def bleu(key):
        return float(sacrebleu.corpus_bleu([r[key] for r in pairs], english).score) if pairs else float("nan")

    def chrf(key):
        return float(sacrebleu.corpus_chrf([r[key] for r in pairs], english).score) if pairs else float("nan")

    refs, hyps = [r["reference"] for r in records], [r["transcript"] for r in records]
    scores = Scores(sentences=len(records), cer=cer(refs, hyps), cer_no_punct=cer(refs, hyps, punctuation=False),
                    ctc_cer=cer(refs, [r["ctc_readout"] for r in records]),
                    speech_bleu=bleu("speech_translation"), speech_chrf=chrf("speech_translation"),
                    text_bleu=bleu("text_translation"), text_chrf=chrf("text_translation"),
                    seconds=time.perf_counter() - started)
    return scores, records


def real_recordings(model, paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        row = {"file": path, "transcript": model.transcribe(path).text,
               "speech_translation": model.run("translate", audio=path).text,
               "reference": REAL_REFERENCES.get(name)}
        if row["reference"]:
            row["cer"] = cer([row["reference"]], [row["transcript"]], punctuation=False)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="held-out manifest (funasr-nano data synth output)")
    parser.add_argument("--model", help="checkpoint folder (default: the embedded demo model)")
    parser.add_argument("--real", nargs="*", default=[], metavar="WAV", help="real recordings to run as well")
    parser.add_argument("--limit", type=int, help="evaluate the first N sentences only")
    parser.add_argument("--json", help="write scores and every output here")
    args = parser.parse_args()

    import torch

    from funasr_nano import load_model

    torch.set_num_threads(1)
    model = load_model(args.model)
    scores, records = evaluate(model, args.manifest, args.limit)
    real = real_recordings(model, args.real)
    print(f"held-out synthetic sentences: {scores.sentences} ({scores.seconds:.0f} s)")
    print("| task | metric | score |\n|---|---|---|")
    print(f"| transcription | CER (whitespace ignored) | {100 * scores.cer:.1f}% |")
    print(f"| transcription | CER (punctuation also ignored) | {100 * scores.cer_no_punct:.1f}% |")
    print(f"| CTC read-out of the audio positions (diagnostic) | CER | {100 * scores.ctc_cer:.1f}% |")
    print(f"| speech -> English | BLEU / chrF | {scores.speech_bleu:.1f} / {scores.speech_chrf:.1f} |")
    print(f"| text -> English | BLEU / chrF | {scores.text_bleu:.1f} / {scores.text_chrf:.1f} |")
    for row in real:
        extra = f" (reference {row['reference']}, CER {100 * row['cer']:.0f}%)" if row["reference"] else ""
        print(f"{row['file']}: {row['transcript']!r}{extra}; translate: {row['speech_translation']!r}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"scores": dataclasses.asdict(scores), "records": records, "real": real}, f,
                      ensure_ascii=False, indent=1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
