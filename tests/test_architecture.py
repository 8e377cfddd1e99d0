"""The seams of the architecture: options resolved once, the lazy (segments, info) shape, LoRA adapters
per batch row under concurrency, cancellation of a streamed generation, the chat format."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
import torch

from funasr_nano import DecodingOptions, InvalidOptionError, TranscribeOptions, UnsupportedLanguageError, load_model
from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
from funasr_nano.models.lora import LoraSettings, add_lora, lora_layers, save_adapter
from funasr_nano.options import resolve
from funasr_nano.pipeline.decoding import TokenStream
from funasr_nano.testing.tiny import write_tiny_checkpoint

OPTIONS = DecodingOptions(max_new_tokens=16, repetition_guard=False)


@pytest.fixture(scope="module")
def adapter_model(tmp_path_factory):
    """A tiny base and a model with a random LoRA adapter for the translate task only."""
    folder = tmp_path_factory.mktemp("adapters")
    base = write_tiny_checkpoint(str(folder / "base"), "official", seed=7)
    model = load_checkpoint(base).model
    add_lora(model, LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, layer in lora_layers(model.model.language_model):
            for weight in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                weight.copy_(0.3 * torch.randn(weight.shape, generator=generator))
    adapter = save_adapter(model, str(folder / "adapter"))
    return load_model(base, lora={"translate": adapter})


def test_options_resolve_once():
    options = TranscribeOptions(hotwords="滨海新区")
    assert options.hotwords == ("滨海新区",)  # a string is one hotword, not four characters
    from funasr_nano.options import resolve

    resolved = resolve(TranscribeOptions, DecodingOptions(max_new_tokens=5), {"language": "zh", "num_beams": 2})
    assert resolved.language == "zh" and resolved.decoding.max_new_tokens == 5 and resolved.decoding.num_beams == 2
    with pytest.raises(TypeError, match="unexpected keyword argument: langauge"):
        resolve(TranscribeOptions, None, {"langauge": "zh"})
    for bad in ({"language": 5}, {"max_duration": float("inf")}, {"batch_size": 0}, {"temperature": -1.0},
                {"hotwords": [""]}):
        with pytest.raises(InvalidOptionError):
            resolve(TranscribeOptions, None, bad)


def test_hotword_string_is_one_hotword(model, binhai):
    as_string = model.transcribe(binhai, hotwords="滨海新区", max_new_tokens=6)
    as_list = model.transcribe(binhai, hotwords=["滨海新区"], max_new_tokens=6)
    assert as_string.tokens == as_list.tokens
    assert resolve(TranscribeOptions, None, {"hotwords": "滨海新区"}).hotwords == ("滨海新区",)
    assert "[滨海新区]" in model.family.transcription_prompt(None, ("滨海新区",), True)
    # four one-character hotwords are another prompt: the string was not taken character by character
    assert "[滨, 海, 新, 区]" in model.family.transcription_prompt(None, tuple("滨海新区"), True)


def test_transcribe_segments_checks_arguments_at_the_call(model, binhai):
    with pytest.raises(InvalidOptionError, match="max_duration"):
        model.transcribe_segments(binhai, max_duration=400)  # beyond the encoder's positional table
    with pytest.raises(UnsupportedLanguageError):
        model.transcribe_segments(binhai, language="klingon")
    with pytest.raises(TypeError, match="hotword"):
        model.transcribe_segments(binhai, hotword=["x"])
    segments, info = model.transcribe_segments(binhai, max_new_tokens=4)
    assert info.vad is False and info.duration == pytest.approx(6.0, abs=0.05) and info.language is None
    assert info.options.decoding.max_new_tokens == 4
    assert [s.tokens for s in segments] == [model.transcribe(binhai, max_new_tokens=4).tokens]
    _, forced = model.transcribe_segments(binhai, vad=True)
    assert forced.vad is True and forced.duration == pytest.approx(6.0, abs=0.05)


def test_context_window_is_checked_before_any_work(model, binhai):
    from funasr_nano.engines.transformers import TransformersEngine

    small = TransformersEngine(model.family.llm, model.family.stop_token_ids, max_positions=64)
    from funasr_nano.pipeline.speech_model import SpeechModel

    narrow = SpeechModel(model.family, small)
    with pytest.raises(InvalidOptionError, match="context window of 64"):
        narrow.transcribe_segments(binhai)


def test_concurrent_calls_with_different_adapters_equal_serial_calls(adapter_model, binhai):
    """8 threads mixing transcription (base weights) and the adapter-backed translate task on one model."""
    calls = [("transcribe", i % 3) for i in range(4)] + [("translate", i % 3) for i in range(4)]
    from .conftest import shared_file

    clips = {0: str(binhai), 1: str(shared_file("audio/zh_mid.wav")), 2: str(shared_file("audio/zh_welcome.wav"))}

    def call(task: str, clip: int) -> tuple[int, ...]:
        if task == "transcribe":
            return adapter_model.transcribe(clips[clip], options=OPTIONS).tokens
        return adapter_model.run("translate", clips[clip], options=OPTIONS).tokens

    serial = [call(*c) for c in calls]
    assert serial[0] != serial[4], "the adapter should change the output"
    barrier = threading.Barrier(len(calls))

    def threaded(c):
        barrier.wait()
        return call(*c)

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        parallel = list(pool.map(threaded, calls))
    assert parallel == serial


def test_mixed_adapter_batch_equals_rows_alone(adapter_model, binhai):
    from funasr_nano.audio.io import load_audio
    from funasr_nano.pipeline.decoding import generate

    family = adapter_model.family
    embeds = family.audio_embeddings(load_audio(binhai))
    rows = [family.llm_input(family.task_prompt("translate"), embeds, adapter=name)
            for name in ("translate", None, "translate")]
    together = generate(adapter_model.engine, rows, OPTIONS)
    alone = [generate(adapter_model.engine, [row], OPTIONS)[0] for row in rows]
    assert together == alone and together[0] != together[1]
    with pytest.raises(ValueError, match="no LoRA adapter named 'summarize'"):
        generate(adapter_model.engine, [family.llm_input("x", None, adapter="summarize")], OPTIONS)


def test_a_consumer_that_stops_cancels_generation(model, binhai):
    from funasr_nano.audio.io import load_audio

    family = model.family
    llm_input = family.llm_input(family.transcription_prompt(None, (), True),
                                 family.audio_embeddings(load_audio(binhai)))
    options = DecodingOptions(max_new_tokens=400, min_new_tokens=400, repetition_guard=False)
    stream = TokenStream(model.engine, llm_input, options)
    first = next(iter(stream))
    assert len(first) >= 1
    stream.close()  # the consumer is gone
    assert stream.generated < 50, f"generation went on for {stream.generated} tokens after the consumer left"
    full = TokenStream(model.engine, llm_input, DecodingOptions(max_new_tokens=60, min_new_tokens=60,
                                                                repetition_guard=False))
    assert len(list(full)[-1]) == 60  # not cancelled: runs to max_new_tokens


def test_chat_format_comes_from_the_tokenizer(model):
    chat = model.family.chat
    assert (chat.system_start, chat.system_end, chat.user_start, chat.end_of_turn) == (
        "<|im_start|>system\n", "<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>")
    assert chat.user_end == "<|im_end|>\n<|im_start|>assistant\n"

    class NoSystem:  # a template without a system role (Gemma's raises on one)
        chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                         "{% endif %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
                         "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
        all_special_tokens = ["<start_of_turn>", "<end_of_turn>"]

        def get_added_vocab(self):
            return {}

        def apply_chat_template(self, messages, chat_template, tokenize, add_generation_prompt):
            return model.tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=tokenize,
                                                       add_generation_prompt=add_generation_prompt)

    from funasr_nano.models.chat import ChatFormat

    gemma = ChatFormat.from_tokenizer(NoSystem())
    assert not gemma.has_system and gemma.end_of_turn == "<end_of_turn>"
    before, after = gemma.prompt_texts("hi", system="be brief")
    assert before == "<start_of_turn>user\nbe brief\n\nhi" and after == "<end_of_turn>\n<start_of_turn>model\n"


def test_encoder_precision(tiny_official, binhai):
    from funasr_nano.audio.io import load_audio

    wave = load_audio(binhai)
    reference = load_model(tiny_official).audio_embeddings(wave)
    scale = reference.abs().max().item()
    for precision, tolerance in (("bf16", 0.05), ("int8", 0.1)):
        model = load_model(tiny_official, encoder_precision=precision)
        embeddings = model.audio_embeddings(wave)
        assert embeddings.dtype == torch.float32 and embeddings.shape == reference.shape
        error = (embeddings - reference).abs().max().item()
        assert 0 < error <= tolerance * scale, (precision, error, scale)
    with pytest.raises(InvalidOptionError, match="encoder_precision"):
        load_model(tiny_official, encoder_precision="fp8")
