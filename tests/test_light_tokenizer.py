"""LightTokenizer (tokenizers + jinja2, no transformers) against transformers' tokenizer on the same folders:
token ids, decoded text, special tokens and rendered chat templates, for every chat format the project
supports (Qwen3, Llama 3, Gemma 2, DeepSeek, Qwen3-ASR, the demo model's ChatML) and for templates that
use the jinja features real chat templates use."""

from __future__ import annotations

import json
import pathlib

import jinja2
import pytest
from transformers import AutoTokenizer

from funasr_nano.errors import CheckpointError
from funasr_nano.load import DEFAULT_MODEL
from funasr_nano.models.light_tokenizer import LightTokenizer
from funasr_nano.testing.families import FAMILIES, build_family_tokenizer
from funasr_nano.testing.tiny_qwen3_asr import CHAT_TEMPLATE as QWEN3_ASR_TEMPLATE

TEXTS = [
    "",
    "Hello, world! It's a test , isn't it ?",
    "欢迎大家来体验达摩院推出的语音识别模型。",
    "  leading and trailing spaces  \n\nnew lines\ttabs",
    "<|im_start|>user\nspecial tokens written as text<|im_end|>",
    "<think>\n\n</think>\n\n混合 mixed 123 4.5%",
    "<bos><start_of_turn>model\n<|eot_id|><｜end▁of▁sentence｜>",
    "<|extra_added|> and <|extra_special|> tokens",
]

CONVERSATIONS = [
    [{"role": "user", "content": "语音转写成英文："}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Translate: 你好"}],
    [{"role": "user", "content": "first"}, {"role": "assistant", "content": "answer"},
     {"role": "user", "content": "second  "}],
]

# templates written here that use what published chat templates use: whitespace control under trim_blocks /
# lstrip_blocks, namespace, loop controls, tojson (no HTML escaping), macros, `is string`, raise_exception,
# {% generation %}, tools, reasoning_content, None-valued keys, strftime_now
FEATURE_TEMPLATES = {
    "whitespace": (
        "{% for m in messages %}\n"
        "    {% if m.role == 'system' %}\n"
        "<<SYS>>{{ m.content }}<</SYS>>\n"
        "    {% else %}\n"
        "[{{ m.role | upper }}] {{ m.content | trim }}\n"
        "    {% endif %}\n"
        "{% endfor %}\n"
        "{%- if add_generation_prompt %}[ASSISTANT]{% endif %}"
    ),
    "namespace_loops": (
        "{%- set ns = namespace(system='', turns=0) -%}"
        "{%- for m in messages -%}"
        "{%- if m.role == 'system' -%}{%- set ns.system = m.content -%}{%- continue -%}{%- endif -%}"
        "{%- set ns.turns = ns.turns + 1 -%}"
        "{%- if ns.turns > 2 -%}{%- break -%}{%- endif -%}"
        "{{- loop.index0 ~ ':' ~ m.role ~ '=' ~ m.content ~ ('|' if not loop.last else '') -}}"
        "{%- endfor -%}"
        "{{- '\\nsystem=' + ns.system if ns.system else '' -}}"
    ),
    "tojson_tools_macro": (
        "{%- macro turn(role, text) -%}<{{ role }}>{{ text }}</{{ role }}>{%- endmacro -%}"
        "{%- if tools %}{{ tools | tojson }}\n{{ tools[0] | tojson(indent=2) }}{% endif %}"
        "{%- for m in messages -%}{{ turn(m.role, m.content if m.content is string else m.content | tojson) }}"
        "{%- endfor -%}"
    ),
    "reasoning_generation": (
        "{%- for m in messages -%}"
        "{%- if m.role == 'assistant' -%}"
        "{% generation %}<a>{% if m.reasoning_content is defined %}<think>{{ m.reasoning_content }}</think>"
        "{% endif %}{{ m.content }}</a>{% endgeneration %}"
        "{%- else -%}<{{ m.role }}>{{ m.content }}{{ '|name=' + m.name if m.name is defined else '' }}"
        "{%- endif -%}"
        "{%- endfor -%}{{ bos_token ~ '|' ~ eos_token ~ '|' ~ strftime_now('%Y') }}"
    ),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_qwen3_asr_hf) -> dict[str, pathlib.Path]:
    """Tokenizer folders as ``save_pretrained`` writes them: the four LLM families, the demo model, a
    Qwen3-ASR checkpoint in the transformers layout, and a Llama one with a post-processor that adds BOS."""
    out = {}
    for family in FAMILIES:
        path = tmp_path_factory.mktemp(f"tok-{family}")
        build_family_tokenizer(family).save_pretrained(path)
        out[family] = path
    out["demo"] = pathlib.Path(DEFAULT_MODEL)
    out["qwen3_asr"] = pathlib.Path(tiny_qwen3_asr_hf)
    path = tmp_path_factory.mktemp("tok-llama-bos")
    tokenizer = build_family_tokenizer("llama")
    tokenizer.add_bos_token = True  # Llama 3's released tokenizers add <|begin_of_text|> when asked
    tokenizer.save_pretrained(path)
    out["llama_bos"] = path
    path = tmp_path_factory.mktemp("tok-llama-cleanup")
    tokenizer = build_family_tokenizer("llama")
    tokenizer.clean_up_tokenization_spaces = True  # as Llama 3's configs say; transformers ignores it for BPE
    tokenizer.save_pretrained(path)
    out["llama_cleanup"] = path
    # a hand-edited folder: tokenizer.json without a post-processor and without tokens the config lists
    # (transformers adds them; it does not read add_bos_token, so no BOS)
    path = tmp_path_factory.mktemp("tok-llama-edited")
    backend = json.loads((out["llama"] / "tokenizer.json").read_text())
    backend["post_processor"] = None
    (path / "tokenizer.json").write_text(json.dumps(backend))
    config = json.loads((out["llama"] / "tokenizer_config.json").read_text())
    size = len(backend["model"]["vocab"]) + len(backend["added_tokens"])
    config.update(add_bos_token=True, extra_special_tokens=["<|extra_special|>"], pad_token="<|extra_added|>",
                  added_tokens_decoder={
        str(size): {"content": "<|extra_added|>", "lstrip": False, "normalized": False, "rstrip": False,
                    "single_word": False, "special": False}})
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    out["llama_edited"] = path
    return out


@pytest.fixture(scope="module")
def pairs(folders):
    return {name: (AutoTokenizer.from_pretrained(path), LightTokenizer.from_pretrained(path))
            for name, path in folders.items()}


NAMES = [*FAMILIES, "demo", "qwen3_asr", "llama_bos", "llama_cleanup", "llama_edited"]


@pytest.mark.parametrize("name", NAMES)
def test_ids_and_text_equal_transformers(pairs, name):
    reference, light = pairs[name]
    for text in TEXTS:
        for special in (False, True):
            ids = reference.encode(text, add_special_tokens=special)
            assert light.encode(text, add_special_tokens=special) == ids, (name, text, special)
            for skip in (False, True):
                assert light.decode(ids, skip_special_tokens=skip) == reference.decode(ids, skip_special_tokens=skip)
    assert len(light) == len(reference)
    assert light.get_vocab() == reference.get_vocab()
    assert light.get_added_vocab() == reference.get_added_vocab()


@pytest.mark.parametrize("name", NAMES)
def test_special_tokens_equal_transformers(pairs, name):
    reference, light = pairs[name]
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(light, key) == getattr(reference, key), key
        assert getattr(light, key + "_id") == getattr(reference, key + "_id"), key
    assert light.special_tokens_map == {k: str(v) for k, v in reference.special_tokens_map.items()
                                        if isinstance(v, str)}
    assert set(light.all_special_tokens) >= set(reference.all_special_tokens)
    tokens = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "a", "not-a-token-at-all"]
    assert light.convert_tokens_to_ids(tokens) == reference.convert_tokens_to_ids(tokens)
    assert light.convert_ids_to_tokens([0, 1, 5]) == reference.convert_ids_to_tokens([0, 1, 5])


@pytest.mark.parametrize("name", [*FAMILIES, "demo"])
def test_own_chat_template_renders_as_transformers(pairs, name):
    reference, light = pairs[name]
    assert light.chat_template == reference.chat_template
    for conversation in CONVERSATIONS:
        if name == "gemma2" and conversation[0]["role"] == "system":
            with pytest.raises(jinja2.TemplateError, match="System role not supported"):
                light.apply_chat_template(conversation, tokenize=False)
            continue
        for generation in (False, True):
            for extra in ({}, {"enable_thinking": False}, {"enable_thinking": True}):
                want = reference.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation,
                                                     **extra)
                got = light.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation,
                                                **extra)
                assert got == want, (name, conversation, generation, extra)
                assert light.apply_chat_template(conversation, add_generation_prompt=generation, **extra) == \
                    reference.apply_chat_template(conversation, add_generation_prompt=generation, **extra,
                                                  return_dict=False)


def test_qwen3_asr_template_with_audio_parts(pairs):
    reference, light = pairs["qwen3_asr"]
    conversation = [{"role": "system", "content": "hotwords: 达摩院"},
                    {"role": "user", "content": [{"type": "audio", "audio": "clip.wav"}]}]
    for template in (QWEN3_ASR_TEMPLATE, None):
        if template is None and not reference.chat_template:
            continue
        want = reference.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
        assert light.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                         add_generation_prompt=True) == want
        assert "<|audio_start|><|audio_pad|><|audio_end|>" in want


@pytest.mark.parametrize("feature", sorted(FEATURE_TEMPLATES))
def test_template_features_render_as_transformers(pairs, feature):
    reference, light = pairs["llama"]
    template = FEATURE_TEMPLATES[feature]
    tools = [{"type": "function", "function": {"name": "lookup", "description": "<b>&'quotes'\"",
                                               "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    conversations = [*CONVERSATIONS,
                     [{"role": "system", "content": "sys"}, {"role": "user", "content": "q", "name": None},
                      {"role": "assistant", "content": "a", "reasoning_content": "because"},
                      {"role": "assistant", "content": "b", "reasoning": "older name for it"},
                      {"role": "user", "content": [{"type": "text", "text": "parts <i>"}], "name": "bob"},
                      {"role": "user", "content": "4"}]]
    for conversation in conversations:
        for generation in (False, True):
            want = reference.apply_chat_template(conversation, chat_template=template, tools=tools, tokenize=False,
                                                 add_generation_prompt=generation)
            got = light.apply_chat_template(conversation, chat_template=template, tools=tools, tokenize=False,
                                            add_generation_prompt=generation)
            assert got == want, (feature, conversation)


def test_continue_final_message_as_transformers(pairs):
    reference, light = pairs["qwen3"]
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "partial answer"}]
    want = reference.apply_chat_template(conversation, tokenize=False, continue_final_message=True)
    assert light.apply_chat_template(conversation, tokenize=False, continue_final_message=True) == want
    assert want.endswith("partial answer")


def test_sandbox_refuses_what_transformers_refuses(pairs):
    _, light = pairs["qwen3"]
    with pytest.raises(jinja2.exceptions.SecurityError):
        light.apply_chat_template([{"role": "user", "content": "x"}],
                                  chat_template="{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}",
                                  tokenize=False)
    with pytest.raises(jinja2.exceptions.SecurityError):
        light.apply_chat_template([{"role": "user", "content": "x"}],
                                  chat_template="{{ messages.append(1) }}", tokenize=False)


def test_errors_name_the_folder(tmp_path, folders):
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        LightTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        LightTokenizer.from_pretrained(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "tokenizer.json").write_text((folders["llama"] / "tokenizer.json").read_text())
    tokenizer = LightTokenizer.from_pretrained(plain)
    with pytest.raises(CheckpointError, match=f"{plain}: the tokenizer has no chat template"):
        tokenizer.apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="empty conversation"):
        tokenizer.apply_chat_template([], chat_template="x")


def test_chat_template_json_and_named_templates(tmp_path, folders):
    """The places transformers 5 reads templates from: chat_template.json (a processor's), a list of named
    templates in tokenizer_config.json."""
    for file in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / file).write_text((folders["llama"] / file).read_text())
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "A{{ messages[0].content }}"}))
    assert LightTokenizer.from_pretrained(tmp_path).apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False) == "Ax"
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": "D{{ messages[0].content }}"},
                               {"name": "tool_use", "template": "T{{ messages[0].content }}"}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = LightTokenizer.from_pretrained(tmp_path)
    message = [{"role": "user", "content": "x"}]
    assert tokenizer.apply_chat_template(message, tokenize=False) == "Dx"
    assert tokenizer.apply_chat_template(message, chat_template="tool_use", tokenize=False) == "Tx"


@pytest.mark.parametrize("name", [*FAMILIES, "demo"])
def test_chat_format_and_prompt_ids_equal_transformers(pairs, name):
    """What the prompt builders take from a tokenizer (:class:`ChatFormat`) is the same from either."""
    from funasr_nano.models.chat import ChatFormat

    reference, light = pairs[name]
    for kwargs in ({}, {"enable_thinking": False}):
        want = ChatFormat.from_tokenizer(reference, template_kwargs=kwargs)
        got = ChatFormat.from_tokenizer(light, template_kwargs=kwargs)
        assert got == want
        assert got.prompt_ids(light, "语音转写：", 7, system="You are a helpful assistant.") == \
            want.prompt_ids(reference, "语音转写：", 7, system="You are a helpful assistant.")
        assert got.stop_token_ids(light, [1]) == want.stop_token_ids(reference, [1])
