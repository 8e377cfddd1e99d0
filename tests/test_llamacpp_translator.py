"""Cascade translators on llama.cpp: a chat LLM exported by ``funasr-nano export gguf`` (tiny Qwen3 and Llama
chat models) gives the transformers translator's prompt and tokens, streams and cancels; cascade translation
with a llama.cpp speech model and a GGUF translator gives the events of the transformers pair with equal
weights; a GGUF without a chat template and a folder that is neither a speech model nor a causal LLM are one
clear error each."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from funasr_nano import DecodingOptions, TranslationOptions, TranslatorError, load_model
from funasr_nano.cli.main import main
from funasr_nano.export.gguf_folder import export_gguf
from funasr_nano.pipeline.llamacpp_translator import LlamaCppChatTranslator
from funasr_nano.pipeline.translate import SentenceTranslated, TranslationFinished
from funasr_nano.pipeline.translators import ChatLMTranslator, load_translator
from funasr_nano.testing.tiny_chat import write_tiny_chat_llm

from .training_data import one_thread  # noqa: F401 - autouse fixture

OPTIONS = TranslationOptions(mode="cascade", decoding=DecodingOptions(max_new_tokens=20))
TEXTS = ("今天天气很好。", "欢迎来到滨海新区，10点见。", "Hello, how are you?")


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def pair(request, tmp_path_factory):
    """``(transformers translator, llama.cpp translator)`` of one tiny chat LLM (f32 GGUF, via the CLI)."""
    folder = tmp_path_factory.mktemp(f"chat-{request.param}")
    source = write_tiny_chat_llm(folder / "llm", request.param, seed=1)
    assert main(["export", "gguf", source, str(folder / "gguf"), "--type", "f32"]) == 0
    translator = load_translator(folder / "gguf", n_threads=1)  # the folder of one GGUF file
    assert isinstance(translator, LlamaCppChatTranslator)
    return ChatLMTranslator(source), translator


def test_gguf_translator_gives_the_transformers_tokens(pair):
    reference, gguf = pair
    for text in TEXTS:
        assert gguf.prompt(text, OPTIONS) == reference.prompt(text, OPTIONS)
        assert gguf.prompt_tokens(text, OPTIONS) == reference.tokenizer(
            reference.prompt(text, OPTIONS), add_special_tokens=False)["input_ids"]
        expected = reference.tokens(text, OPTIONS)
        assert len(expected) > 5
        assert gguf.tokens(text, OPTIONS) == expected
        assert gguf.translate(text, OPTIONS) == reference.translate(text, OPTIONS)


def test_the_gguf_chat_template_is_used_with_thinking_off(pair):
    _, gguf = pair
    prompt = gguf.prompt(TEXTS[0], OPTIONS)
    if gguf.engine.token_text(gguf.engine.eos_token_id) == "<|im_end|>":  # Qwen3: an empty think block
        assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    else:  # Llama 3: BOS and header turns, <|eot_id|> ends the turn (and stops decoding)
        assert prompt.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
        assert prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        assert gguf.engine.eos_token_id in gguf.engine.stop_token_ids


def test_sampling_streaming_and_cancellation(pair):
    _, gguf = pair
    greedy = gguf.tokens(TEXTS[0], OPTIONS)
    hot = dataclasses.replace(OPTIONS, decoding=dataclasses.replace(OPTIONS.decoding, temperature=5.0))
    sampled = [gguf.tokens(TEXTS[0], hot) for _ in range(3)]
    assert all(0 < len(s) <= OPTIONS.decoding.max_new_tokens for s in sampled) and any(s != greedy for s in sampled)
    # streaming: the growing translation, ending with the whole one
    items = list(gguf.stream(TEXTS[1], OPTIONS))
    assert len(items) > 3 and items[-1] == gguf.translate(TEXTS[1], OPTIONS)
    stream = gguf.stream(TEXTS[1], OPTIONS)
    assert next(stream) == items[0]
    stream.close()  # cancels the generation; the engine serves the next call
    assert gguf.translate(TEXTS[1], OPTIONS) == items[-1]
    # cancel within one token, from the token callback (as another thread would)
    cancel = threading.Event()

    def on_token(row, tokens):
        if len(tokens) == 3:
            cancel.set()
        return False

    assert gguf.tokens(TEXTS[1], OPTIONS, on_token=on_token, cancel=cancel) == gguf.tokens(TEXTS[1], OPTIONS)[:3]
    assert gguf.translate(TEXTS[1], OPTIONS, cancel=cancel) == ""


def test_cascade_on_llama_cpp_gives_the_transformers_events(tmp_path_factory):
    """The demo speech model (transformers / its f32 GGUF) with a tiny Qwen3 translator (transformers / GGUF)."""
    folder = tmp_path_factory.mktemp("cascade")
    source = write_tiny_chat_llm(folder / "llm", "qwen3", seed=2)
    assert main(["export", "gguf", source, str(folder / "translator"), "--type", "f32"]) == 0
    export_gguf(None, folder / "speech", "f32")
    speech_gguf = load_model(folder / "speech", n_threads=1)
    clip = "examples/demo_zh.wav"

    def events(model, translator):
        out = []
        for event in model.translate_stream(clip, OPTIONS, translator=translator):
            if isinstance(event, SentenceTranslated):
                event = dataclasses.replace(event, latency_s=0.0)
            if isinstance(event, TranslationFinished):
                event = dataclasses.replace(event.translation, timings=None)
            out.append(event)
        return out

    expected = events(load_model(engine="transformers"), ChatLMTranslator(source))
    translated = [e for e in expected if isinstance(e, SentenceTranslated)]
    assert translated and all(e.sentence.text for e in translated)
    got = events(speech_gguf, str(next((folder / "translator").glob("*.gguf"))))
    speech_gguf.close()
    assert got == expected


def test_gguf_without_a_chat_template_is_a_clear_error(tmp_path):
    from transformers import AutoTokenizer

    source = write_tiny_chat_llm(tmp_path / "llm", "qwen3", seed=3)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.chat_template = None
    (tmp_path / "llm" / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer.save_pretrained(source)
    assert main(["export", "gguf", source, str(tmp_path / "gguf"), "--type", "f32"]) == 0
    with pytest.raises(TranslatorError, match=r"llm-f32\.gguf: the GGUF has no chat template"):
        load_translator(tmp_path / "gguf" / "llm-f32.gguf")


def test_export_of_a_folder_that_fits_neither_is_one_line(tmp_path, caplog):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (bert / "model.safetensors").write_bytes(b"")
    assert main(["export", "gguf", str(bert), str(tmp_path / "out")]) == 2
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "a 'bert' model is neither a speech model (Fun-ASR-Nano, Qwen3-ASR) nor a transformers causal LLM" \
        in messages[0] and str(bert) in messages[0]
