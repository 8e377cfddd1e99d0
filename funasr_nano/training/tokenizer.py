"""Byte-level BPE tokenizers in Qwen's format: Qwen's pre-tokenizer, special tokens and chat template,
with a vocabulary of bytes only (:func:`build_tokenizer`, for random test models) or learned from text
(:func:`train_tokenizer`, for models trained from scratch such as the embedded demo model)."""

from __future__ import annotations

from typing import Iterable

from ..models.chat import CHATML_TEMPLATE, QWEN_ADDED_TOKENS, QWEN_SPECIAL_TOKENS

# Qwen2/Qwen3's pre-tokenizer split pattern (tokenizer.json of Qwen/Qwen3-0.6B).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# CJK unified ideographs (with extension A and the compatibility block): one pre-token per character
# when a tokenizer is trained with ``cjk_chars=True``.
CJK_CHAR_PATTERN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


def qwen_pre_tokenizer(cjk_chars: bool = False):
    """Qwen's pre-tokenizer (``tokenizers``): its split regex, then byte-level; with ``cjk_chars`` every CJK
    character is a pre-token of its own first."""
    from tokenizers import Regex, pre_tokenizers

    steps = [pre_tokenizers.Split(Regex(CJK_CHAR_PATTERN), behavior="isolated", invert=False)] if cjk_chars else []
    return pre_tokenizers.Sequence(steps + [
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _with_qwen_specials(tokenizer):
    """Add Qwen's special and added tokens to a ``tokenizers.Tokenizer`` and wrap it as a
    ``transformers.PreTrainedTokenizerFast`` with the ChatML template."""
    from tokenizers import AddedToken, decoders
    from transformers import PreTrainedTokenizerFast

    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_ADDED_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=QWEN_SPECIAL_TOKENS[2], pad_token=QWEN_SPECIAL_TOKENS[0],
        chat_template=CHATML_TEMPLATE, model_max_length=32768, clean_up_tokenization_spaces=False,
    )


def build_tokenizer():
    """A byte-level BPE tokenizer with Qwen's pre-tokenizer, special tokens and a ChatML template.

    The vocabulary is the 256 byte symbols (no merges) followed by the special tokens, so any text
    round-trips. Returns a ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = qwen_pre_tokenizer()
    return _with_qwen_specials(tokenizer)


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, cjk_chars: bool = False):
    """A compact byte-level BPE tokenizer learned from ``texts``: the same pre-tokenizer, special tokens
    and ChatML template as :func:`build_tokenizer` (and as Qwen's), with ``vocab_size`` entries before
    the special tokens (256 byte symbols + merges). Any text still round-trips (byte fallback).

    ``cjk_chars=True`` first isolates every CJK ideograph, so no merge spans two Chinese characters: a
    frequent character is one token, a rare one its UTF-8 bytes. Text then has about one token per
    spoken syllable, which suits a small model trained from scratch with a CTC loss (Qwen's own
    tokenizer merges frequent words). Returns a ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = qwen_pre_tokenizer(cjk_chars)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return _with_qwen_specials(tokenizer)
