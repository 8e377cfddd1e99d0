"""LoRA adapters on the llama.cpp engine: a peft adapter exported as a GGUF LoRA file and applied at run time
beside the base GGUF gives the transformers engine's tokens with the peft adapter (demo model, translate
task; tiny model), one loaded model serves base and adapter rows from many threads, and bad adapters are
one clear error naming the file."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import warnings

import pytest
import torch

from funasr_nano import CheckpointError, DecodingOptions, InvalidOptionError, load_model
from funasr_nano.cli.main import main
from funasr_nano.export.gguf_folder import export_gguf
from funasr_nano.export.gguf_lora import lora_tensors, write_lora_gguf
from funasr_nano.load import DEFAULT_MODEL
from funasr_nano.models.fun_asr_nano.checkpoint import load_checkpoint
from funasr_nano.models.lora import LoraSettings, add_lora, lora_layers, save_adapter

from .conftest import shared_file

OPTIONS = DecodingOptions(max_new_tokens=24, repetition_guard=False)
DEMO_CLIP = "examples/demo_zh.wav"


def random_adapter(base: str, folder, settings: LoraSettings, scale: float, seed: int = 0) -> str:
    """A peft adapter folder for checkpoint ``base`` with random (non-zero) A and B."""
    model = load_checkpoint(base).model
    add_lora(model, settings)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model.model.language_model):
            for weight in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                weight.copy_(scale * torch.randn(weight.shape, generator=generator))
    return save_adapter(model, str(folder))


@pytest.fixture(scope="module")
def demo_pair(tmp_path_factory):
    """The demo model with a random translate adapter, on transformers (peft) and on llama.cpp (f32 GGUF +
    GGUF LoRA written by the CLI)."""
    folder = tmp_path_factory.mktemp("demo-lora")
    adapter = random_adapter(DEFAULT_MODEL, folder / "adapter", LoraSettings(r=8, lora_alpha=16, lora_dropout=0.0),
                             scale=0.05)
    export_gguf(None, folder / "gguf", "f32")
    assert main(["export", "gguf-lora", adapter, str(folder / "translate.gguf"), "--model", "demo"]) == 0
    reference = load_model(lora={"translate": adapter})
    gguf = load_model(folder / "gguf", n_threads=1, lora={"translate": str(folder / "translate.gguf")})
    yield reference, gguf, folder
    gguf.close()


def test_demo_translate_adapter_gives_the_peft_tokens(demo_pair):
    reference, gguf, _ = demo_pair
    assert gguf.engine.name == "llama.cpp" and gguf.engine.adapter_names == ("translate",)
    expected = reference.run("translate", DEMO_CLIP, options=OPTIONS).tokens
    assert len(expected) > 3
    assert gguf.run("translate", DEMO_CLIP, options=OPTIONS).tokens == expected
    # the base weights serve transcription from the same loaded model, and the adapter changed the output
    base = reference.transcribe(DEMO_CLIP, options=OPTIONS).tokens
    assert gguf.transcribe(DEMO_CLIP, options=OPTIONS).tokens == base
    plain = load_model(engine="transformers").run("translate", DEMO_CLIP, options=OPTIONS).tokens
    assert plain != expected, "the adapter should change the output"
    assert gguf.translate(DEMO_CLIP, mode="unified").text == \
        reference.translate(DEMO_CLIP, mode="unified").text


def test_cli_translate_with_a_gguf_lora(demo_pair, capsys):
    reference, gguf, folder = demo_pair
    capsys.readouterr()
    assert main(["translate", "--model", str(folder / "gguf"), "--threads", "1", "--mode", "unified",
                 "--lora", str(folder / "translate.gguf"), DEMO_CLIP]) == 0
    assert capsys.readouterr().out.strip() == reference.translate(DEMO_CLIP, mode="unified").text


def test_base_and_adapter_rows_from_threads_give_the_serial_results(demo_pair, binhai):
    _, gguf, _ = demo_pair
    clips = [DEMO_CLIP, str(binhai), str(shared_file("audio/zh_welcome.wav"))]
    calls = [(task, i % 3) for i in range(3) for task in ("transcribe", "translate")]

    def call(task: str, clip: int):
        return gguf.run(task, clips[clip], options=OPTIONS).tokens

    serial = [call(*c) for c in calls]
    assert serial[0] != serial[1]
    barrier = threading.Barrier(len(calls))

    def threaded(c):
        barrier.wait()
        return call(*c)

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        assert list(pool.map(threaded, calls)) == serial
    # one batch mixing base and adapter rows equals the rows alone
    from funasr_nano.audio.io import load_audio
    from funasr_nano.pipeline.decoding import generate

    family = gguf.family
    embeds = family.audio_embeddings(load_audio(DEMO_CLIP))
    rows = [family.llm_input(family.task_prompt("translate"), embeds, adapter=name)
            for name in ("translate", None, "translate")]
    together = generate(gguf.engine, rows, OPTIONS)
    assert together == [generate(gguf.engine, [row], OPTIONS)[0] for row in rows] and together[0] != together[1]


@pytest.fixture(scope="module")
def tiny_adapter(tiny_official, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-lora")
    settings = LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=("q_proj", "o_proj", "down_proj"))
    return random_adapter(str(tiny_official), folder / "adapter", settings, scale=0.3)


def test_tiny_model_peft_folder_converted_at_load(tiny_official, tiny_adapter, binhai, tmp_path):
    """A peft folder given to a GGUF-layout model is converted at load time (no file left behind)."""
    export_gguf(tiny_official, tmp_path / "gguf", "f32")
    reference = load_model(tiny_official, lora=tiny_adapter)
    gguf = load_model(tmp_path / "gguf", n_threads=1, lora=tiny_adapter)
    try:
        expected = reference.transcribe(binhai, options=OPTIONS).tokens
        assert len(expected) > 5 and expected != load_model(tiny_official).transcribe(binhai, options=OPTIONS).tokens
        assert gguf.transcribe(binhai, options=OPTIONS).tokens == expected
        assert gguf.run("translate", binhai, options=OPTIONS).tokens == \
            reference.run("translate", binhai, options=OPTIONS).tokens
    finally:
        gguf.close()


def test_lora_tensors_follow_llama_cpp_names_and_shapes(tiny_official, tiny_adapter, tmp_path):
    text_config = load_checkpoint(str(tiny_official)).model.config.text_config
    tensors = lora_tensors(tiny_adapter, text_config)
    from safetensors.torch import load_file

    stored = load_file(f"{tiny_adapter}/adapter_model.safetensors")
    a = stored["base_model.model.layers.1.self_attn.o_proj.lora_A.weight"]
    b = stored["base_model.model.layers.1.self_attn.o_proj.lora_B.weight"]
    assert torch.equal(tensors["blk.1.attn_output.weight.lora_a"], a)  # (r, in): GGUF [in, r]
    assert torch.equal(tensors["blk.1.attn_output.weight.lora_b"], b)  # (out, r): GGUF [r, out]
    assert len(tensors) == 2 * 3 * text_config.num_hidden_layers
    import gguf

    path = write_lora_gguf(tiny_adapter, text_config, tmp_path / "a.gguf")
    reader = gguf.GGUFReader(path)
    fields = {name: reader.fields[name] for name in ("general.type", "adapter.type", "adapter.lora.alpha")}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert bytes(fields["adapter.type"].parts[-1]).decode() == "lora"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 8.0


def test_bad_adapters_are_one_clear_error(demo_pair, tiny_official, tiny_adapter, tmp_path):
    _, _, demo = demo_pair
    # a GGUF LoRA for another base model (the tiny model's adapter on the demo model)
    write_lora_gguf(tiny_adapter, load_checkpoint(str(tiny_official)).model.config.text_config, tmp_path / "tiny.gguf")
    with pytest.raises(CheckpointError, match=r"tiny\.gguf: llama.cpp cannot apply this LoRA adapter"):
        load_model(demo / "gguf", n_threads=1, lora={"translate": str(tmp_path / "tiny.gguf")})
    # a peft adapter for another base model, converted at load time: the shapes are named
    with pytest.raises(CheckpointError, match="adapter_model.safetensors does not match the model; shape mismatch: base_model.model.layers.0.mlp.down_proj.lora_A"):
        load_model(demo / "gguf", n_threads=1, lora={"translate": tiny_adapter})
    # a model GGUF is not an adapter
    with pytest.raises(CheckpointError, match="llm-f32.gguf: not a GGUF LoRA adapter"):
        load_model(demo / "gguf", n_threads=1, lora={"translate": str(demo / "gguf" / "llm-f32.gguf")})
    # a LoRA on modules llama.cpp cannot map (an embedding LoRA, as peft writes it)
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "embedding"
    bad.mkdir()
    stored = load_file(f"{tiny_adapter}/adapter_model.safetensors")
    stored["base_model.model.embed_tokens.lora_embedding_A"] = torch.zeros(4, 10)
    save_file(stored, str(bad / "adapter_model.safetensors"))
    (bad / "adapter_config.json").write_text(open(f"{tiny_adapter}/adapter_config.json").read())
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: LoRA tensors of modules llama.cpp's qwen3 "
                                              r"has no tensor for: base_model.model.embed_tokens.lora_embedding_A"):
        lora_tensors(bad, load_checkpoint(str(tiny_official)).model.config.text_config)
    config = json.loads((bad / "adapter_config.json").read_text())
    config["alpha_pattern"] = {"q_proj": 4}
    (bad / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="alpha_pattern"):
        lora_tensors(bad, load_checkpoint(str(tiny_official)).model.config.text_config)
    # a GGUF LoRA on the transformers engine
    with pytest.raises(InvalidOptionError, match="a GGUF LoRA file runs on the llama.cpp engine"):
        load_model(tiny_official, lora=str(tmp_path / "tiny.gguf"))


def test_llama_q_k_rows_are_permuted_like_the_base(tmp_path):
    """A peft adapter of a plain Llama causal LM (q/k rows rearranged for llama.cpp's RoPE, lora_b too)
    on the llama.cpp engine gives peft's tokens."""
    from peft import LoraConfig, get_peft_model

    from funasr_nano.engines.base import LLMInput
    from funasr_nano.engines.llamacpp import LlamaCppEngine
    from funasr_nano.export.text_llm_gguf import export_text_llm_gguf
    from funasr_nano.testing.tiny_chat import write_tiny_chat_llm
    from transformers import AutoModelForCausalLM

    source = write_tiny_chat_llm(tmp_path / "llama", "llama", seed=4)
    base_gguf = export_text_llm_gguf(source, tmp_path / "gguf", "f32")
    with warnings.catch_warnings():
        # peft 0.21's PeftModel.__init__ (peft_model.py:184) reads transformers' deprecated
        # is_gradient_checkpointing; only this test builds a PeftModel (the package injects adapters instead)
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(source),
                               LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_" in name:
                weight.copy_(0.3 * torch.randn(weight.shape, generator=generator))
    model.save_pretrained(tmp_path / "adapter")
    lora = write_lora_gguf(tmp_path / "adapter", model.base_model.model.config, tmp_path / "adapter.gguf")
    prompt = list(range(3, 40))
    with torch.no_grad():
        output = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                                min_new_tokens=16, pad_token_id=0)
    expected = output[0, len(prompt):].tolist()
    with model.disable_adapter(), torch.no_grad():
        plain = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                               min_new_tokens=16, pad_token_id=0)[0, len(prompt):].tolist()
    assert plain != expected, "the adapter should change the output"
    with LlamaCppEngine(base_gguf, n_threads=1, lora_adapters={"a": lora}) as engine:
        options = DecodingOptions(max_new_tokens=16, min_new_tokens=16, repetition_guard=False)
        assert engine.generate([LLMInput((prompt,), adapter="a"), LLMInput((prompt,))], options) == [expected, plain]



def test_prefix_cache_is_keyed_by_adapter(tiny_official, tiny_adapter, tmp_path):
    """The same prompt prefix under the base weights and under an adapter: two cache entries (an adapter
    changes the prefix's keys and values), each row gives the tokens of the engine without the cache."""
    from funasr_nano.engines.base import LLMInput
    from funasr_nano.engines.llamacpp import LlamaCppEngine

    export_gguf(tiny_official, tmp_path / "gguf", "f32")
    text_config = load_checkpoint(str(tiny_official)).model.config.text_config
    lora = write_lora_gguf(tiny_adapter, text_config, tmp_path / "a.gguf")
    prefix, rest = list(range(3, 40)), list(range(60, 70))  # the prefix: a leading token run before more parts
    rows = [LLMInput((prefix, rest), adapter=name) for name in (None, "a")]
    options = DecodingOptions(max_new_tokens=16, min_new_tokens=16, repetition_guard=False)
    llm = tmp_path / "gguf" / "llm-f32.gguf"
    with LlamaCppEngine(llm, n_threads=1, prefix_cache=0, lora_adapters={"a": lora}) as off, \
            LlamaCppEngine(llm, n_threads=1, lora_adapters={"a": lora}) as on:
        expected = [off.generate([row], options)[0] for row in rows]
        assert expected[0] != expected[1]
        assert [on.generate([row], options)[0] for row in rows] == expected  # base first, then the adapter
        assert [on.generate([row], options)[0] for row in rows[::-1]] == expected[::-1]
        assert (on.prefix_misses, on.prefix_hits) == (2, 2)
