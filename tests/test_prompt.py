import pytest

from funasr_nano import UnsupportedLanguageError
from funasr_nano.prompt import build_prompt_ids, language_name, num_audio_tokens, transcription_instruction
from funasr_nano.tiny import build_tokenizer


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
