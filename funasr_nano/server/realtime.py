"""``/v1/realtime``: live transcription over a WebSocket, with OpenAI's realtime transcription events,
on the live streaming session (:class:`funasr_nano.pipeline.streaming.StreamingSession`).

Client events (JSON text messages):

* ``session.update`` (``{"session": {"type": "transcription", "audio": {"input": {"format": {"type":
  "audio/pcm", "rate": 16000}, "transcription": {"model", "language", "prompt", ...},
  "turn_detection": {"type": "server_vad", "threshold", "prefix_padding_ms", "silence_duration_ms"}}}}}``)
  or the beta ``transcription_session.update`` (``input_audio_format``, ``input_audio_transcription``,
  ``turn_detection``). ``transcription`` also takes, as extensions, every field of
  :class:`~funasr_nano.options.TranscribeOptions` and :class:`~funasr_nano.pipeline.streaming.StreamingOptions`
  (``hotwords``, ``itn``, ``max_new_tokens``, ``chunk_duration``, ``rollback_tokens``, ...) and ``task``:
  ``transcribe`` (default) or ``translate`` (live speech translation), with ``mode`` for ``translate``:
  ``unified`` (the speech LLM translates, a model or LoRA adapter trained for it; previews are English)
  or ``cascade`` (the item is transcribed live, then each sentence of its final transcript is translated
  by the server's translator: no previews, one ``delta`` per English sentence as soon as it is
  translated, and the transcript in ``completed.source_transcript``); default: the server's
  ``translation_mode``. The default format is OpenAI's: PCM16 at 24 kHz (any rate is resampled to
  16 kHz). Settings change only between items: before the first audio or right after a commit.
* ``input_audio_buffer.append`` (``audio``: base64 little-endian PCM16 mono);
* ``input_audio_buffer.commit``: ends the current item now (what the VAD has not closed yet is final);
* ``input_audio_buffer.clear``: drops the audio not yet final.

Server events: ``session.created`` / ``session.updated``; per item (one VAD segment: a pause longer
than ``silence_duration_ms``, default 2 s, ends it; so does a commit): ``input_audio_buffer.speech_started``,
``conversation.item.input_audio_transcription.delta`` (append-only previews while the speech goes on:
the part of the partial result that the next re-decode keeps), ``input_audio_buffer.speech_stopped``,
``input_audio_buffer.committed``, a last ``...delta`` with the rest of the text when it extends the
previews, and ``conversation.item.input_audio_transcription.completed`` (``transcript``: the segment
decoded afresh, exactly as offline transcription with VAD decodes it; it may revise the previews; with
the ``word_timestamps`` extension, ``words``: ``[{"word", "start", "end"}]`` as verbose JSON's, seconds
from the start of the session);
``input_audio_buffer.cleared``; ``error`` (``{"type", "code", "message", "param", "event_id"}``) for a bad
event, which leaves the connection open.

Partial re-decodes of all sessions go through the batching engine like HTTP requests. A client that
disconnects cancels the decoding in progress.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import WebSocket

from ..options import TRANSLATION_MODES, TranscribeOptions
from ..pipeline.streaming import StreamingOptions
from ..results import join_texts
from . import schema
from .batching import RequestCancelled, RequestContext, request_context
from .errors import APIError, from_exception
from .formats import words_json
from .routes import prompt_hotwords, stable_text, turn_detection_fields

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..pipeline.streaming import StreamingEvent, StreamingSession
    from .app import ServerState

logger = logging.getLogger(__name__)

DEFAULT_RATE = 24000  # OpenAI's realtime PCM16 rate
TASKS = ("transcribe", "translate")
MAX_WAITING_MESSAGES = 256  # client messages read ahead of the decoder (then the socket pushes back)
TRY_AGAIN_LATER = 1013  # WebSocket close code
SERVICE_RESTART = 1012  # WebSocket close code: the server is draining (between items)
POLL_SECONDS = 0.25  # how often an idle session checks for the drain and its idle limit


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """A realtime session's settings."""

    rate: int = DEFAULT_RATE
    options: TranscribeOptions = dataclasses.field(default_factory=TranscribeOptions)
    streaming: StreamingOptions = dataclasses.field(default_factory=StreamingOptions)
    task: str = "transcribe"
    prompt: str | None = None
    mode: str | None = None  # translate: unified or cascade (None: the server's translation_mode)


@dataclasses.dataclass
class _Item:
    item_id: str
    sent: str = ""
    began: float = dataclasses.field(default_factory=time.perf_counter)  # its speech_started event


class RealtimeConnection:
    """One WebSocket client: its settings, its live session and its items."""

    def __init__(self, websocket: WebSocket, state: "ServerState"):
        self.websocket = websocket
        self.state = state
        self.session_id = _id("sess")
        self.config = SessionConfig()
        self.context = RequestContext(name=f"realtime {state.next_number()}")
        self.session: "StreamingSession | None" = None
        self.offset = 0.0  # seconds of audio before the current live session
        self.items: dict[int, _Item] = {}
        self.previous_item_id: str | None = None
        self.carry = b""  # an odd byte of PCM16 waiting for its partner
        self.appended = 0  # bytes appended since the last commit or clear

    @property
    def between_items(self) -> bool:
        """No item in progress (no live session, no audio since the last commit or clear)."""
        return self.session is None and not self.appended

    # -- events out -----------------------------------------------------------------------------------

    async def send(self, event: dict) -> None:
        await self.websocket.send_text(json.dumps({"event_id": _id("event"), **event}, ensure_ascii=False))

    async def send_error(self, error: APIError, client_event_id: str | None = None) -> None:
        body = error.body()["error"]
        body["event_id"] = client_event_id
        await self.send({"type": "error", "error": body})

    def session_json(self) -> dict:
        config, vad = self.config, self.config.streaming.vad_options
        transcription = {"model": self.state.model_id, "language": config.options.language, "task": config.task}
        if config.task == "translate":
            transcription["mode"] = self.translation_mode(config)
        if config.prompt:
            transcription["prompt"] = config.prompt
        return {
            "id": self.session_id, "object": "realtime.transcription_session", "type": "transcription",
            "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": config.rate},
                "transcription": transcription,
                "turn_detection": {"type": "server_vad", "threshold": vad.threshold,
                                   "prefix_padding_ms": int(round(vad.speech_pad * 1000)),
                                   "silence_duration_ms": int(round(vad.max_merge_gap * 1000))},
            }},
        }

    # -- events in ------------------------------------------------------------------------------------

    def parse_config(self, event: dict) -> SessionConfig:
        """The settings of a ``session.update`` / ``transcription_session.update``.

        Raises:
            APIError: 400 naming the bad field.
        """
        session = event.get("session")
        if not isinstance(session, dict):
            raise APIError(400, "session.update needs a 'session' object", param="session", code="invalid_value")
        audio_input = (session.get("audio") or {}).get("input") or {}
        if not isinstance(audio_input, dict):
            raise APIError(400, "session.audio.input must be an object", param="session.audio.input")
        rate = self.config.rate
        audio_format = audio_input.get("format")
        if audio_format is not None:
            if not isinstance(audio_format, dict) or audio_format.get("type", "audio/pcm") != "audio/pcm":
                raise APIError(400, "only audio/pcm (PCM16) input is supported", param="session.audio.input.format",
                               code="invalid_value")
            rate = audio_format.get("rate", DEFAULT_RATE)
        legacy_format = session.get("input_audio_format")
        if legacy_format is not None:
            if legacy_format != "pcm16":
                raise APIError(400, f"input_audio_format {legacy_format!r} is not supported; use pcm16",
                               param="session.input_audio_format", code="invalid_value")
            rate = DEFAULT_RATE
        if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 192000:
            raise APIError(400, f"the audio rate must be an integer in [8000, 192000] Hz, got {rate!r}",
                           param="session.audio.input.format.rate", code="invalid_value")
        transcription = audio_input.get("transcription", session.get("input_audio_transcription")) or {}
        if not isinstance(transcription, dict):
            raise APIError(400, "transcription settings must be an object", param="session.audio.input.transcription")
        values = dict(transcription)
        values.pop("model", None)
        prompt = values.pop("prompt", None)
        task = values.pop("task", self.config.task)
        if task not in TASKS:
            raise APIError(400, f"task must be one of {', '.join(TASKS)}, got {task!r}", param="task",
                           code="invalid_value")
        mode = values.pop("mode", self.config.mode)
        if mode is not None and mode not in TRANSLATION_MODES:
            raise APIError(400, f"mode must be one of {', '.join(TRANSLATION_MODES)}, got {mode!r}", param="mode",
                           code="invalid_value")
        cascade = task == "translate" and (mode or self.state.options.translation_mode) == "cascade"
        if cascade:
            self._translator()  # a usable translator, checked now
        elif task != "transcribe" and not self.state.model.supports_task(task):
            raise APIError(400, f"this model was not trained for the {task} task (its tasks: "
                                f"{', '.join(self.state.model.tasks)})", param="task", code="unsupported_task")
        turn = audio_input.get("turn_detection", session.get("turn_detection"))
        if turn is not None:
            values.update(turn_detection_fields(turn, "turn_detection"))
        if prompt:
            hotwords = values.get("hotwords") or []
            values["hotwords"] = ([hotwords] if isinstance(hotwords, str) else list(hotwords)) + prompt_hotwords(prompt)
        streaming_values, rest = schema.split_fields(values, StreamingOptions)
        known = {field.name for field in schema.option_fields(TranscribeOptions)}
        unknown = sorted(set(rest) - known)
        if unknown:
            raise APIError(400, f"unknown transcription setting(s): {', '.join(unknown)}", param=unknown[0],
                           code="unknown_parameter")
        options = schema.build_options(TranscribeOptions, rest, base=self.config.options)
        streaming = schema.build_options(StreamingOptions, streaming_values, base=self.config.streaming)
        config = SessionConfig(rate=rate, options=options, streaming=streaming, task=task, prompt=prompt, mode=mode)
        try:  # checked against the model now (language, lengths), not at the first audio
            self._open_session(config)
        except Exception as error:
            fields = [f.name for f in schema.option_fields(TranscribeOptions) + schema.option_fields(StreamingOptions)]
            raise from_exception(error, params=fields) from None
        return config

    def translation_mode(self, config: SessionConfig | None = None) -> str:
        return (config or self.config).mode or self.state.options.translation_mode

    @property
    def cascade(self) -> bool:
        """Whether items are transcribed, then translated sentence by sentence."""
        return self.config.task == "translate" and self.translation_mode() == "cascade"

    def _translator(self):
        """The cascade translator: the server's (``ServerOptions.translator``), else the speech model's own
        LLM on its text translation task.

        Raises:
            APIError: 400 when the model has no text translation task and the server no translator.
        """
        from ..pipeline.translators import resolve_translator

        if self.state.translator is not None:
            return self.state.translator
        try:
            return resolve_translator(self.state.model, "cascade", None)
        except Exception as error:
            raise APIError(400, f"mode cascade: {error} (funasr-nano serve --translation-mode cascade --translator "
                                "PATH)", param="mode", code="unsupported_task") from None

    def _open_session(self, config: SessionConfig | None = None) -> "StreamingSession":
        from ..pipeline.streaming import StreamingSession

        config = config or self.config
        cascade = config.task == "translate" and self.translation_mode(config) == "cascade"
        return StreamingSession(self.state.model, config.options, streaming_options=config.streaming,
                                sample_rate=config.rate, task="transcribe" if cascade else config.task)

    def _translate_sentence(self, sentence: str) -> str:
        """Cascade: one source sentence in English (in the thread pool; stops when the client goes away)."""
        from ..options import TranslationOptions, resolve
        from ..pipeline.translators import translate_text

        options = resolve(TranslationOptions, None, {"mode": "cascade", "temperature": self.config.options.decoding.temperature})
        with request_context(self.context):
            if self.context.cancel.is_set():
                raise RequestCancelled(self.context.name)
            return translate_text(self._translator(), sentence, options, self.context.cancel).strip()

    def _feed(self, pcm: np.ndarray) -> list[tuple["StreamingEvent", str]]:
        """Feed audio (in the thread pool); events with the text each partial's next re-decode keeps."""
        with request_context(self.context):
            if self.session is None:
                self.session = self._open_session()
            return [(event, self._kept(event)) for event in self.session.feed(pcm)]

    def _finish(self) -> tuple[list[tuple["StreamingEvent", str]], float]:
        with request_context(self.context):
            if self.session is None:
                return [], 0.0
            events = self.session.finish()
            return [(event, event.text) for event in events], self.session.transcription().duration

    def _kept(self, event: "StreamingEvent") -> str:
        """The part of a partial text that stays in the next partials: the text minus its last
        ``rollback_tokens`` tokens (the next re-decode's prefix), minus an unfinished end."""
        if event.final:
            return event.text
        tokenizer = self.state.model.tokenizer
        ids = tokenizer.encode(event.text, add_special_tokens=False)
        k = self.config.streaming.rollback_tokens
        kept = tokenizer.decode(ids[: len(ids) - k] if len(ids) > k else [], skip_special_tokens=True)
        return stable_text(kept.strip())

    async def handle_events(self, events: list[tuple["StreamingEvent", str]]) -> None:
        for event, kept in events:
            item = self.items.get(event.index)
            if item is None:
                item = self.items[event.index] = _Item(_id("item"))
                await self.send({"type": "input_audio_buffer.speech_started", "item_id": item.item_id,
                                 "audio_start_ms": int(round((self.offset + event.start) * 1000))})
            if not event.final:
                if not self.cascade and kept.startswith(item.sent) and len(kept) > len(item.sent):
                    await self._delta(item, kept)
                continue
            await self.send({"type": "input_audio_buffer.speech_stopped", "item_id": item.item_id,
                             "audio_end_ms": int(round((self.offset + event.end) * 1000))})
            await self.send({"type": "input_audio_buffer.committed", "item_id": item.item_id,
                             "previous_item_id": self.previous_item_id})
            extra = {}
            if self.cascade:  # each sentence of the transcript translated, sent as soon as it is
                from ..pipeline.translate import split_sentences

                english: list[str] = []
                for sentence in split_sentences(event.text, final=True)[0]:
                    english.append(await self.state.run(self._translate_sentence, sentence))
                    await self._delta(item, join_texts(english))
                transcript, extra = join_texts(english), {"source_transcript": event.text}
            else:
                transcript = event.text
                if transcript.startswith(item.sent) and len(transcript) > len(item.sent):
                    await self._delta(item, transcript)
                if event.words is not None:  # the session asked for word_timestamps
                    extra = {"words": words_json([event.to_segment()], self.offset)}
            await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item.item_id,
                             "content_index": 0, "transcript": transcript, **extra,
                             "usage": {"type": "duration", "seconds": round(event.end - event.start, 3)},
                             "start": round(self.offset + event.start, 3), "end": round(self.offset + event.end, 3)})
            self.previous_item_id = item.item_id

    async def _delta(self, item: _Item, text: str) -> None:
        if not item.sent:
            self.state.metrics.first_delta.labels("/v1/realtime").observe(time.perf_counter() - item.began)
        await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item.item_id,
                         "content_index": 0, "delta": text[len(item.sent):]})
        item.sent = text

    async def _end_session(self) -> float:
        """Close the live session: its remaining events are sent; returns its audio's seconds."""
        events, duration = await self.state.run(self._finish)
        await self.handle_events(events)
        self.state.metrics.audio_seconds.labels("/v1/realtime").inc(duration)
        self.offset += duration
        self.session = None
        self.items = {}
        return duration

    async def on_event(self, event: Any) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise APIError(400, "an event must be a JSON object with a 'type'", param="type", code="invalid_event")
        kind = event["type"]
        if kind in ("session.update", "transcription_session.update"):
            if self.session is not None or self.appended:
                raise APIError(400, "settings change only between items: commit the audio buffer first",
                               param="session", code="session_update_while_streaming")
            self.config = self.parse_config(event)
            updated = "session.updated" if kind == "session.update" else "transcription_session.updated"
            await self.send({"type": updated, "session": self.session_json()})
        elif kind == "input_audio_buffer.append":
            audio = event.get("audio")
            if not isinstance(audio, str):
                raise APIError(400, "input_audio_buffer.append needs 'audio': base64 PCM16", param="audio",
                               code="invalid_value")
            try:
                data = self.carry + base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError):
                raise APIError(400, "audio is not valid base64", param="audio", code="invalid_value") from None
            self.appended += len(data) - len(self.carry)
            usable = len(data) - len(data) % 2
            self.carry = data[usable:]
            if usable:
                pcm = np.frombuffer(data[:usable], dtype="<i2")
                await self.handle_events(await self.state.run(self._feed, pcm))
        elif kind == "input_audio_buffer.commit":
            if not self.appended:
                raise APIError(400, "the input audio buffer is empty: nothing to commit", param="audio",
                               code="input_audio_buffer_commit_empty")
            had_items = set(self.items)
            self.carry = b""
            self.appended = 0
            before = self.previous_item_id
            await self._end_session()
            if self.previous_item_id == before and not had_items:  # no speech in the buffer: an empty item
                item_id = _id("item")
                await self.send({"type": "input_audio_buffer.committed", "item_id": item_id,
                                 "previous_item_id": self.previous_item_id})
                await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                                 "content_index": 0, "transcript": "", "usage": {"type": "duration", "seconds": 0}})
                self.previous_item_id = item_id
        elif kind == "input_audio_buffer.clear":
            if self.session is not None:
                self.offset += self.session.transcription().duration
            self.session, self.items, self.carry, self.appended = None, {}, b"", 0
            await self.send({"type": "input_audio_buffer.cleared"})
        else:
            raise APIError(400, f"unknown or unsupported event type {kind!r}", param="type", code="unknown_event")


def add_routes(app: "FastAPI", state: "ServerState") -> None:
    from fastapi import WebSocketDisconnect

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket):
        """Live transcription (OpenAI's realtime transcription events; module docstring)."""
        if state.draining:
            from fastapi.responses import JSONResponse

            error = state.shutting_down()
            return await websocket.send_denial_response(JSONResponse(error.body(), status_code=503,
                                                                     headers=error.headers))
        # a browser fails the handshake unless one offered subprotocol is chosen: "realtime" (OpenAI's),
        # never the openai-insecure-api-key.<key> one (the key is checked by the auth middleware)
        await websocket.accept(subprotocol="realtime" if "realtime" in websocket.scope.get("subprotocols", ()) else None)
        if not state.sessions.enter():
            connection = RealtimeConnection(websocket, state)
            await connection.send_error(APIError(429, f"the server is busy ({state.options.max_sessions} realtime "
                                                      "sessions); retry later", type="rate_limit_exceeded",
                                                 code="rate_limit_exceeded"))
            await websocket.close(code=TRY_AGAIN_LATER)
            return
        state.count("realtime_sessions")
        connection = RealtimeConnection(websocket, state)
        inbox: asyncio.Queue = asyncio.Queue(MAX_WAITING_MESSAGES)

        async def read() -> None:  # reads ahead, so that a disconnect is seen while decoding
            try:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    await inbox.put(message.get("text"))  # None: a binary message
            except Exception:  # the connection broke
                pass
            finally:
                connection.context.cancel.set()  # the client is gone: stop its decoding
                await inbox.put(StopAsyncIteration)

        reader = asyncio.ensure_future(read())
        try:
            await connection.send({"type": "session.created", "session": connection.session_json()})
            idle_since = time.monotonic()
            while True:
                try:
                    message = await asyncio.wait_for(inbox.get(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    if state.draining and connection.between_items:
                        await websocket.close(code=SERVICE_RESTART, reason="the server is shutting down")
                        break
                    if time.monotonic() - idle_since > state.options.realtime_idle_timeout:
                        await connection.send_error(APIError(
                            408, f"no event for {state.options.realtime_idle_timeout:g} s: closing the idle session "
                                 "(funasr-nano serve --realtime-idle-timeout)", code="idle_timeout"))
                        await websocket.close(code=1000, reason="idle")
                        break
                    continue
                idle_since = time.monotonic()
                if message is StopAsyncIteration:
                    break
                client_event_id = None
                try:
                    if message is None:
                        raise APIError(400, "send events as JSON text messages", code="invalid_event")
                    try:
                        event = json.loads(message)
                    except ValueError:
                        raise APIError(400, "an event must be JSON", code="invalid_json") from None
                    client_event_id = event.get("event_id") if isinstance(event, dict) else None
                    await connection.on_event(event)
                except RequestCancelled:
                    break
                except Exception as error:
                    api = from_exception(error)
                    if api.status >= 500:
                        state.count("errors_5xx")
                    await connection.send_error(api, client_event_id)
        except (WebSocketDisconnect, RuntimeError):  # the client went away while we were sending
            pass
        finally:
            connection.context.cancel.set()
            reader.cancel()
            state.sessions.leave()
            with contextlib.suppress(Exception):
                await websocket.close()
