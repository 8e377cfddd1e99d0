"""``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations``: OpenAI's multipart requests.

Fields (multipart form):

* OpenAI's: ``file`` (required), ``model`` (any value is accepted: the server serves one model),
  ``language``, ``prompt`` (hotwords: split at commas and new lines, added to ``hotwords``),
  ``response_format`` (``json`` | ``text`` | ``srt`` | ``verbose_json`` | ``vtt``),
  ``timestamp_granularities[]`` (``segment``, ``word``: ``verbose_json`` only; ``word`` sets
  ``word_timestamps`` and adds OpenAI's ``words`` array), ``temperature, ``stream`` (transcriptions),
  ``chunking_strategy`` (``auto`` or a ``server_vad`` object: VAD on, with its settings);
* every field of the option dataclasses (:mod:`.schema`): transcriptions take
  :class:`~funasr_nano.options.TranscribeOptions` (``hotwords``, ``itn``, ``vad``, ``max_duration``, VAD
  and decoding fields), translations :class:`~funasr_nano.options.TranslationOptions` (``mode``, ...).

An unknown field, a bad value, unreadable audio or an unknown format is a 400 naming it. With
``stream=true`` the transcript comes as server-sent events generated as the model decodes
(:mod:`.formats`). A client that disconnects cancels its generation (the batching engine stops its
rows; ``GET /health`` counts it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Sequence

from fastapi import Request

from ..options import TranscribeOptions, TranslationOptions
from ..results import join_texts
from . import formats, schema
from .batching import RequestCancelled, RequestContext, request_context
from .errors import APIError, UploadTimeout, UploadTooLarge, from_exception, too_large

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .app import ServerState

logger = logging.getLogger(__name__)

MAX_FIELDS = 200  # form fields in one request
MAX_FIELD_BYTES = 1 << 20  # bytes of one non-file field


# -- reading the request ---------------------------------------------------------------------------------


async def read_form(request: Request, state: "ServerState") -> tuple[dict[str, list], Any]:
    """``({field: [values]}, upload)`` of a multipart request; ``name[]`` is ``name``.

    Raises:
        APIError: 413 over the upload limit; 400 for a body that is not a form, a malformed form, or
            a missing, empty or repeated ``file``; 429 with ``max_uploads`` uploads in progress; 408 for a body slower than ``request_timeout``; 499 (:func:`client_closed`) when the client goes away
            before the body is complete.
    """
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException
    from starlette.requests import ClientDisconnect

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise APIError(400, "send the request as multipart/form-data with the audio in the field 'file' "
                            f"(got content type {content_type or 'none'!r})", code="invalid_content_type")
    if not state.uploads.enter():  # uploads have their own bound, apart from the decoding slots
        raise state.too_busy("uploads", state.options.max_uploads)
    try:
        form = await request.form(max_files=2, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except UploadTooLarge:
        raise too_large(state.options.max_upload_bytes) from None
    except ClientDisconnect:
        raise client_closed("while sending its upload") from None
    except UploadTimeout:
        raise APIError(408, f"the request body was not complete within {state.options.request_timeout:g} s "
                            "(funasr-nano serve --request-timeout)", code="request_timeout",
                       headers={"Connection": "close"}) from None
    except MultiPartException as error:
        raise APIError(400, f"malformed multipart form: {error.message}", code="invalid_form") from None
    finally:
        state.uploads.leave()
    values: dict[str, list] = {}
    for key, value in form.multi_items():
        name = key[:-2] if key.endswith("[]") else key
        values.setdefault(name, []).append(value)
    uploads = values.pop("file", [])
    if not uploads:
        raise APIError(400, "the field 'file' (the audio) is missing", param="file", code="missing_file")
    if len(uploads) > 1 or not isinstance(uploads[0], UploadFile):
        raise APIError(400, "'file' must be one uploaded file", param="file", code="invalid_file")
    for name, items in values.items():
        if any(not isinstance(item, str) for item in items):
            raise APIError(400, f"{name} must be a text field, not a file", param=name, code="invalid_value")
    return values, uploads[0]


def client_closed(when: str) -> APIError:
    """The error of a client that went away (nginx's 499 "client closed request"): a 4xx-class event,
    logged at info level without a traceback; nobody reads the answer."""
    return APIError(499, f"client closed request {when}", code="client_closed_request")


def _single(values: dict[str, list], name: str, default: str | None = None) -> str | None:
    items = values.pop(name, None)
    if not items:
        return default
    if len(items) > 1:
        raise APIError(400, f"{name} was given {len(items)} times", param=name, code="invalid_value")
    return items[0]


def _response_format(values: dict[str, list]) -> str:
    value = _single(values, "response_format", "json")
    if value not in formats.RESPONSE_FORMATS:
        raise APIError(400, f"response_format {value!r} is not supported; use one of "
                            f"{', '.join(formats.RESPONSE_FORMATS)}", param="response_format", code="invalid_value")
    return value


def _flag(values: dict[str, list], name: str) -> bool:
    value = _single(values, name, "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise APIError(400, f"{name} must be true or false, got {value!r}", param=name, code="invalid_value")
    return value in ("true", "1")


def prompt_hotwords(prompt: str | None) -> list[str]:
    """``prompt`` as hotwords: the pieces between commas (also ，、;；) and new lines."""
    if not prompt:
        return []
    return [piece.strip() for piece in re.split(r"[,，、;；\n]", prompt) if piece.strip()]


def turn_detection_fields(config: Any, param: str) -> dict[str, Any]:
    """VAD fields from an OpenAI ``server_vad`` object: ``threshold``, ``prefix_padding_ms`` (->
    ``speech_pad``), ``silence_duration_ms`` (the pause that ends a segment -> ``max_merge_gap``).

    Raises:
        APIError: 400 for anything else.
    """
    if not isinstance(config, dict) or config.get("type", "server_vad") != "server_vad":
        raise APIError(400, f"{param} must be 'auto' or a server_vad object", param=param, code="invalid_value")
    unknown = sorted(set(config) - {"type", "threshold", "prefix_padding_ms", "silence_duration_ms",
                                    "create_response", "interrupt_response", "idle_timeout_ms"})
    if unknown:
        raise APIError(400, f"{param}: unknown field(s) {', '.join(unknown)}", param=param, code="unknown_parameter")
    out: dict[str, Any] = {}
    for key, field, scale in (("threshold", "threshold", 1.0), ("prefix_padding_ms", "speech_pad", 1e-3),
                              ("silence_duration_ms", "max_merge_gap", 1e-3)):
        if config.get(key) is not None:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise APIError(400, f"{param}.{key} must be a number, got {value!r}", param=param, code="invalid_value")
            out[field] = value * scale
    return out


def _chunking(values: dict[str, list]) -> dict[str, Any]:
    value = _single(values, "chunking_strategy")
    if value is None:
        return {}
    if value.strip() == "auto":
        return {"vad": True}
    try:
        config = json.loads(value)
    except ValueError:
        raise APIError(400, "chunking_strategy must be 'auto' or a JSON server_vad object", param="chunking_strategy",
                       code="invalid_value") from None
    return {"vad": True, **turn_detection_fields(config, "chunking_strategy")}


def _unknown(values: dict[str, list], known: Sequence[str]) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise APIError(400, f"unknown parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
                       param=unknown[0], code="unknown_parameter")


def transcription_request(values: dict[str, list], state: "ServerState"):
    """``(TranscribeOptions, response_format, stream, temperature)`` from the form fields."""
    response_format = _response_format(values)
    stream = _flag(values, "stream")
    if stream and response_format not in formats.STREAM_FORMATS:
        raise APIError(400, f"stream=true sends text events; use response_format json or text, not {response_format}",
                       param="response_format", code="invalid_value")
    _single(values, "model")
    hotwords = prompt_hotwords(_single(values, "prompt"))
    granularities = values.pop("timestamp_granularities", [])
    for granularity in granularities:
        if granularity not in formats.GRANULARITIES:
            raise APIError(400, f"timestamp_granularities {granularity!r} is not supported; use "
                                f"{' or '.join(formats.GRANULARITIES)}", param="timestamp_granularities",
                           code="invalid_value")
    if "word" in granularities:
        if response_format != "verbose_json":  # as OpenAI's API answers
            raise APIError(400, "timestamp_granularities[]=word needs response_format=verbose_json",
                           param="timestamp_granularities", code="invalid_value")
        values["word_timestamps"] = ["true"]
    for include in values.pop("include", []):
        raise APIError(400, f"include {include!r} is not supported (the engines return no token scores)",
                       param="include", code="invalid_value")
    chunking = _chunking(values)
    _unknown(values, [field.name for field in schema.option_fields(TranscribeOptions)])
    if hotwords:
        values["hotwords"] = values.get("hotwords", []) + hotwords
    fields: dict[str, Any] = {**chunking, **values}
    options = schema.build_options(TranscribeOptions, fields)
    return options, response_format, stream, tuple(granularities)


def translation_request(values: dict[str, list], state: "ServerState"):
    """``(TranslationOptions, response_format)`` from the form fields (``prompt`` is accepted and not
    used: the translation prompt has no context slot)."""
    response_format = _response_format(values)
    _single(values, "model")
    _single(values, "prompt")
    _unknown(values, [field.name for field in schema.option_fields(TranslationOptions)])
    base = TranslationOptions(mode=state.options.translation_mode)
    return schema.build_options(TranslationOptions, values, base=base), response_format


# -- running it --------------------------------------------------------------------------------------------


async def _wait_for_disconnect(request: Request) -> None:
    """Returns when the client has gone (the body has been read, so ``receive`` only reports that)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_cancellable(request: Request, state: "ServerState", context: RequestContext, function, *args):
    """``function(*args)`` in the thread pool under ``context``; when the client disconnects first, the
    request is cancelled (its generation stops) and :class:`RequestCancelled` is raised."""
    def work():
        with request_context(context):
            return function(*args)

    future = asyncio.ensure_future(state.run(work))
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not future.done():
        context.cancel.set()
        state.count("cancelled")
        logger.info("%s: client disconnected; cancelling", context.name)
        try:
            await future
        except Exception:
            pass
        raise RequestCancelled(context.name)
    return future.result()


def _audio_error(error: BaseException, upload_name: str | None, fields: Sequence[str]) -> APIError:
    return from_exception(error, file_name=upload_name, params=fields)


def add_routes(app: "FastAPI", state: "ServerState") -> None:
    from fastapi.responses import Response, StreamingResponse

    transcribe_fields = schema.option_fields(TranscribeOptions)
    translate_fields = schema.option_fields(TranslationOptions)

    def form_schema(own: dict, cls: type) -> dict:
        return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {**own, **schema.openapi_properties(cls, exclude=own)}}}}}}

    common = {
        "file": {"type": "string", "format": "binary", "description": "the audio (wav, flac, mp3, ogg, m4a, webm, ...)"},
        "model": {"type": "string", "description": "accepted and echoed in /v1/models; this server serves one model"},
        "prompt": {"type": "string", "description": "hotwords, separated by commas or new lines"},
        "response_format": {"type": "string", "enum": list(formats.RESPONSE_FORMATS), "default": "json"},
    }
    transcription_extra = form_schema({
        **common,
        "stream": {"type": "boolean", "default": False,
                   "description": "server-sent events transcript.text.delta ... transcript.text.done"},
        "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": ["segment"]}},
        "chunking_strategy": {"type": "string", "description": "'auto' or a server_vad JSON object: VAD on"},
    }, TranscribeOptions)
    translation_extra = form_schema(common, TranslationOptions)

    async def admitted(request: Request, kind: str):
        if not state.requests.enter():
            raise state.too_busy("requests", state.options.max_queue)
        context = RequestContext(name=f"{kind} {state.next_number()}", preparing=True)
        state.preparing.add(context)
        state.count("requests")
        return context

    def leave(context: RequestContext) -> None:
        context.preparing = False
        state.preparing.discard(context)
        state.requests.leave()

    @app.post("/v1/audio/transcriptions", openapi_extra=transcription_extra)
    async def transcriptions(request: Request):
        """Speech -> text in the language spoken (OpenAI's ``audio.transcriptions.create``)."""
        state.begin_request()  # 503 while draining
        try:
            return await transcribe(request)
        finally:
            state.end_request()

    @app.post("/v1/audio/translations", openapi_extra=translation_extra)
    async def translations(request: Request):
        """Speech -> English text (OpenAI's ``audio.translations.create``), unified or cascade."""
        state.begin_request()
        try:
            return await translate(request)
        finally:
            state.end_request()

    async def transcribe(request: Request):
        began = time.perf_counter()
        # the upload is read before admission: a client stalled mid-upload holds no admission slot
        values, upload = await read_form(request, state)
        options, response_format, stream, granularities = transcription_request(values, state)
        audio = await upload.read()
        name = upload.filename or "file"
        context = await admitted(request, "transcription")
        release = _once(lambda: leave(context))
        try:
            if stream:
                options = _with_batch_size(options, 1)  # segments one at a time: each streams in order
                try:
                    segments, info = await run_cancellable(request, state, context, state.model.transcribe_segments,
                                                           audio, options)
                except RequestCancelled:
                    return Response(status_code=499)
                except Exception as error:
                    raise _audio_error(error, name, [f.name for f in transcribe_fields]) from None
                events = _stream_events(state, context, segments, info, options, release, began)
                release = _once(lambda: None)  # the stream releases its admission when it ends
                return StreamingResponse(events, media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            options = _with_batch_size(options, state.options.max_batch_size)
            try:
                result = await run_cancellable(request, state, context, state.model.transcribe, audio, options)
            except RequestCancelled:
                return Response(status_code=499)
            except Exception as error:
                raise _audio_error(error, name, [f.name for f in transcribe_fields]) from None
            body, media_type = formats.render(result, response_format, task="transcribe",
                                              temperature=options.decoding.temperature, granularities=granularities)
            state.metrics.audio_seconds.labels(request.url.path).inc(result.duration)
            state.served(time.perf_counter() - began)
            return Response(body, media_type=media_type)
        finally:
            release()

    async def translate(request: Request):
        began = time.perf_counter()
        values, upload = await read_form(request, state)  # before admission, as transcriptions
        options, response_format = translation_request(values, state)
        audio = await upload.read()
        name = upload.filename or "file"
        context = await admitted(request, "translation")
        try:
            translator = state.translator if options.mode == "cascade" else None
            try:
                translation = await run_cancellable(request, state, context, _translate, state, audio, options,
                                                    translator, context)
            except RequestCancelled:
                return Response(status_code=499)
            except Exception as error:
                raise _audio_error(error, name, [f.name for f in translate_fields]) from None
            result = translation.to_transcription(options.target_language)
            body, media_type = formats.render(result, response_format, task="translate",
                                              temperature=options.decoding.temperature)
            state.metrics.audio_seconds.labels(request.url.path).inc(translation.duration)
            state.served(time.perf_counter() - began)
            return Response(body, media_type=media_type)
        finally:
            leave(context)


def _once(function):
    done = []

    def call():
        if not done:
            done.append(True)
            function()
    return call


def _with_batch_size(options: TranscribeOptions, batch_size: int) -> TranscribeOptions:
    import dataclasses

    return dataclasses.replace(options, batch_size=batch_size)


def _translate(state: "ServerState", audio: bytes, options: TranslationOptions, translator, context: RequestContext):
    """The :class:`~funasr_nano.pipeline.translate.Translation` of ``audio``; the event stream is closed
    (which stops its generation) as soon as the request is cancelled."""
    from ..pipeline.translate import TranslationFinished

    events = state.model.translate_stream(audio, options, translator=translator)
    try:
        for event in events:
            if context.cancel.is_set():
                raise RequestCancelled(context.name)
            if isinstance(event, TranslationFinished):
                return event.translation
    finally:
        events.close()
    raise AssertionError("translate_stream ended without TranslationFinished")


# -- streaming ----------------------------------------------------------------------------------------------


def stable_length(tokens: Sequence[int], options) -> int:
    """How many leading ``tokens`` no later step can change: the repetition guard
    (:func:`funasr_nano.pipeline.decoding.cut_repetition`) may cut a tail that repeats, so every
    trailing run of two or more copies of an n-gram (n <= ``guard_max_ngram``) is held back."""
    if not options.repetition_guard:
        return len(tokens)
    tokens = list(tokens)
    n, hold = len(tokens), 0
    for period in range(1, min(options.guard_max_ngram, n // 2) + 1):
        repeats = 1
        while (repeats + 1) * period <= n and tokens[n - (repeats + 1) * period: n - repeats * period] == tokens[n - period:]:
            repeats += 1
        if repeats >= 2:
            hold = max(hold, repeats * period)
    return n - hold


def stable_text(text: str) -> str:
    """``text`` without the end that later tokens may still change: an incomplete UTF-8 character
    (U+FFFD), whitespace (runs are folded) and the start of a ``/sil`` marker (removed)."""
    text = text.rstrip("\ufffd")
    for cut in ("/si", "/s", "/"):
        if text.endswith(cut):
            text = text[: -len(cut)]
            break
    return text.rstrip()


async def _stream_events(state: "ServerState", context: RequestContext, segments, info, options: TranscribeOptions,
                         release, began: float):
    """Server-sent events of a transcription as it is decoded: a ``transcript.text.delta`` whenever
    the text that can no longer change grows, then ``transcript.text.done`` with the whole text (equal to
    the deltas joined, and to ``model.transcribe``)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    context.on_token = lambda call, row, tokens: put(("tokens", list(tokens))) if row == 0 else None

    def work() -> None:
        try:
            with request_context(context):
                for segment in segments:
                    put(("segment", segment))
            put(("end", None))
        except BaseException as error:  # handed to the event loop
            put(("error", error))

    future = loop.run_in_executor(state.executor, work)
    future.add_done_callback(lambda _: release())
    model, decoding = state.model, options.decoding
    done_texts: list[str] = []
    current: list[int] = []
    sent = ""
    finished = False
    route = "/v1/audio/transcriptions"
    last_end = 0.0  # seconds: the audio's length when the header did not say
    first_delta = state.metrics.first_delta.labels(route)

    def delta(text: str) -> str:
        if not sent:
            first_delta.observe(time.perf_counter() - began)
        return formats.sse(formats.delta_event(text))

    def visible() -> str:
        partial = stable_text(model.decode_text(current[: stable_length(current, decoding)])) if current else ""
        if not info.vad:
            return done_texts[0] if done_texts else partial
        return join_texts(done_texts + [partial])

    try:
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            end = error = None
            for kind, value in items:
                if kind == "tokens":
                    current = value
                elif kind == "segment":
                    done_texts.append(value.text)
                    last_end = value.end
                    current = []
                elif kind == "end":
                    end = True
                else:
                    error = value
            if error is not None:
                finished = True
                if isinstance(error, RequestCancelled):
                    return
                api = from_exception(error)
                yield formats.sse(api.body())
                return
            if end:
                text = done_texts[0] if (not info.vad and done_texts) else join_texts(done_texts)
                if text.startswith(sent) and len(text) > len(sent):
                    yield delta(text[len(sent):])
                elif not text.startswith(sent):
                    logger.warning("%s: streamed text %r is not a prefix of the final text %r", context.name, sent, text)
                yield formats.sse(formats.done_event(text))
                state.metrics.audio_seconds.labels(route).inc(info.duration if info.duration is not None else last_end)
                finished = True
                state.served(time.perf_counter() - began)
                return
            now = visible()
            if now.startswith(sent) and len(now) > len(sent):
                yield delta(now[len(sent):])
                sent = now
    finally:
        if not finished:  # the client went away (the response was cancelled)
            context.cancel.set()
            state.count("cancelled")
            logger.info("%s: client disconnected during the stream; cancelling", context.name)
