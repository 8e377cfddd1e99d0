"""The CTC branch's tokenizer (SenseVoice's tiktoken BPE, ``multilingual.tiktoken``) and what both runtimes
say about the branch, without torch: the torch model (:mod:`.ctc`) and the light runtime (:mod:`.light`)
share this module.

The rank file is tiktoken's format (a base64 token and its rank per line); funasr 1.4.16 reads it with
tiktoken (``funasr/models/sense_voice/whisper_lib/tokenizer.py: get_encoding``), and so do we: the BPE
merges are tiktoken's, never re-implemented.
"""

from __future__ import annotations

import base64
import os
from typing import Sequence

from ...errors import CheckpointError, MissingDependencyError

CTC_VOCAB_FILE = "multilingual.tiktoken"
# funasr/models/sense_voice/whisper_lib/tokenizer.py: get_encoding's split pattern
TIKTOKEN_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class CtcTokenizer:
    """The SenseVoice tiktoken BPE of the CTC branch (ordinary tokens only).

    ``encode`` treats special-token strings as ordinary text, as funasr 1.4.16's ``Tokenizer.encode``
    does (``disallowed_special=()``); ids at or above :attr:`num_ordinary` (special tokens, the blank)
    have no bytes here.

    Raises:
        CheckpointError: the rank file cannot be read.
        MissingDependencyError: tiktoken is not installed.
    """

    def __init__(self, vocab_path: str):
        try:
            import tiktoken
        except ImportError as error:  # a core dependency; a broken install says so
            raise MissingDependencyError("the CTC tokenizer needs tiktoken: pip install tiktoken") from error
        try:
            with open(vocab_path, encoding="utf-8") as f:
                ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in f if line.strip())}
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{vocab_path}: not a tiktoken rank file ({error})") from error
        self.path = vocab_path
        self.num_ordinary = len(ranks)
        self._bytes = {rank: token for token, rank in ranks.items()}
        self._encoding = tiktoken.Encoding(name=os.path.basename(vocab_path), pat_str=TIKTOKEN_PATTERN,
                                           mergeable_ranks=ranks, special_tokens={})

    def encode(self, text: str) -> list[int]:
        """Text -> token ids (special-token strings are ordinary text)."""
        return self._encoding.encode(text, allowed_special=set(), disallowed_special=())

    def token_bytes(self, token: int) -> bytes:
        """The bytes of an ordinary token; ``b""`` for special ids."""
        return self._bytes.get(int(token), b"")

    def decode(self, tokens: Sequence[int]) -> str:
        """Token ids -> text; special ids dropped, invalid UTF-8 replaced (as tiktoken decodes)."""
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")


def no_ctc_error(path: str, what: str = "word timestamps") -> CheckpointError:
    """The error for asking a checkpoint without a CTC branch for what only the branch gives."""
    return CheckpointError(
        f"{path}: {what} need Fun-ASR-Nano's CTC branch (ctc_decoder.* and ctc.ctc_lo.* tensors in model.pt, "
        f"ctc_decoder in config.yaml, and {CTC_VOCAB_FILE}), which this checkpoint does not have. The official "
        "ModelScope copy of Fun-ASR-Nano-2512 has it; the Hugging Face -hf copy does not, nor does a GGUF folder "
        "exported from a checkpoint without it (a GGUF folder exported from one with it has the branch as "
        "ctc.onnx, on the light runtime)")
