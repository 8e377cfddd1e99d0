"""Manifests: the training and evaluation data, read from JSONL into typed :class:`Example` records.

Two line formats are read, and may be mixed in one file:

* **official** Fun-ASR fine-tuning format (``FunAudioLLM/Fun-ASR`` ``docs/finetune.md``): ChatML
  ``messages`` whose user turn holds the instruction and ``<|startofspeech|>!PATH<|endofspeech|>``,
  and whose assistant turn is the target::

    {"key": "u1", "messages": [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "语音转写：<|startofspeech|>!a.wav<|endofspeech|>"},
     {"role": "assistant", "content": "今天天气很好"}]}

* **simple**: ``{"audio": PATH, "target": TEXT, "task": "transcribe"|"translate"|"text_translate",
  "language": "zh", "source_text": TEXT}``; ``task`` defaults to ``transcribe``; ``text_translate``
  takes ``source_text`` and no audio; ``translate`` may carry the transcript as ``source_text``
  (it then also yields a text-only translation example, see :func:`text_translation_examples`).

Relative audio paths resolve against the manifest's folder. A line that cannot be used raises
:class:`~funasr_nano.errors.ManifestError` naming the file, the line number and the reason.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Iterable, Sequence

from ..errors import AudioDecodeError, AudioTooShortError, ManifestError
from ..models.fun_asr_nano.prompt import SYSTEM_PROMPT, TASKS

logger = logging.getLogger(__name__)

SPEECH_SPAN = re.compile(r"<\|startofspeech\|>(.*?)<\|endofspeech\|>", re.S)
SIMPLE_FIELDS = {"key", "audio", "target", "task", "language", "source_text", "duration"}


@dataclasses.dataclass(frozen=True)
class Example:
    """One training or evaluation example.

    Attributes:
        task: a name from :data:`funasr_nano.models.fun_asr_nano.prompt.TASKS`, or ``"custom"`` for an official-format
            line whose instruction is none of theirs.
        instruction: the user-turn text (before the audio slot when there is audio).
        target: the assistant's answer (the end-of-turn token is appended when tokenizing).
        audio: absolute path of the audio file, or ``None`` for a text-only example.
        source_text: the source-language text (transcript of a translation example), if given.
        language: language of the audio/source, if given.
        key: an id (the manifest's ``key``, else ``FILE:LINE``).
        duration: seconds of audio when the manifest says so, else ``None``.
        source: ``"FILE:LINE"`` it came from, for error messages.
    """

    task: str
    instruction: str
    target: str
    audio: str | None = None
    source_text: str | None = None
    language: str | None = None
    key: str = ""
    duration: float | None = None
    source: str = ""


def _resolve_audio(manifest: str, path: str) -> str:
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(manifest)), path)
    return os.path.normpath(path)


def _string(record: dict, field: str, fail, required: bool = False) -> str | None:
    value = record.get(field)
    if value is None:
        if required:
            fail(f'missing field "{field}"')
        return None
    if not isinstance(value, str):
        fail(f'field "{field}" must be a string, got {type(value).__name__}')
    if required and not value.strip():
        fail(f'field "{field}" is empty')
    return value


def _task_of(instruction: str, has_audio: bool) -> str:
    for task in TASKS.values():
        if task.uses_audio != has_audio:
            continue
        if task.uses_audio and instruction == task.instruction:
            return task.name
        if not task.uses_audio:
            head, _, tail = task.instruction.partition("{text}")
            if instruction.startswith(head) and instruction.endswith(tail) and len(instruction) > len(head + tail):
                return task.name
    return "custom"


def _parse_official(record: dict, manifest: str, fail) -> Example:
    messages = record["messages"]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        fail('"messages" must be a list of {"role", "content"} objects')
    roles = [m.get("role") for m in messages]
    for message in messages:
        if not isinstance(message.get("content"), str):
            fail(f'the {message.get("role")!r} message has no string "content"')
    if roles not in (["system", "user", "assistant"], ["user", "assistant"]):
        fail(f"expected messages system, user, assistant (one turn each), got {roles}; "
             "multi-turn conversations are not supported")
    if roles[0] == "system" and messages[0]["content"] != SYSTEM_PROMPT:
        fail(f"system prompt {messages[0]['content']!r} is not supported; use {SYSTEM_PROMPT!r}")
    user, target = messages[-2]["content"], messages[-1]["content"]
    if not target.strip():
        fail("the assistant message is empty")
    spans = list(SPEECH_SPAN.finditer(user))
    if len(spans) > 1:
        fail(f"the user message holds {len(spans)} audio clips; one is supported")
    audio = None
    instruction = user
    if spans:
        span = spans[0]
        if user[span.end():].strip():
            fail(f"text after <|endofspeech|> ({user[span.end():][:30]!r}) is not supported")
        reference = span[1]
        if not reference.startswith("!") or not reference[1:].strip():
            fail(f"the audio reference {reference!r} must be !PATH")
        audio = _resolve_audio(manifest, reference[1:].strip())
        instruction = user[: span.start()]
    key = record.get("key")
    return Example(task=_task_of(instruction, audio is not None), instruction=instruction, target=target,
                   audio=audio, key=str(key) if key is not None else "", language=record.get("language"))


def _parse_simple(record: dict, manifest: str, fail) -> Example:
    unknown = set(record) - SIMPLE_FIELDS
    if unknown:
        fail(f"unknown fields {sorted(unknown)}; a simple line has {sorted(SIMPLE_FIELDS)}")
    task_name = _string(record, "task", fail) or "transcribe"
    if task_name not in TASKS:
        fail(f'unknown task "{task_name}"; use one of {sorted(TASKS)}')
    task = TASKS[task_name]
    target = _string(record, "target", fail, required=True)
    source_text = _string(record, "source_text", fail)
    audio = _string(record, "audio", fail, required=task.uses_audio)
    if not task.uses_audio:
        if audio is not None:
            fail(f'task "{task_name}" takes no audio')
        if not (source_text and source_text.strip()):
            fail(f'task "{task_name}" needs "source_text"')
    duration = record.get("duration")
    if duration is not None and (not isinstance(duration, (int, float)) or duration <= 0):
        fail(f'"duration" must be a positive number of seconds, got {duration!r}')
    return Example(
        task=task_name, instruction=task.user_text(source_text), target=target,
        audio=_resolve_audio(manifest, audio) if audio else None, source_text=source_text,
        language=_string(record, "language", fail), key=str(record.get("key") or ""),
        duration=float(duration) if duration is not None else None,
    )


def parse_line(text: str, manifest: str, line: int) -> Example | None:
    """Parse one manifest line; ``None`` for a blank line.

    Raises:
        ManifestError: invalid JSON, neither format, or a field with a bad value.
    """
    if not text.strip():
        return None

    def fail(reason: str):
        raise ManifestError(manifest, line, reason)

    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"invalid JSON ({error.msg} at column {error.colno})")
    if not isinstance(record, dict):
        fail(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        example = _parse_official(record, manifest, fail)
    elif "target" in record or "audio" in record:
        example = _parse_simple(record, manifest, fail)
    else:
        fail('neither format: expected "messages" (official) or "audio"/"target" (simple)')
    source = f"{manifest}:{line}"
    return dataclasses.replace(example, source=source, key=example.key or source)


def read_manifest(path: str | os.PathLike) -> list[Example]:
    """Read a JSONL manifest (official and simple lines may be mixed).

    Returns:
        the examples in file order (blank lines skipped). Audio files are not opened; see
        :func:`check_manifest`.

    Raises:
        ManifestError: the file is missing or empty, or a line is invalid (``FILE:LINE: reason``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ManifestError(path, 0, "no such file")
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            example = parse_line(text, path, number)
            if example is not None:
                examples.append(example)
    if not examples:
        raise ManifestError(path, 0, "the manifest has no examples")
    return examples


def text_translation_examples(examples: Iterable[Example]) -> list[Example]:
    """Text-only translation examples derived from the speech translation examples that carry their
    transcript (``source_text``): the same target, no audio."""
    task = TASKS["text_translate"]
    return [
        dataclasses.replace(e, task=task.name, instruction=task.user_text(e.source_text), audio=None,
                            duration=None, key=e.key + "#text")
        for e in examples if e.task == "translate" and e.source_text
    ]


def example_to_simple(example: Example, manifest_dir: str | None = None) -> dict:
    """The simple-format record of ``example`` (audio relative to ``manifest_dir`` when given)."""
    record = {"key": example.key, "task": example.task, "target": example.target}
    if example.audio is not None:
        record["audio"] = os.path.relpath(example.audio, manifest_dir) if manifest_dir else example.audio
    for field in ("language", "source_text", "duration"):
        if getattr(example, field) is not None:
            record[field] = getattr(example, field)
    return record


def write_manifest(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write JSONL records (UTF-8, one object a line); returns the number written."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


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


def split_by_task(examples: Sequence[Example]) -> dict[str, list[Example]]:
    """Examples grouped by task name, each group in input order."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.task, []).append(example)
    return groups
