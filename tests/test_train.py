"""Training: a tiny model memorizes synthetic speech; resumed runs continue exactly; the YAML config
and the CLI run the same trainer; the loss covers only the assistant's tokens."""

from __future__ import annotations

import json

import jiwer
import pytest
import torch
import yaml
from safetensors import safe_open

from funasr_nano import load_model
from funasr_nano.cli.main import main
from funasr_nano.training.data import read_manifest
from funasr_nano.errors import TrainingError
from funasr_nano.testing.tiny import TinyConfig, write_tiny_checkpoint
from funasr_nano.training.batching import IGNORE_INDEX, BatchSampler
from funasr_nano.training.trainer import TrainConfig, Trainer

from .training_data import make_corpus, one_thread  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 utterances with transcripts and English translations."""
    return make_corpus(tmp_path_factory.mktemp("corpus"), 20, translations=True)


@pytest.fixture(scope="module")
def transcripts(corpus, tmp_path_factory):
    path = corpus.parent / "transcribe.jsonl"
    path.write_text("".join(line for line in corpus.read_text(encoding="utf-8").splitlines(keepends=True)
                            if '"transcribe"' in line), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("base")), "official", seed=3)


def test_tiny_model_memorizes_twenty_utterances(base, transcripts, tmp_path):
    config = TrainConfig(model=base, train_manifests=(str(transcripts),), output_dir=str(tmp_path / "run"),
                         train_encoder=True, train_adaptor=True, train_llm=True, batch_size=10, max_steps=120,
                         learning_rate=3e-3, warmup_steps=10, log_every=0)
    result = Trainer(config).train()
    losses = result.losses
    assert len(losses) == 120
    assert losses[-1] <= 0.1 * losses[0], f"loss fell only from {losses[0]:.3f} to {losses[-1]:.3f}"

    model = load_model(result.model_dir)  # the exported checkpoint, through the public API
    assert model.tasks == ("transcribe",) and not model.supports_task("translate")
    examples = read_manifest(transcripts)
    references = [e.target for e in examples]
    hypotheses = [model.transcribe(e.audio, max_new_tokens=40).text for e in examples]
    assert jiwer.cer(references, hypotheses) == 0.0, list(zip(references, hypotheses))


def _resume_config(base, corpus, output_dir, **overrides):
    values = dict(model=base, train_manifests=(str(corpus),), output_dir=str(output_dir), train_adaptor=True,
                  lora={"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj", "up_proj"]},
                  task_weights={"transcribe": 0.6, "translate": 0.3, "text_translate": 0.1},
                  batch_size=4, bucket_batches=3, grad_accum_steps=2, max_steps=8, learning_rate=2e-3, warmup_steps=2,
                  save_every=4, log_every=0, seed=7)
    values.update(overrides)
    return TrainConfig(**values)


def test_resumed_run_continues_exactly(base, corpus, tmp_path, caplog):
    uninterrupted = Trainer(_resume_config(base, corpus, tmp_path / "a")).train(export=False).losses

    first = Trainer(_resume_config(base, corpus, tmp_path / "b"))
    first.train(until_step=4)
    trainable = {n for n, p in first.module.named_parameters() if p.requires_grad}
    del first
    # accelerate's save_state folder (only the trainable tensors) and our state.json
    checkpoint = tmp_path / "b" / "checkpoints" / "step-000004"
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl",
            "state.json"} <= {p.name for p in checkpoint.iterdir()}
    with safe_open(checkpoint / "model.safetensors", framework="pt") as f:
        assert set(f.keys()) == trainable
    # no DataLoader workers this time: the batches, and so the run, do not depend on them
    resumed = Trainer(_resume_config(base, corpus, tmp_path / "b", num_workers=0))
    with caplog.at_level("WARNING", logger="funasr_nano.training.trainer"):
        assert resumed.resume() == 4  # the newest checkpoint, step-000004
    assert "changed settings" not in caplog.text  # same config (but the speed settings): no warning
    losses = resumed.train(export=False).losses

    assert len(uninterrupted) == len(losses) == 8
    assert len(set(round(x, 4) for x in uninterrupted[4:])) == 4, "the loss should still be changing"
    for step, (a, b) in enumerate(zip(uninterrupted, losses), start=1):
        assert abs(a - b) <= 1e-6, f"step {step}: uninterrupted {a!r}, resumed {b!r}"


def test_loss_covers_only_the_assistant_tokens(base, corpus, tmp_path):
    trainer = Trainer(_resume_config(base, corpus, tmp_path, max_steps=1))
    tokenizer = trainer.loaded.tokenizer
    examples = [e for e in trainer.examples if e.task in ("transcribe", "text_translate")][:1]
    examples += [e for e in trainer.examples if e.task == "text_translate"][:1]
    batch = trainer.collator(examples)
    for row, example in enumerate(examples):
        labelled = batch.labels[row][batch.labels[row] != IGNORE_INDEX].tolist()
        assert tokenizer.decode(labelled) == example.target + "<|im_end|>"
        # the audio slot sits inside the prompt, and only rows with audio have one
        assert int(batch.audio_mask[row].sum()) == (0 if example.audio is None else int(batch.num_audio[0]))
        text = tokenizer.decode(batch.input_ids[row][batch.attention_mask[row].bool() & ~batch.audio_mask[row]])
        assert example.instruction in text and text.endswith("<|im_start|>assistant\n" + example.target + "<|im_end|>")


def test_task_mix_and_length_buckets():
    tasks = ["transcribe"] * 60 + ["translate"] * 30 + ["text_translate"] * 10
    lengths = list(range(100))
    sampler = BatchSampler(tasks, lengths, batch_size=5, bucket_batches=4, seed=0,
                           weights={"transcribe": 1.0, "text_translate": 1.0})
    drawn = [i for position in range(sampler.batches_per_epoch * 3) for i in sampler.batch(position)]
    share = sum(tasks[i] == "text_translate" for i in drawn) / len(drawn)
    assert 0.4 < share < 0.6  # weights 1:1, although the data is 60:10
    assert not any(tasks[i] == "translate" for i in drawn)  # no weight: not trained
    # within a batch, lengths come from one sorted window of 20 draws
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in map(sampler.batch, range(20))]
    assert sum(spread) / len(spread) < 50
    # the same position always gives the same batch, from a fresh sampler too
    again = BatchSampler(tasks, lengths, batch_size=5, bucket_batches=4, seed=0,
                         weights={"transcribe": 1.0, "text_translate": 1.0})
    assert [again.batch(p) for p in (37, 3, 12)] == [sampler.batch(p) for p in (37, 3, 12)]


def test_config_file_and_cli(base, transcripts, tmp_path, capsys):
    config = {"model": base, "train_manifests": [str(transcripts)], "output_dir": "out", "max_steps": 2,
              "batch_size": 4, "dev_manifest": str(transcripts), "eval_max_examples": 2, "eval_max_new_tokens": 4,
              "lora": {"r": 2, "lora_alpha": 4, "lora_dropout": 0.0}, "warmup_steps": 1}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert TrainConfig.from_yaml(path).output_dir == str(tmp_path / "out")  # relative to the YAML file
    assert main(["train", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "model: " in printed and "LoRA adapter: " in printed
    model = load_model(tmp_path / "out" / "model", lora=tmp_path / "out" / "lora")
    assert model.transcribe(read_manifest(transcripts)[0].audio, max_new_tokens=4).duration > 0

    path.write_text(yaml.safe_dump({**config, "learning_rat": 1e-3}), encoding="utf-8")
    with pytest.raises(TrainingError, match="learning_rat"):
        TrainConfig.from_yaml(path)
    with pytest.raises(TrainingError, match="nothing to train"):
        TrainConfig(model=base, train_manifests=(str(transcripts),), output_dir="x", train_adaptor=False)


def test_evaluation_reports_loss_cer_and_bleu(base, corpus, tmp_path):
    config = _resume_config(base, corpus, tmp_path, max_steps=1, dev_manifest=str(corpus), eval_max_examples=4,
                            eval_max_new_tokens=3)
    trainer = Trainer(config)
    result = trainer.evaluate()
    assert result.examples == 4 and result.loss > 0
    assert result.cer is not None and result.cer > 0  # an untrained model gets the transcripts wrong
    assert set(result.bleu) == {"translate"}
    json.dumps(result.__dict__)


def test_bf16_autocast(base, transcripts, tmp_path):
    values = dict(model=base, train_manifests=(str(transcripts),), output_dir=str(tmp_path), batch_size=4,
                  max_steps=2, warmup_steps=1, log_every=0)
    fp32 = Trainer(TrainConfig(**values)).train_step().loss
    bf16_trainer = Trainer(TrainConfig(**values, precision="bf16"))
    bf16 = bf16_trainer.train_step().loss
    assert bf16 != fp32 and abs(bf16 - fp32) < 0.05 * fp32  # bf16 arithmetic, same result roughly
    assert all(p.dtype == torch.float32 for p in bf16_trainer.model.parameters())  # fp32 master weights


def test_export_records_the_trained_tasks(base, corpus, tmp_path):
    """A model trained on the task mix says so in its config; a task with weight 0 is not claimed."""
    result = Trainer(_resume_config(base, corpus, tmp_path / "mix", max_steps=1, save_every=0, lora=None)).train()
    assert load_model(result.model_dir).tasks == ("transcribe", "translate", "text_translate")
    weights = {"transcribe": 1.0, "translate": 0.0, "text_translate": 0.0}
    result = Trainer(_resume_config(base, corpus, tmp_path / "asr", max_steps=1, save_every=0, lora=None,
                                    task_weights=weights)).train()
    model = load_model(result.model_dir)
    assert model.tasks == ("transcribe",) and not model.supports_task("translate")
    # with LoRA the base stays as it was; the adapter (loaded for every task) brings the new tasks
    result = Trainer(_resume_config(base, corpus, tmp_path / "lora", max_steps=1, save_every=0)).train()
    assert load_model(result.model_dir).tasks == ("transcribe",)
    assert load_model(result.model_dir, lora=result.lora_dir).supports_task("translate")


def test_ctc_loss_uses_the_transcript_and_only_audio_rows(base, corpus, tmp_path):
    # every adaptor frame enters the LLM (enough positions for the transcript); adaptor only: the frozen
    # encoder runs in eval mode (no dropout), so both losses are deterministic
    base = write_tiny_checkpoint(str(tmp_path / "all-frames"), "official", TinyConfig(use_low_frame_rate=False), seed=3)
    plain = Trainer(_resume_config(base, corpus, tmp_path / "a", lora=None, max_steps=1))
    ctc = Trainer(_resume_config(base, corpus, tmp_path / "b", lora=None, max_steps=1, ctc_weight=0.5))
    tokenizer = ctc.loaded.tokenizer
    spoken = [e for e in ctc.examples if e.task == "transcribe"][:2] + [e for e in ctc.examples if e.task == "translate"][:2]
    batch = ctc.collator(spoken)
    for row, example in enumerate(spoken):  # a translation's transcript is its source text
        ids = batch.transcripts[row, : int(batch.transcript_lengths[row])].tolist()
        assert tokenizer.decode(ids) == (example.target if example.task == "transcribe" else example.source_text)
    with torch.no_grad():
        with_ctc, count = ctc.module(batch)
        without, count_plain = plain.module(batch)
    assert bool((batch.transcript_lengths <= batch.num_audio).all())
    assert torch.isfinite(with_ctc) and with_ctc > without + 0.1 and int(count) == int(count_plain)
    text_only = ctc.collator([e for e in ctc.examples if e.task == "text_translate"][:2])
    with torch.no_grad():
        assert torch.equal(ctc.module(text_only)[0], plain.module(text_only)[0])
    with pytest.raises(TrainingError, match="ctc_weight"):
        _resume_config(base, corpus, tmp_path / "c", ctc_weight=-1.0)
