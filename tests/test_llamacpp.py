"""The llama.cpp engine: token-identical to transformers greedy generation on prompts with real audio
embeddings (the tiny model's encoder on a real recording), batching, stops, cancellation, refusals."""

from __future__ import annotations

import sys
import threading

import pytest
import torch

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'funasr-nano[llama]')")
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'funasr-nano[llama]')")

from funasr_nano.audio.io import load_audio  # noqa: E402
from funasr_nano.engines.base import LLMInput  # noqa: E402
from funasr_nano.engines.llamacpp import LlamaCppEngine  # noqa: E402
from funasr_nano.errors import CheckpointError  # noqa: E402
from funasr_nano.export.gguf import write_llm_gguf  # noqa: E402
from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint  # noqa: E402
from funasr_nano.models.fun_asr_nano.frontend import Frontend  # noqa: E402
from funasr_nano.models.fun_asr_nano.prompt import (  # noqa: E402
    build_prompt_ids, language_name, num_audio_tokens, transcription_instruction,
)
from funasr_nano.options import DecodingOptions  # noqa: E402

MAX_NEW = 40
GREEDY = DecodingOptions(max_new_tokens=MAX_NEW, repetition_guard=False)
# the parity cases: plain, hotwords, language, ITN off
INSTRUCTIONS = (
    transcription_instruction(),
    transcription_instruction(hotwords=("滨海", "新区")),
    transcription_instruction(language=language_name("zh")),
    transcription_instruction(itn=False),
)


class Setup:
    """A tiny checkpoint, its f32 GGUF and an engine on it, plus LLM inputs built from the real
    recording: the prompt's token ids around the adaptor output of the model's own encoder."""

    def __init__(self, checkpoint_dir, gguf_dir, waveform):
        self.loaded = load_checkpoint(str(checkpoint_dir))
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self.stop = sorted({self.tokenizer.convert_tokens_to_ids("<|im_end|>"),
                            self.tokenizer.convert_tokens_to_ids("<|endoftext|>")})
        self.path = write_llm_gguf(self.model, self.tokenizer, gguf_dir / "llm-f32.gguf", "f32")
        # one thread: with all cores, a core busy elsewhere stalls ggml's thread barrier (seconds per call)
        self.engine = LlamaCppEngine(self.path, self.stop, n_ctx=1024, n_threads=1)
        self.audio = self.audio_embeddings(waveform)

    @torch.no_grad()
    def audio_embeddings(self, waveform) -> torch.Tensor:
        """``(num_audio, llm_hidden)``: fbank -> encoder -> adaptor, cut as FunASR does."""
        features = Frontend(self.loaded.frontend)(waveform)[None]
        mask = torch.ones(features.shape[:2], dtype=torch.bool)
        inner = self.model.model
        encoded = inner.audio_tower(input_features=features, input_features_mask=mask).last_hidden_state
        adapted = inner.multi_modal_projector(encoded, mask)[0]
        return adapted[: num_audio_tokens(features.shape[1], self.loaded.use_low_frame_rate)]

    def llm_input(self, instruction: str, audio: torch.Tensor | None = None) -> LLMInput:
        audio = self.audio if audio is None else audio
        prompt = build_prompt_ids(self.tokenizer, instruction, audio.shape[0])
        return LLMInput((prompt.prefix_ids, audio, prompt.suffix_ids))

    @torch.no_grad()
    def transformers_greedy(self, item: LLMInput, max_new_tokens: int = MAX_NEW, min_new_tokens: int = 0,
                            stop=None) -> list[int]:
        """The reference: transformers ``generate`` on the concatenated input embeddings."""
        from transformers import GenerationConfig

        stop = list(stop or self.stop)
        embed = self.model.get_input_embeddings()
        parts = [p if isinstance(p, torch.Tensor) else embed(torch.tensor(list(p))) for p in item.parts]
        inputs_embeds = torch.cat(parts)[None]
        config = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None, do_sample=False,
                                  num_beams=1, eos_token_id=stop, pad_token_id=stop[0])
        output = self.model.generate(inputs_embeds=inputs_embeds, attention_mask=torch.ones(inputs_embeds.shape[:2], dtype=torch.long),
                                     generation_config=config)[0].tolist()
        tokens = []
        for token in output:
            if token in stop:
                break
            tokens.append(token)
        return tokens


@pytest.fixture(scope="module")
def waveform(binhai):
    return load_audio(str(binhai))


@pytest.fixture(scope="module")
def low_frame_rate(tiny_official, tmp_path_factory, waveform):
    setup = Setup(tiny_official, tmp_path_factory.mktemp("gguf-low"), waveform)
    yield setup
    setup.engine.close()


@pytest.fixture(scope="module")
def all_frames(tiny_official_all_frames, tmp_path_factory, waveform):
    setup = Setup(tiny_official_all_frames, tmp_path_factory.mktemp("gguf-all"), waveform)
    yield setup
    setup.engine.close()


@pytest.mark.parametrize("which", ["low_frame_rate", "all_frames"])
def test_greedy_tokens_equal_transformers(which, request):
    setup = request.getfixturevalue(which)
    assert setup.loaded.use_low_frame_rate == (which == "low_frame_rate")
    inputs = [setup.llm_input(instruction) for instruction in INSTRUCTIONS]
    expected = [setup.transformers_greedy(item) for item in inputs]
    assert len({tuple(t) for t in expected}) > 1  # the prompts lead to different outputs
    assert sum(len(t) for t in expected) >= 40, expected
    assert [setup.engine.generate([item], GREEDY)[0] for item in inputs] == expected
    assert setup.engine.generate(inputs, GREEDY) == expected  # parallel sequences of one context


def test_batched_equals_one_by_one_across_rounds(low_frame_rate, tmp_path):
    setup = low_frame_rate
    audios = [setup.audio, setup.audio[:20], torch.flip(setup.audio, [0]), setup.audio * 0.5, setup.audio[5:]]
    inputs = [setup.llm_input(INSTRUCTIONS[i % len(INSTRUCTIONS)], audio) for i, audio in enumerate(audios)]
    one_by_one = [setup.engine.generate([item], GREEDY)[0] for item in inputs]
    assert setup.engine.generate(inputs, GREEDY) == one_by_one
    # two rows at a time (a row joins when another leaves), and a context so small that rows also split by cells
    with LlamaCppEngine(setup.path, setup.stop, n_seq_max=2, n_ctx=300, n_batch=16, n_threads=1) as small:
        batched = small.generate(inputs, GREEDY)
    assert batched == one_by_one
    for row, alone in zip(batched, one_by_one):  # each row keeps its own log-probabilities
        assert len(row.logprobs) == len(alone.logprobs) and row.logprobs == pytest.approx(alone.logprobs, abs=1e-5)


def test_text_only_input_and_thread_count(low_frame_rate):
    setup = low_frame_rate
    ids = setup.tokenizer.encode("<|im_start|>user\n请将以下中文翻译为英文：你好<|im_end|>\n<|im_start|>assistant\n",
                                 add_special_tokens=False)
    item = LLMInput((ids,))
    expected = setup.transformers_greedy(item)
    with LlamaCppEngine(setup.path, setup.stop, n_threads=1) as one_thread:
        assert one_thread.n_threads == 1
        assert one_thread.generate([item], GREEDY) == [expected]
        one_thread.set_threads(2)
        assert one_thread.generate([item], GREEDY) == [expected]


def test_stop_tokens_and_min_new_tokens(low_frame_rate):
    setup = low_frame_rate
    item = setup.llm_input(INSTRUCTIONS[0])
    free = setup.transformers_greedy(item)
    stop = setup.stop + [free[3]]  # a token the model emits early becomes a stop token
    with LlamaCppEngine(setup.path, stop, n_threads=1) as engine:
        early = engine.generate([item], GREEDY)[0]
        assert early == setup.transformers_greedy(item, stop=stop)
        assert len(early) == free.index(free[3])
        options = DecodingOptions(max_new_tokens=MAX_NEW, min_new_tokens=12, repetition_guard=False)
        at_least = engine.generate([item], options)[0]
        assert at_least == setup.transformers_greedy(item, min_new_tokens=12, stop=stop)
        assert len(at_least) >= 12 and not set(at_least[:12]) & set(stop)
    assert len(setup.engine.generate([item], DecodingOptions(max_new_tokens=7))[0]) == 7


def test_sampling_is_seeded_and_differs_from_greedy(low_frame_rate):
    setup = low_frame_rate
    item = setup.llm_input(INSTRUCTIONS[0])
    options = DecodingOptions(max_new_tokens=MAX_NEW, temperature=1.5, repetition_guard=False)
    with LlamaCppEngine(setup.path, setup.stop, seed=7, n_threads=1) as a, \
            LlamaCppEngine(setup.path, setup.stop, seed=7, n_threads=1) as b:
        first = a.generate([item, item], options)
        assert first == b.generate([item, item], options)
    assert first[0] != first[1]  # the rows draw different samples
    assert setup.engine.generate([item], GREEDY)[0] not in first


def test_on_token_stops_one_row(low_frame_rate):
    setup = low_frame_rate
    inputs = [setup.llm_input(instruction) for instruction in INSTRUCTIONS[:3]]
    full = setup.engine.generate(inputs, GREEDY)
    calls = []

    def on_token(row, tokens):
        calls.append((row, len(tokens)))
        assert list(tokens) == full[row][: len(tokens)]
        return row == 1 and len(tokens) == 3

    got = setup.engine.generate(inputs, GREEDY, on_token=on_token)
    assert got[1] == full[1][:3]
    assert got[0] == full[0] and got[2] == full[2]
    assert sum(1 for row, _ in calls if row == 1) == 3
    assert sum(1 for row, _ in calls if row == 0) == len(full[0])


def test_cancel_stops_every_row(low_frame_rate):
    setup = low_frame_rate
    inputs = [setup.llm_input(instruction) for instruction in INSTRUCTIONS[:2]]
    cancel = threading.Event()

    def on_token(row, tokens):
        if len(tokens) == 5:
            cancel.set()
        return False

    got = setup.engine.generate(inputs, GREEDY, on_token=on_token, cancel=cancel)
    assert [len(t) for t in got] == [5, 5]
    full = setup.engine.generate(inputs, GREEDY)
    assert [t[:5] for t in full] == got
    already = threading.Event()
    already.set()
    assert setup.engine.generate(inputs, GREEDY, cancel=already) == [[], []]


def test_concurrent_calls_are_serialised(low_frame_rate):
    setup = low_frame_rate
    inputs = [setup.llm_input(instruction) for instruction in INSTRUCTIONS]
    expected = setup.engine.generate(inputs, GREEDY)
    results = {}

    def work(index):
        results[index] = setup.engine.generate([inputs[index]], GREEDY)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(inputs))] == expected


def test_refusals(low_frame_rate):
    setup = low_frame_rate
    item = setup.llm_input(INSTRUCTIONS[0])
    with pytest.raises(ValueError, match="beam"):
        setup.engine.generate([item], DecodingOptions(num_beams=2))
    with pytest.raises(ValueError, match="no LoRA adapter named 'translate'; the engine has none loaded"):
        setup.engine.generate([LLMInput(item.parts, adapter="translate")], GREEDY)
    with pytest.raises(ValueError, match=r"\(n, 64\)"):
        setup.engine.generate([LLMInput(([1, 2], torch.zeros(3, 32)))], GREEDY)
    with pytest.raises(ValueError, match="token ids"):
        setup.engine.generate([LLMInput(([1, setup.engine.vocab_size],))], GREEDY)
    with pytest.raises(ValueError, match="n_ctx"):
        setup.engine.generate([LLMInput((list(range(100)) * 11,))], GREEDY)
    with pytest.raises(ValueError, match="n_seq_max"):
        LlamaCppEngine(setup.path, setup.stop, n_seq_max=8, n_batch=4)
    assert setup.engine.hidden_size == 64 and setup.engine.n_ctx_train == 40960
    assert setup.engine.max_positions == setup.engine.n_ctx == 1024


def test_truncated_gguf_is_a_checkpoint_error(low_frame_rate, tmp_path):
    data = open(low_frame_rate.path, "rb").read()
    for size in (len(data) - 4096, len(data) // 2, 64, 0):
        path = tmp_path / f"cut-{size}.gguf"
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match=f"cut-{size}.gguf"):
            LlamaCppEngine(path, low_frame_rate.stop)
    with pytest.raises(CheckpointError, match="no such GGUF file"):
        LlamaCppEngine(tmp_path / "missing.gguf", low_frame_rate.stop)


def test_default_stop_tokens_come_from_the_file(low_frame_rate):
    with LlamaCppEngine(low_frame_rate.path) as engine:
        assert low_frame_rate.tokenizer.convert_tokens_to_ids("<|im_end|>") in engine.stop_token_ids


def test_closed_engine(low_frame_rate):
    engine = LlamaCppEngine(low_frame_rate.path, low_frame_rate.stop)
    engine.close()
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate([low_frame_rate.llm_input(INSTRUCTIONS[0])], GREEDY)


def test_missing_llama_cpp_names_the_extra(monkeypatch):
    from funasr_nano.export.gguf import import_llama_cpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ImportError, match=r"pip install 'funasr-nano\[llama\]'"):
        import_llama_cpp()


def test_demo_model_example_gives_the_recorded_tokens(tmp_path):
    """The shipped demo model, its LLM in llama.cpp: the example recording gives the tokens recorded
    with the transformers model when the demo was shipped (tests/data/demo_heldout/expected.json)."""
    import json

    from funasr_nano.load import DEFAULT_MODEL

    from .conftest import ROOT

    expected = json.loads((ROOT / "tests" / "data" / "demo_heldout" / "expected.json").read_text(encoding="utf-8"))
    setup = Setup(DEFAULT_MODEL, tmp_path, load_audio(str(ROOT / expected["example"]["audio"])))
    try:
        tokens = setup.engine.generate([setup.llm_input(INSTRUCTIONS[0])], GREEDY)[0]
    finally:
        setup.engine.close()
    assert tokens == expected["example"]["tokens"]
    assert setup.tokenizer.decode(tokens, skip_special_tokens=True) == expected["example"]["transcript"]
