"""Training data: manifests (:mod:`funasr_nano.manifests`) checked against their audio, grouped by task, and the
text-only translation examples derived from speech translation lines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Iterable

from ..errors import AudioDecodeError, AudioTooShortError
from ..manifests import Example, read_manifest
from ..models.fun_asr_nano.prompt import TASKS

logger = logging.getLogger(__name__)


def text_translation_examples(examples: Iterable[Example]) -> list[Example]:
    """Text-only translation examples derived from the speech translation examples that carry their
    transcript (``source_text``): the same target, no audio."""
    task = TASKS["text_translate"]
    return [
        dataclasses.replace(e, task=task.name, instruction=task.user_text(e.source_text), audio=None,
                            duration=None, key=e.key + "#text")
        for e in examples if e.task == "translate" and e.source_text
    ]


# ----------------------------------------------------------------------------------------------------
# data check


@dataclasses.dataclass(frozen=True)
class ManifestReport:
    """What :func:`check_manifest` found.

    Attributes:
        path: the manifest.
        examples: number of examples read.
        tasks: examples per task.
        audio_seconds: total duration of the readable audio, seconds.
        min_duration, max_duration: shortest/longest readable audio in seconds (0 when none).
        max_tokens: the longest example in LLM tokens (prompt + audio positions + target), or
            ``None`` without a tokenizer.
        mean_target_tokens: mean target length in tokens (``None`` without a tokenizer).
        problems: ``"FILE:LINE: reason"`` for each example that cannot be used (unreadable or too short
            audio, or longer than ``max_tokens``).
    """

    path: str
    examples: int
    tasks: dict[str, int]
    audio_seconds: float
    min_duration: float
    max_duration: float
    max_tokens: int | None
    mean_target_tokens: float | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.path}: {self.examples} examples ({', '.join(f'{k} {v}' for k, v in sorted(self.tasks.items()))})",
            f"audio: {self.audio_seconds / 3600:.3f} h, {self.min_duration:.2f}-{self.max_duration:.2f} s per clip",
        ]
        if self.max_tokens is not None:
            lines.append(f"tokens: longest example {self.max_tokens}, mean target {self.mean_target_tokens:.1f}")
        lines.append(f"{len(self.problems)} problem(s)" if self.problems else "no problems")
        lines.extend(f"  {p}" for p in self.problems[:50])
        if len(self.problems) > 50:
            lines.append(f"  ... {len(self.problems) - 50} more")
        return "\n".join(lines)


def audio_duration(path: str) -> float:
    """Duration of an audio file in seconds, read from its header when possible (else decoded).

    Raises:
        AudioDecodeError: the file is missing or unreadable.
    """
    import soundfile

    if not os.path.isfile(path):
        raise AudioDecodeError(f"{path}: no such file")
    try:
        info = soundfile.info(path)
        return info.frames / info.samplerate
    except Exception:  # not a libsndfile format: decode it
        from ..audio.io import SAMPLE_RATE, load_audio

        return load_audio(path).size / SAMPLE_RATE


def check_manifest(
    path: str | os.PathLike,
    tokenizer=None,
    *,
    use_low_frame_rate: bool = True,
    max_duration: float = 30.0,
    max_tokens: int = 1500,
    chat=None,
) -> ManifestReport:
    """Validate a manifest: every line parses, every audio file decodes, lasts between 0.1 s and
    ``max_duration`` seconds, and (with a tokenizer) every example fits in ``max_tokens`` LLM positions
    (FunASR's ``max_token_length`` is 1500). ``chat``: the checkpoint's
    :class:`~funasr_nano.models.chat.ChatFormat` (``chat_format_for``; default: the tokenizer's template).

    Raises:
        ManifestError: a line does not parse (the first bad line; parsing stops there).
    """
    from ..audio.io import SAMPLE_RATE, load_audio
    from ..models.chat import ChatFormat
    from ..models.fun_asr_nano.frontend import Frontend
    from ..models.fun_asr_nano.prompt import build_prompt_ids, num_audio_tokens

    path = os.fspath(path)
    examples = read_manifest(path)
    frontend = Frontend()
    if chat is None and tokenizer is not None:  # default: the tokenizer's template (pass chat_format_for's)
        chat = ChatFormat.from_tokenizer(tokenizer)
    problems: list[str] = []
    durations: list[float] = []
    lengths: list[int] = []
    target_lengths: list[int] = []
    tasks: dict[str, int] = {}
    for example in examples:
        tasks[example.task] = tasks.get(example.task, 0) + 1
        num_audio = 0
        if example.audio is not None:
            try:
                samples = load_audio(example.audio).size
            except (AudioDecodeError, AudioTooShortError) as error:
                problems.append(f"{example.source}: {error}")
                continue
            duration = samples / SAMPLE_RATE
            durations.append(duration)
            if duration > max_duration:
                problems.append(f"{example.source}: audio is {duration:.1f} s, longer than {max_duration} s")
            num_audio = num_audio_tokens(frontend.num_frames(samples), use_low_frame_rate)
        if tokenizer is not None:
            prompt = build_prompt_ids(tokenizer, example.instruction, num_audio, chat=chat)
            target = len(tokenizer.encode(example.target + chat.end_of_turn, add_special_tokens=False))
            target_lengths.append(target)
            lengths.append(prompt.length + target)
            if lengths[-1] > max_tokens:
                problems.append(f"{example.source}: {lengths[-1]} tokens, more than {max_tokens}")
    return ManifestReport(
        path=path, examples=len(examples), tasks=tasks, audio_seconds=float(sum(durations)),
        min_duration=min(durations, default=0.0), max_duration=max(durations, default=0.0),
        max_tokens=max(lengths) if lengths else None,
        mean_target_tokens=sum(target_lengths) / len(target_lengths) if target_lengths else None,
        problems=tuple(problems),
    )


