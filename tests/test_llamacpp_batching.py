"""The llama.cpp engine's prompt-prefix cache and continuous batching (tiny model, real recording): the
prefix cache on or off gives the same tokens on the parity cases and on mixed prompts in one context,
never serves one prefix's KV for another (token ids, LoRA adapter), a row that arrives while others
decode starts at the next step with its solo tokens and log-probabilities, and the KV cache is sized to what rows need."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from funasr_nano.engines.base import LLMInput
from funasr_nano.engines.llamacpp import KV_CELLS_MIN, LlamaCppEngine
from funasr_nano.models.fun_asr_nano.prompt import language_name, transcription_instruction
from funasr_nano.options import DecodingOptions

from .test_llamacpp import GREEDY, INSTRUCTIONS, MAX_NEW, Setup, all_frames, low_frame_rate, waveform  # noqa: F401

# mixed prompts: the parity cases plus other hotwords and languages
MIXED = INSTRUCTIONS + (
    transcription_instruction(hotwords=("海风",)),
    transcription_instruction(language=language_name("en")),
    transcription_instruction(language=language_name("zh"), hotwords=("滨海",)),
)


def uncached(setup: Setup, **kwargs) -> LlamaCppEngine:
    return LlamaCppEngine(setup.path, setup.stop, n_threads=1, prefix_cache=0, **kwargs)


@pytest.mark.parametrize("which", ["low_frame_rate", "all_frames"])
def test_prefix_cache_on_and_off_give_the_same_tokens(which, request):
    setup = request.getfixturevalue(which)
    inputs = [setup.llm_input(instruction) for instruction in INSTRUCTIONS]
    expected = [setup.transformers_greedy(item) for item in inputs]
    with uncached(setup) as off, LlamaCppEngine(setup.path, setup.stop, n_threads=1) as on:
        assert [off.generate([item], GREEDY)[0] for item in inputs] == expected
        assert off.prefix_hits == off.prefix_misses == 0
        assert [on.generate([item], GREEDY)[0] for item in inputs] == expected  # each prefix decoded once
        assert on.prefix_misses == len(inputs) and on.prefix_hits == 0
        assert on.generate(inputs, GREEDY) == expected  # one context, grown for four rows (cache dropped)
        assert on.prefix_misses == 2 * len(inputs) and on.kv_cells > KV_CELLS_MIN
        assert on.generate(inputs, GREEDY) == expected  # every prefix from the cache
        assert on.prefix_hits == len(inputs) and on.prefix_misses == 2 * len(inputs)


def test_mixed_prompts_in_one_context(low_frame_rate):
    """Hotwords and languages mixed in one call, several rows per prefix, rows of other lengths of
    audio; the cache holds fewer prefixes than the call has (evictions) in a small context."""
    setup = low_frame_rate
    audios = [setup.audio, setup.audio[:20], torch.flip(setup.audio, [0])]
    inputs = [setup.llm_input(MIXED[i % len(MIXED)], audios[i % len(audios)]) for i in range(2 * len(MIXED))]
    with uncached(setup) as off:
        expected = [off.generate([item], GREEDY)[0] for item in inputs]
    assert len({tuple(t) for t in expected}) > len(MIXED) // 2
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1) as on:
        assert on.generate(inputs, GREEDY) == expected
        assert on.prefix_hits >= len(MIXED) - on.n_seq_max
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1, n_seq_max=3, prefix_cache=2, n_ctx=512) as small:
        assert small.generate(inputs, GREEDY) == expected
        assert small.generate(inputs[::-1], GREEDY) == expected[::-1]


def test_the_cache_is_never_reused_for_another_prefix(low_frame_rate):
    """Two prefixes of the same length that differ in one token id: each row reads its own."""
    setup = low_frame_rate
    first = setup.llm_input(INSTRUCTIONS[1])  # hotwords
    prefix = list(first.parts[0])
    other = prefix[:-3] + [prefix[-4]] + prefix[-2:]  # the same length, one token changed
    assert len(other) == len(prefix) and other != prefix
    second = LLMInput((other, *first.parts[1:]))
    with uncached(setup) as off:
        expected = [off.generate([item], GREEDY)[0] for item in (first, second)]
    assert expected[0] != expected[1], "the changed token should change the output"
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1) as on:
        assert on.generate([first], GREEDY)[0] == expected[0]
        assert on.generate([second], GREEDY)[0] == expected[1]
        assert on.generate([second, first], GREEDY) == expected[::-1]


def test_kv_cache_is_sized_to_what_rows_need(low_frame_rate):
    setup = low_frame_rate
    item = setup.llm_input(INSTRUCTIONS[0])
    need = item.length + MAX_NEW
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1, n_seq_max=8) as engine:
        assert engine.n_ctx == engine.n_ctx_train == engine.max_positions == 40960  # the model's window
        assert engine.kv_cells == KV_CELLS_MIN
        expected = engine.generate([item], GREEDY)
        assert engine.kv_cells == KV_CELLS_MIN  # one row fits the smallest cache
        assert engine.generate([item] * 8, GREEDY) == expected * 8
        assert KV_CELLS_MIN < engine.kv_cells <= 2 * 8 * need  # grown for eight rows, not to n_ctx
        grown = engine.kv_cells
        assert engine.generate([item] * 3, GREEDY) == expected * 3
        assert engine.kv_cells == grown
        with pytest.raises(ValueError, match="context window"):  # checked before anything is allocated
            engine.generate([LLMInput((np.zeros(40960, dtype=np.int64).tolist(),))], GREEDY)
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1, n_ctx=100) as small, \
            pytest.raises(ValueError, match="n_ctx=100; create the engine with a larger n_ctx"):
        small.generate([item], GREEDY)


def test_a_row_that_arrives_mid_batch_starts_at_the_next_step(low_frame_rate):
    """A long row decodes; a second call comes in after its 5th token: the newcomer's first token is
    picked steps before the long row's last (measured in the engine's decoding steps), both rows have
    their solo tokens, and they shared llama_decode calls."""
    setup = low_frame_rate
    long_row, late_row = setup.llm_input(INSTRUCTIONS[0]), setup.llm_input(INSTRUCTIONS[2], setup.audio[:30])
    full = DecodingOptions(max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW, repetition_guard=False)
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1) as engine:
        solo_long = engine.generate([long_row], full)[0]
        solo_late = engine.generate([late_row], GREEDY)[0]
        assert len(solo_long) == MAX_NEW and len(solo_late) > 3
        assert engine.generate([long_row, late_row], full)[0] == solo_long  # the cache grows to hold both
        long_steps, late_steps, late = [], [], {}

        def submit_late():
            late["tokens"] = engine.generate([late_row], GREEDY,
                                             on_token=lambda row, tokens: late_steps.append(engine.steps) and False)[0]

        worker = threading.Thread(target=submit_late)

        def on_long_token(row, tokens):
            long_steps.append(engine.steps)
            if len(tokens) == 5:  # the late call arrives now, while this row decodes
                worker.start()
                deadline = time.monotonic() + 30
                while engine.waiting_rows == 0 and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert engine.waiting_rows == 1
            return False

        sizes_before = dict(engine.step_sizes)
        joined = engine.generate([long_row], full, on_token=on_long_token)[0]
        assert joined == solo_long
        worker.join(timeout=60)
        assert late["tokens"] == solo_late
        # each row's log-probabilities are its own, as when it decoded alone
        assert late["tokens"].logprobs == pytest.approx(solo_late.logprobs, abs=1e-5)
        assert joined.logprobs == pytest.approx(solo_long.logprobs, abs=1e-5)
        assert late_steps[0] == long_steps[4] + 1  # the step right after the one it arrived in
        assert late_steps[0] < long_steps[-1], "the late row waited for the running batch to end"
        assert engine.step_sizes.get(2, 0) > sizes_before.get(2, 0)  # one llama_decode for both rows


def test_cancel_and_on_token_stop_one_call_of_a_running_batch(low_frame_rate):
    setup = low_frame_rate
    inputs = [setup.llm_input(instruction) for instruction in INSTRUCTIONS[:3]]
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1) as engine:
        solo = [engine.generate([item], GREEDY)[0] for item in inputs]
        cancel, results, started = threading.Event(), {}, threading.Barrier(3)

        def run(index, **kwargs):
            started.wait()
            results[index] = engine.generate([inputs[index]], GREEDY, **kwargs)[0]

        def cancel_at_3(row, tokens):
            if len(tokens) == 3:
                cancel.set()
            return False

        threads = [threading.Thread(target=run, args=(0,), kwargs={"on_token": cancel_at_3, "cancel": cancel}),
                   threading.Thread(target=run, args=(1,), kwargs={"on_token": lambda r, t: len(t) == 2}),
                   threading.Thread(target=run, args=(2,))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results == {0: solo[0][:3], 1: solo[1][:2], 2: solo[2]}
        assert engine.waiting_rows == 0 and engine.generate(inputs, GREEDY) == solo  # nothing left behind
