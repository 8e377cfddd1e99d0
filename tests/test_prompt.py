import pytest

from funasr_nano import UnsupportedLanguageError
from funasr_nano.models.fun_asr_nano.prompt import build_prompt_ids, language_name, num_audio_tokens, transcription_instruction
from funasr_nano.training.tokenizer import build_tokenizer, train_tokenizer


def test_instruction_text():
    assert transcription_instruction() == "语音转写："
    assert transcription_instruction(language="中文", itn=False) == "语音转写成中文，不进行文本规整："
    with_hotwords = transcription_instruction(["滨海", "新区"])
    assert with_hotwords.startswith("请结合上下文信息，更加准确地完成语音转写任务。")
    assert with_hotwords.endswith("**上下文信息：**\n\n\n热词列表：[滨海, 新区]\n语音转写：")


def test_language_names():
    assert language_name("zh") == language_name("Chinese") == language_name("中文") == "中文"
    assert language_name("EN") == "英文" and language_name("ja") == "日文"
    assert language_name("粤语") == "粤语"
    assert language_name(None) is None
    with pytest.raises(UnsupportedLanguageError, match="xx"):
        language_name("xx")


def test_num_audio_tokens_follows_official_rule():
    assert num_audio_tokens(100, True) == 13  # the 6.0 s recording: 100 LFR frames -> 13 positions
    assert num_audio_tokens(100, False) == 100
    assert [num_audio_tokens(n, True) for n in (1, 5, 8, 9, 17, 500)] == [1, 1, 1, 2, 3, 63]


def test_prompt_pieces_are_tokenized_separately():
    tokenizer = build_tokenizer()
    prompt = build_prompt_ids(tokenizer, "语音转写：", 5)
    assert tokenizer.decode(prompt.prefix_ids) == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n语音转写："
    assert tokenizer.decode(prompt.suffix_ids) == "<|im_end|>\n<|im_start|>assistant\n"
    assert prompt.length == len(prompt.prefix_ids) + 5 + len(prompt.suffix_ids)


def test_trained_tokenizer_with_cjk_chars_never_merges_two_characters():
    corpus = ["我们今天去北京吧。", "我们明天去上海。", "他们今天不去。", "Hello world, hello there."] * 20
    merged = train_tokenizer(corpus, 400)
    per_char = train_tokenizer(corpus, 400, cjk_chars=True)
    text = "我们今天去上海。Hello there"
    ids = per_char.encode(text, add_special_tokens=False)
    pieces = [per_char.decode([i]) for i in ids]
    assert pieces[:8] == list("我们今天去上海。")  # one token per character, frequent words included
    assert len(merged.encode("我们今天", add_special_tokens=False)) < 4  # Qwen-style merging joins words
    assert per_char.decode(ids) == text
    rare = per_char.encode("鑫", add_special_tokens=False)  # unseen character: its UTF-8 bytes
    assert len(rare) == 3 and per_char.decode(rare) == "鑫"
    assert per_char.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False).startswith(
        "<|im_start|>user\n你好<|im_end|>")
