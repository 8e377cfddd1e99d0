"""Manifests: the JSONL files listing speech examples (training and evaluation data, corpus inputs), read into
typed :class:`Example` records and written back.

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
  (training then also derives a text-only translation example from it:
  :func:`funasr_nano.training.data.text_translation_examples`).

Relative audio paths resolve against the manifest's folder. A line that cannot be used raises
:class:`~funasr_nano.errors.ManifestError` naming the file, the line number and the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Iterable

from .errors import ManifestError
from .models.fun_asr_nano.prompt import SYSTEM_PROMPT, TASKS

SPEECH_SPAN = re.compile(r"<\|startofspeech\|>(.*?)<\|endofspeech\|>", re.S)
SIMPLE_FIELDS = {"key", "audio", "target", "task", "language", "source_text", "duration"}


@dataclasses.dataclass(frozen=True)
class Example:
    """One example of a manifest (training, evaluation, or an input of a corpus job).

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
        :func:`funasr_nano.training.data.check_manifest`.

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


def write_manifest(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write JSONL records (UTF-8, one object a line); returns the number written."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
