import threading

import pytest

from funasr_nano import DecodingOptions, UnsupportedLanguageError
from funasr_nano.models.fun_asr_nano.prompt import postprocess_text
from funasr_nano.pipeline.decoding import cut_repetition, repeated_tail


def test_repetition_detection():
    options = DecodingOptions()
    assert repeated_tail([5] * 24, options) == (1, 24)
    assert repeated_tail([5] * 23, options) is None  # too few tokens
    assert repeated_tail([1, 2, 3] + [7, 8] * 12, options) == (2, 12)
    assert repeated_tail(list(range(10)) * 3, options) is None  # 3 repeats < 4
    assert repeated_tail(list(range(10)) * 4, options) == (10, 4)
    assert repeated_tail(list(range(100)), options) is None


def test_cut_keeps_one_copy():
    options = DecodingOptions()
    assert cut_repetition([1, 2, 3] + [7, 8] * 12, options) == [1, 2, 3, 7, 8]
    assert cut_repetition([1, 2, 3], options) == [1, 2, 3]


def test_guard_stops_a_looping_model(tiny_official, binhai):
    """A model whose next token depends only on the current one must fall into a cycle; the guard
    stops it well before max_new_tokens and keeps one copy of the loop."""
    import torch

    from funasr_nano import load_model

    model = load_model(tiny_official)
    with torch.no_grad():
        for layer in model.family.model.model.language_model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    free = model.transcribe(binhai, options=DecodingOptions(max_new_tokens=200, repetition_guard=False))
    guarded = model.transcribe(binhai, options=DecodingOptions(max_new_tokens=200))
    assert len(free.tokens) == 200 and repeated_tail(list(free.tokens), DecodingOptions()) is not None
    assert len(guarded.tokens) < len(free.tokens)
    assert list(free.tokens[: len(guarded.tokens)]) == list(guarded.tokens)
    assert repeated_tail(list(guarded.tokens), DecodingOptions()) is None


def test_beam_search_is_transformers_beam_search_and_finds_a_likelier_text(model, binhai):
    """num_beams=3 gives what transformers' own beam search gives on the same prompt embeddings, a different
    text from greedy search here, and one the LLM scores as more likely (sum of token log-probabilities)."""
    import torch
    from transformers import GenerationConfig

    from funasr_nano.audio.io import load_audio

    greedy = model.transcribe(binhai, options=DecodingOptions(max_new_tokens=8, repetition_guard=False))
    beam = model.transcribe(binhai, options=DecodingOptions(max_new_tokens=8, num_beams=3, repetition_guard=False))
    family, engine = model.family, model.engine
    row = family.llm_input(family.transcription_prompt(None, (), True), family.audio_embeddings(load_audio(binhai)))
    prompt = engine.embed(row)[None]
    config = GenerationConfig(max_new_tokens=8, num_beams=3, do_sample=False, eos_token_id=list(engine.stop_token_ids),
                              pad_token_id=engine.pad_token_id)
    with torch.no_grad():
        reference = engine.model.generate(inputs_embeds=prompt, attention_mask=torch.ones(prompt.shape[:2], dtype=torch.long),
                                          generation_config=config)[0].tolist()

    def log_probability(tokens):
        with torch.no_grad():
            embeds = torch.cat([prompt, engine.model.get_input_embeddings()(torch.tensor([tokens]))], dim=1)
            scores = engine.model(inputs_embeds=embeds).logits[0].log_softmax(-1)
        start = prompt.shape[1] - 1
        return sum(scores[start + i, token].item() for i, token in enumerate(tokens))

    assert list(beam.tokens) == reference
    assert list(beam.tokens) != list(greedy.tokens)
    assert log_probability(list(beam.tokens)) > log_probability(list(greedy.tokens))


def test_postprocess():
    assert postprocess_text("你好/sil世界  \n 再见") == "你好 世界 再见"


def test_options_are_validated():
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodingOptions(max_new_tokens=0)
    with pytest.raises(ValueError, match="num_beams"):
        DecodingOptions(num_beams=0)


def test_result_fields(model, binhai):
    result = model.transcribe(binhai, language="zh", max_new_tokens=6)
    assert result.language == "zh" and result.duration == pytest.approx(6.0)
    assert len(result.segments) == 1 and result.segments[0].text == result.text
    assert result.to_dict()["tokens"] == list(result.tokens) or tuple(result.to_dict()["tokens"]) == result.tokens
    with pytest.raises(UnsupportedLanguageError):
        model.transcribe(binhai, language="klingon")


def test_concurrent_calls_match_sequential(model, binhai):
    cases = [dict(hotwords=["滨海"]), dict(language="en"), dict(itn=False), dict()]
    expected = [model.transcribe(binhai, max_new_tokens=12, **case).tokens for case in cases]
    results = [None] * len(cases)

    def work(i):
        results[i] = model.transcribe(binhai, max_new_tokens=12, **cases[i]).tokens

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected
