"""``bench_translate.py --size full``: speech -> English at full size, random weights, every mode in a fresh process.

Models (random weights; speed does not depend on their values): the full Fun-ASR-Nano-2512 architecture
(official layout, exported to GGUF at q8_0 and q4_k_m, with a random r=16 translate LoRA on every LLM
projection as a GGUF LoRA file) and a full-size Qwen3-0.6B chat translator (transformers folder, exported
to GGUF at the same types), both with the demo model's tokenizer. So that random logits decode to text
(the demo vocabulary has a few thousand entries, the embedding 151,936 rows), the embedding rows of the
tokenizer's normal tokens are scaled up and the others (unused ids, special tokens: no early end of turn)
down.

Audio: 1, 3 or 6 "sentences", each the same 5 s of real speech followed by 1 s of silence (so the VAD cuts
one sentence per 5 s). Token counts are forced: the speech model decodes at most 16 tokens per sentence
(transcription, cascade) or 24 (unified: English), every translator 24 (no early stop with these weights;
the counts decoded are reported).

Our workers run the encoder and adaptor in int8 (``encoder_precision="int8"``), the official one in fp32.

Workers (each a fresh process; peak RSS from VmHWM):
  transcribe     plain transcription of one 5 s sentence on llama.cpp, 16 tokens (the reference for the ratios)
  unified        llama.cpp speech model + the GGUF LoRA (translate), ``translate_stream``
  cascade-llama  llama.cpp speech model + the GGUF chat translator on llama.cpp
  cascade-hf     llama.cpp speech model + the same translator through transformers (the project's loader)
  official       funasr ``AutoModel`` (ASR, 16 tokens) then the translator through transformers ``generate``
                 (24 tokens), sentence after sentence
  together       speech model + adapter + llama.cpp translator loaded at once: transcribe, unified, cascade
  profile        where the unified pass's time goes: VAD, encoder, prefill and per-token decode, base
                 weights vs the f32 / f16 / r=4 GGUF LoRA (one engine, all adapters loaded)

Cascade workers run each sentence count serially (``cascade_N``) and with overlap (``cascade_overlap_N``:
the translation of sentence i runs while sentence i + 1 is decoded; both engines with ``--threads``
threads), and cascade-llama also with a 1-thread translator during overlap (``cascade_overlap1_N``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_server import cpu_info  # noqa: E402  (the CPU model and SIMD flags)
from bench_transcribe import make_clips, peak_rss_mb  # noqa: E402

QUANTS = ("q8_0", "q4_k_m")
SENTENCES = (1, 3, 6)
ASR_TOKENS, EN_TOKENS = 16, 24
ENCODER = "int8"  # our encoder and adaptor's arithmetic (as the transcription figure); official: fp32
WORKERS = ("transcribe", "unified", "cascade-llama", "cascade-hf", "official", "together", "profile")
# rough seconds of each worker on a 2-core AVX2 machine, to group workers into exclusive holds of the lock
ESTIMATED_SECONDS = {"transcribe": 45, "unified": 50, "profile": 80, "cascade-llama": 110, "cascade-hf": 170,
                     "together": 140, "official": 180}
HOLD_SECONDS = 460


def _text_rows(embedding, tokenizer) -> None:
    """Scale the rows of normal tokens up and all others down (see the module docstring)."""
    import torch

    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    normal = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    with torch.no_grad():
        embedding.weight.mul_(0.05)
        embedding.weight[normal] *= 100.0


def ensure_models(out: pathlib.Path) -> dict:
    """Write (once) the speech checkpoint, its GGUFs and LoRA, and the translator with its GGUFs."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from funasr_nano.export.checkpoint import write_official
    from funasr_nano.export.gguf_folder import export_gguf
    from funasr_nano.export.gguf_lora import write_lora_gguf
    from funasr_nano.export.text_llm_gguf import export_text_llm_gguf
    from funasr_nano.load import DEFAULT_MODEL
    from funasr_nano.models.lora import LoraSettings, add_lora, lora_layers, save_adapter
    from funasr_nano.testing.tiny import TinyConfig, build_random_model
    from funasr_nano.testing.tiny_chat import QWEN3_CHAT_TEMPLATE

    out.mkdir(parents=True, exist_ok=True)
    paths = {"speech": out / "speech-official", "adapter": out / "translate-lora", "lora": out / "translate-lora.gguf",
             "translator": out / "translator-qwen3-0.6b"}
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
    if not (paths["speech"] / "model.pt").exists() or not paths["lora"].exists():
        print("writing the full-size speech checkpoint and its LoRA ...", file=sys.stderr, flush=True)
        model, tokenizer, cfg = build_random_model(TinyConfig.full_size(), 0, tokenizer)
        _text_rows(model.model.language_model.embed_tokens, tokenizer)
        write_official(str(paths["speech"]), model, tokenizer, cfg)
        add_lora(model, LoraSettings(r=16, lora_alpha=32, lora_dropout=0.0))
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _, layer in lora_layers(model.model.language_model):
                for weight in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                    weight.copy_(0.01 * torch.randn(weight.shape, generator=generator))
        save_adapter(model, str(paths["adapter"]))
        write_lora_gguf(paths["adapter"], model.config.text_config, paths["lora"])
        del model
    paths["lora-f16"] = out / "translate-lora-f16.gguf"
    if not paths["lora-f16"].exists():
        from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint

        text_config = load_checkpoint(str(paths["speech"])).model.config.text_config
        write_lora_gguf(paths["adapter"], text_config, paths["lora-f16"], "f16")
    paths["lora-r4"] = out / "translate-lora-r4.gguf"
    if not paths["lora-r4"].exists():
        print("writing an r=4 LoRA ...", file=sys.stderr, flush=True)
        model, _, _ = build_random_model(TinyConfig.full_size(), 0, tokenizer)
        add_lora(model, LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0))
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _, layer in lora_layers(model.model.language_model):
                for weight in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                    weight.copy_(0.01 * torch.randn(weight.shape, generator=generator))
        save_adapter(model, str(out / "translate-lora-r4"))
        write_lora_gguf(out / "translate-lora-r4", model.config.text_config, paths["lora-r4"])
        del model
    for quant in QUANTS:
        folder = out / f"speech-{quant}"
        paths[f"speech-{quant}"] = folder
        if not (folder / f"llm-{quant}.gguf").exists():
            print(f"exporting the speech model at {quant} ...", file=sys.stderr, flush=True)
            export_gguf(paths["speech"], folder, quant)
    if not (paths["translator"] / "model.safetensors").exists():
        print("writing the full-size Qwen3-0.6B translator ...", file=sys.stderr, flush=True)
        config = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                             num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                             max_position_embeddings=40960, eos_token_id=tokenizer.eos_token_id,
                             bos_token_id=tokenizer.pad_token_id)
        config.architectures = ["Qwen3ForCausalLM"]
        torch.manual_seed(1)
        llm = Qwen3ForCausalLM(config)
        _text_rows(llm.model.embed_tokens, tokenizer)
        llm.generation_config.eos_token_id = tokenizer.eos_token_id
        llm.save_pretrained(paths["translator"])
        tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
        tokenizer.save_pretrained(paths["translator"])
        del llm
    for quant in QUANTS:
        file = out / f"translator-{quant}" / f"translator-qwen3-0.6b-{quant}.gguf"
        paths[f"translator-{quant}"] = file
        if not file.exists():
            print(f"exporting the translator at {quant} ...", file=sys.stderr, flush=True)
            export_text_llm_gguf(paths["translator"], file.parent, quant)
    return {k: str(v) for k, v in paths.items()}


def sentences_audio(clip: str, n: int):
    import numpy as np
    import soundfile

    wave = soundfile.read(clip, dtype="float32")[0]
    return np.concatenate([np.concatenate([wave, np.zeros(16000, np.float32)])] * n)


class ForcedTranslator:
    """A translator whose calls decode ``EN_TOKENS`` tokens whatever the speech pass's cap."""

    def __init__(self, inner):
        self.inner = inner

    def translate(self, text, options):
        decoding = dataclasses.replace(options.decoding, max_new_tokens=EN_TOKENS)
        return self.inner.translate(text, dataclasses.replace(options, decoding=decoding))


def counting(engine, counts: list):
    """Record the tokens each generate call of ``engine`` returns (instance attribute: benchmark only)."""
    generate = engine.generate

    def wrapper(inputs, options, **kwargs):
        result = generate(inputs, options, **kwargs)
        counts.extend(len(r) for r in result)
        return result

    engine.generate = wrapper
    return engine


def run_stream(model, audio, options, translator=None) -> dict:
    from funasr_nano.pipeline.translate import SentenceTranslated, TranslationFinished

    began, first, sentences = time.perf_counter(), None, 0
    for event in model.translate_stream(audio, options, translator=translator):
        if isinstance(event, SentenceTranslated):
            sentences += 1
            first = first if first is not None else time.perf_counter() - began
        elif isinstance(event, TranslationFinished):
            total = time.perf_counter() - began
    return dict(first_s=first, total_s=total, sentences=sentences)


def worker(name: str, quant: str, paths: dict, clip: str, threads: int) -> dict:
    import torch

    from funasr_nano import DecodingOptions, TranslationOptions, load_model

    torch.set_num_threads(threads)
    audio = {n: sentences_audio(clip, n) for n in SENTENCES}
    asr_counts, mt_counts, rows = [], [], {}
    cascade = TranslationOptions(mode="cascade", decoding=DecodingOptions(max_new_tokens=ASR_TOKENS))
    unified = TranslationOptions(mode="unified", decoding=DecodingOptions(max_new_tokens=EN_TOKENS))
    fixed = DecodingOptions(max_new_tokens=ASR_TOKENS, min_new_tokens=ASR_TOKENS, repetition_guard=False)
    if name == "profile":
        return dict(worker=name, quant=quant, rows=profile(quant, paths, clip, threads), peak_rss_mb=peak_rss_mb(),
                    asr_tokens=[], mt_tokens=[])
    if name == "official":
        from funasr import AutoModel

        from funasr_nano.pipeline.translators import ChatLMTranslator

        auto = AutoModel(model=paths["speech"], device="cpu", disable_update=True, disable_log=True, ncpu=threads)
        torch.set_num_threads(threads)
        translator = ChatLMTranslator(paths["translator"])
        kwargs = dict(key=["utt"], tokenizer=auto.kwargs["tokenizer"], frontend=auto.kwargs["frontend"], device="cpu",
                      max_length=ASR_TOKENS, llm_kwargs={"min_new_tokens": ASR_TOKENS}, llm_dtype="fp32")
        options = TranslationOptions(mode="cascade", decoding=DecodingOptions(max_new_tokens=EN_TOKENS))

        def sentence():
            result = auto.model.inference([clip], **kwargs)
            try:
                text = result[0][0]["text"]
            except (IndexError, KeyError, TypeError):
                text = ""
            ids = translator.tokenizer(translator.prompt(text or "你好", options), return_tensors="pt",
                                       add_special_tokens=False)
            with torch.inference_mode():
                out = translator.model.generate(**ids, max_new_tokens=EN_TOKENS, min_new_tokens=EN_TOKENS,
                                                do_sample=False, pad_token_id=0)
            mt_counts.append(out.shape[1] - ids["input_ids"].shape[1])

        sentence()  # warm-up
        for n in SENTENCES:
            began, first = time.perf_counter(), None
            for _ in range(n):
                sentence()
                first = first if first is not None else time.perf_counter() - began
            rows[f"cascade_{n}"] = dict(first_s=first, total_s=time.perf_counter() - began, sentences=n)
    else:
        lora = {"translate": paths["lora"]} if name in ("unified", "together") else None
        model = load_model(paths[f"speech-{quant}"], n_threads=threads, lora=lora, encoder_precision=ENCODER)
        counting(model.engine, asr_counts)
        translator = None
        if name in ("cascade-llama", "together"):
            from funasr_nano.pipeline.translators import load_translator

            translator = load_translator(paths[f"translator-{quant}"], n_threads=threads)
            counting(translator.engine, mt_counts)
        elif name == "cascade-hf":
            from funasr_nano.pipeline.translators import load_translator

            translator = load_translator(paths["translator"])
            inner = translator.tokens
            translator.tokens = lambda text, options, **kw: mt_counts.append(len(r := inner(text, options, **kw))) or r
        forced = ForcedTranslator(translator) if translator is not None else None
        model.transcribe(clip, options=fixed)  # warm-up
        if name in ("transcribe", "together"):
            best = min(_timed(lambda: model.transcribe(clip, options=fixed)) for _ in range(3))
            rows["transcribe_5s"] = dict(total_s=best)
            forced24 = dataclasses.replace(fixed, max_new_tokens=EN_TOKENS, min_new_tokens=EN_TOKENS)
            rows["transcribe24_5s"] = dict(total_s=min(_timed(lambda: model.transcribe(clip, options=forced24))
                                                       for _ in range(3)))
        if name in ("unified", "together"):
            run_stream(model, audio[1], unified)  # warm-up
            rows.update({f"unified_{n}": run_stream(model, audio[n], unified) for n in SENTENCES})
        if forced is not None:
            run_stream(model, audio[1], cascade, forced)  # warm-up
            prefix = "cascade" if name != "together" else "cascade_llama"
            overlap = dataclasses.replace(cascade, overlap=True)
            rows.update({f"{prefix}_{n}": run_stream(model, audio[n], cascade, forced) for n in SENTENCES})
            rows.update({f"{prefix}_overlap_{n}": run_stream(model, audio[n], overlap, forced) for n in SENTENCES})
            if name == "cascade-llama":
                from funasr_nano.pipeline.translators import load_translator

                one = ForcedTranslator(load_translator(paths[f"translator-{quant}"], n_threads=1))
                run_stream(model, audio[1], overlap, one)  # warm-up
                rows.update({f"cascade_overlap1_{n}": run_stream(model, audio[n], overlap, one) for n in SENTENCES})
        if name == "together":
            rows["gguf_bytes"] = os.path.getsize(speech_gguf(paths, quant)) + os.path.getsize(paths[f"translator-{quant}"])
    return dict(worker=name, quant=quant if name != "official" else "fp32", rows=rows, peak_rss_mb=peak_rss_mb(),
                asr_tokens=sorted(set(asr_counts)), mt_tokens=sorted(set(mt_counts)))


def profile(quant: str, paths: dict, clip: str, threads: int) -> dict:
    """Seconds of each stage of one 5 s sentence (best of 3): VAD over the 6 s of audio, the int8 encoder,
    the prompt prefill (``max_new_tokens=1``) and 16 / 24 forced tokens, on the base weights and with each
    GGUF LoRA (f32 r=16, f16 r=16, f32 r=4) on one engine."""
    import numpy as np

    from funasr_nano import DecodingOptions, load_model
    from funasr_nano.audio.vad import VadSegmenter
    from funasr_nano.engines.llamacpp import LlamaCppEngine
    from funasr_nano.options import TranslationOptions

    model = load_model(paths[f"speech-{quant}"], n_threads=threads, encoder_precision=ENCODER)
    family = model.family
    engine = LlamaCppEngine(speech_gguf(paths, quant), family.stop_token_ids, n_threads=threads,
                            lora_adapters={"f32-r16": paths["lora"], "f16-r16": paths["lora-f16"],
                                           "f32-r4": paths["lora-r4"]})
    audio = sentences_audio(clip, 1)

    def vad():
        segmenter = VadSegmenter(TranslationOptions().vad_options)
        return segmenter.push(audio) + segmenter.finish()

    chunk = vad()[0]
    rows = {"vad_s": min(_timed(vad) for _ in range(3)),
            "encoder_s": min(_timed(lambda: family.audio_embeddings(chunk.samples)) for _ in range(3))}
    embeddings = family.audio_embeddings(chunk.samples)
    prompts = {"transcribe": family.transcription_prompt(None, (), True),
               "translate": family.task_prompt("translate")}
    for adapter in (None, "f32-r16", "f16-r16", "f32-r4"):
        for task, instruction in prompts.items():
            if adapter is not None and task == "transcribe":
                continue
            row = family.llm_input(instruction, embeddings, adapter=adapter)
            times = {}
            for n in (1, ASR_TOKENS, EN_TOKENS):
                options = DecodingOptions(max_new_tokens=n, min_new_tokens=n, repetition_guard=False)
                engine.generate([row], options)  # warm-up (and adapter switch)
                times[n] = min(_timed(lambda: engine.generate([row], options)) for _ in range(3))
            per_token = (times[EN_TOKENS] - times[1]) / (EN_TOKENS - 1)
            rows[f"{task}_{adapter or 'base'}"] = dict(prompt_positions=row.length, prefill_s=round(times[1], 4),
                                                      tokens16_s=round(times[ASR_TOKENS], 4),
                                                      tokens24_s=round(times[EN_TOKENS], 4),
                                                      per_token_ms=round(per_token * 1000, 2))
    engine.close()
    return rows


def speech_gguf(paths: dict, quant: str) -> str:
    """The speech model's LLM file in its GGUF folder (the light runtime's model has no torch checkpoint)."""
    return os.path.join(paths[f"speech-{quant}"], f"llm-{quant}.gguf")


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main(args) -> None:
    out = pathlib.Path(args.out)
    paths = ensure_models(out)
    clip = str(make_clips(out, [5])[5])
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.quant, paths, clip, args.threads)), flush=True)
        return
    if args.batch:  # a group of workers, one fresh process each, in one exclusive hold of the lock
        for item in args.batch.split(","):
            name, quant = item.split(":")
            print(_run_worker(name, quant, out, args.threads), flush=True)
        return
    plan = [(name, quant) for name in args.workers.split(",")
            for quant in (QUANTS if name != "official" else ("fp32",))]
    groups, current, seconds = [], [], 0
    for name, quant in plan:  # holds of at most HOLD_SECONDS (estimated), so that each stays short
        if current and seconds + ESTIMATED_SECONDS[name] > HOLD_SECONDS:
            groups.append(current)
            current, seconds = [], 0
        current.append((name, quant))
        seconds += ESTIMATED_SECONDS[name]
    groups.append(current)
    results = []
    for group in groups:
        command = [sys.executable, __file__.replace("translate_full.py", "bench_translate.py"), "--size", "full",
                   "--batch", ",".join(f"{n}:{q}" for n, q in group), "--out", str(out), "--threads", str(args.threads)]
        if args.lock:
            command = ["flock", "-x", args.lock] + command
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        for line in lines:
            results.append(json.loads(line[len("RESULT "):]))
            print(json.dumps(results[-1]), flush=True)
        if len(lines) != len(group):
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"a worker of {group} failed")
    report(results)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(dict(cpu=cpu_info(), results=results), indent=1))


def _run_worker(name: str, quant: str, out: pathlib.Path, threads: int) -> str:
    """The RESULT line of one worker, run in a fresh process."""
    command = [sys.executable, __file__.replace("translate_full.py", "bench_translate.py"), "--size", "full",
               "--worker", name, "--quant", quant, "--out", str(out), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        print(done.stderr[-3000:], file=sys.stderr)
        return f"FAILED {name} {quant}"
    return line


def report(results: list[dict]) -> None:
    print(f"\nCPU: {cpu_info()}")
    print("| worker | mode | type | sentences | first English sentence s | total s | RTF | peak RSS MB | tokens ASR / MT |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["worker"] == "profile":
            print(f"profile {r['quant']}: " + json.dumps(r["rows"]))
            continue
        for key, row in r["rows"].items():
            if not isinstance(row, dict):
                continue
            mode, _, count = key.rpartition("_")
            n = int(count) if count.isdigit() else 1
            audio_s = 5.0 if mode == "transcribe" or not count.isdigit() else 6.0 * n
            first = f"{row['first_s']:.2f}" if row.get("first_s") is not None else "-"
            print(f"| {r['worker']} | {mode or key} | {r['quant']} | {n} | {first} | {row['total_s']:.2f} | "
                  f"{row['total_s'] / audio_s:.3f} | {r['peak_rss_mb']:.0f} | {r['asr_tokens']} / {r['mt_tokens']} |")
    by = {(r["worker"], r["quant"]): r["rows"] for r in results}
    official = by.get(("official", "fp32"), {}).get("cascade_1")
    for quant in QUANTS:
        plain = by.get(("transcribe", quant), {}).get("transcribe_5s")
        if plain is None:
            continue
        base = plain["total_s"]
        lines = [f"{quant}: plain transcription of 5 s: {base:.2f} s"]
        for worker_name, key, goal in (("unified", "unified_1", 1.15), ("cascade-llama", "cascade_1", 1.6),
                                       ("cascade-llama", "cascade_overlap_1", 1.6), ("cascade-hf", "cascade_1", 1.6)):
            row = by.get((worker_name, quant), {}).get(key)
            if row and row.get("first_s"):
                line = f"{worker_name} {key} first sentence {row['first_s']:.2f} s = {row['first_s'] / base:.2f}x (goal <= {goal}x)"
                if official:
                    line += f", {official['first_s'] / row['first_s']:.1f}x faster than official (goal >= 6x)"
                lines.append(line)
        together = next((r for r in results if r["worker"] == "together" and r["quant"] == quant), None)
        if together:
            limit = together["rows"]["gguf_bytes"] / 2**20 + 600
            lines.append(f"together: peak RSS {together['peak_rss_mb']:.0f} MB (goal <= GGUF sizes + 600 = {limit:.0f} MB)")
        print("; ".join(lines))
