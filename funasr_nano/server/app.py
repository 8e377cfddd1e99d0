"""The FastAPI application: one loaded model behind OpenAI's audio API.

:func:`create_app` wraps the model's engine in a :class:`~funasr_nano.server.batching.BatchingEngine`
(dynamic batching), and serves

* ``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` (:mod:`.routes`);
* ``GET /v1/realtime`` (WebSocket, OpenAI's realtime transcription events: :mod:`.realtime`);
* ``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /health`` (status and counters);
* ``GET /metrics`` (Prometheus' text format: :mod:`.metrics`).

With API keys (``ServerOptions.api_key``/``api_key_file``), every route but ``public_paths`` needs
one (:mod:`.auth`). Limits: request bodies over ``max_upload_mb`` get 413 (checked against ``Content-Length`` before
reading, and counted while reading); more than ``max_queue`` requests at once get 429 with
``Retry-After``; every error is OpenAI's error JSON (:mod:`.errors`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING

from ..version import __version__
from .batching import BatchingEngine
from .config import ServerOptions
from .errors import APIError, UploadTimeout, UploadTooLarge, too_large

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..pipeline.speech_model import SpeechModel

logger = logging.getLogger(__name__)

DEMO_MODEL_NAME = "funasr-nano-demo"


class Admission:
    """At most ``limit`` holders at once; :meth:`enter` never waits."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0
        self.refused = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                self.refused += 1
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


class ServerState:
    """What the routes share: the model (on the batching engine), the settings, the thread pool that
    runs the blocking work, admission counters and request counters."""

    def __init__(self, model: "SpeechModel", options: ServerOptions):
        from ..pipeline.speech_model import SpeechModel
        from ..pipeline.translators import resolve_translator

        self.options = options
        self.preparing: set = set()  # contexts of admitted requests not yet at their first generation call
        self.batching = BatchingEngine(model.engine, batch_window=options.batch_window,
                                       max_batch_size=options.max_batch_size, arriving=self.arriving,
                                       arrival_wait=options.arrival_wait)
        self.model = SpeechModel(model.family, self.batching, model.adapters)
        self.model_id = options.model_name or self._default_name(model)
        self.requests = Admission(options.max_queue)
        self.sessions = Admission(options.max_sessions)
        self.uploads = Admission(options.max_uploads)  # bodies being received (before admission)
        # every admitted request and session has a thread: no hidden queue in front of the scheduler
        self.executor = concurrent.futures.ThreadPoolExecutor(options.max_queue + options.max_sessions,
                                                              thread_name_prefix="funasr-nano-request")
        self.translator = None
        if options.translation_mode == "cascade":  # loaded (and checked) once, before serving
            # a translator path is loaded with the speech engine's threads (the unwrapped model's)
            self.translator = resolve_translator(model if options.translator else self.model, "cascade",
                                                 options.translator)
        self.counters = {"requests": 0, "cancelled": 0, "client_closed": 0, "errors_4xx": 0, "errors_5xx": 0,
                         "realtime_sessions": 0}
        self._latency = 1.0  # seconds, moving average of served requests (for Retry-After)
        self._lock = threading.Lock()
        self.started = time.time()
        self.metrics = None  # the application's Metrics (set by create_app)
        self.draining = False  # set on SIGTERM (runner.GracefulServer): new work gets 503
        self.open_requests = 0  # audio requests begun (uploading, queued, decoding), streamed ones until sent
        self._numbers = iter(range(1, 1 << 62))

    @staticmethod
    def _default_name(model: "SpeechModel") -> str:
        from ..load import DEFAULT_LIGHT_MODEL, DEFAULT_MODEL

        path = os.path.abspath(getattr(model.family, "path", "") or "")
        if path in (os.path.abspath(DEFAULT_MODEL), os.path.abspath(DEFAULT_LIGHT_MODEL)):
            return DEMO_MODEL_NAME
        return os.path.basename(path.rstrip(os.sep)) or "funasr-nano"

    def arriving(self) -> int:
        """Admitted requests on their way to their first generation call."""
        return sum(1 for context in list(self.preparing) if context.preparing)

    def next_number(self) -> int:
        with self._lock:
            return next(self._numbers)

    def count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def served(self, seconds: float) -> None:
        with self._lock:
            self._latency = 0.8 * self._latency + 0.2 * seconds

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about one request's time at the current load."""
        with self._lock:
            return max(1, math.ceil(self._latency))

    def begin_request(self) -> None:
        """Count an audio request in flight (the drain waits for it).

        Raises:
            APIError: 503 while draining.
        """
        if self.draining:
            raise self.shutting_down()
        with self._lock:
            self.open_requests += 1

    def end_request(self) -> None:
        with self._lock:
            self.open_requests -= 1

    def busy(self) -> bool:
        """Whether requests or realtime sessions are still in flight."""
        return self.open_requests > 0 or self.requests.active > 0 or self.sessions.active > 0

    def shutting_down(self) -> APIError:
        return APIError(503, "the server is shutting down; retry on another instance or after the restart",
                        type="server_error", code="service_unavailable",
                        headers={"Retry-After": str(max(1, math.ceil(self.options.shutdown_timeout)))})

    def too_busy(self, what: str, limit: int) -> APIError:
        return APIError(429, f"the server is busy ({limit} {what} in progress); retry later",
                        type="rate_limit_exceeded", code="rate_limit_exceeded",
                        headers={"Retry-After": str(self.retry_after())})

    async def run(self, function, *args):
        """``function(*args)`` in the request thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def health(self) -> dict:
        stats = self.batching.stats
        return {
            "status": "ok",
            "model": self.model_id,
            "engine": self.batching.name,
            "uptime_s": round(time.time() - self.started, 1),
            "requests_active": self.requests.active,
            "requests_refused": self.requests.refused,
            "realtime_sessions_active": self.sessions.active,
            "limits": {"max_queue": self.options.max_queue, "max_upload_mb": self.options.max_upload_mb,
                       "max_batch_size": self.options.max_batch_size, "batch_window": self.options.batch_window,
                       "arrival_wait": self.options.arrival_wait,
                       "max_sessions": self.options.max_sessions, "max_connections": self.options.max_connections,
                       "max_uploads": self.options.max_uploads,
                       "request_timeout": self.options.request_timeout,
                       "shutdown_timeout": self.options.shutdown_timeout},
            "counters": dict(self.counters),
            "batching": {"calls": stats.calls, "batches": stats.batches, "rows": stats.rows,
                         "max_rows": stats.max_rows,
                         "batch_sizes": {str(k): v for k, v in sorted(stats.batch_sizes.items())},
                         "cancelled_calls": stats.cancelled_calls, "cancelled_tokens": stats.cancelled_tokens},
        }

    def close(self) -> None:
        """Stop the scheduler and the threads (the wrapped engine stays open: the caller owns the model)."""
        self.batching.shutdown()
        self.executor.shutdown(wait=False, cancel_futures=True)


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413, before reading when
    ``Content-Length`` says so, else as soon as the bytes read pass the limit (the route turns
    :class:`UploadTooLarge` into the 413); a body not complete ``timeout`` seconds after the app first
    asks for it raises :class:`UploadTimeout` (the route's 408)."""

    def __init__(self, app, limit: int, timeout: float):
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            from fastapi.responses import JSONResponse

            error = too_large(self.limit)
            response = JSONResponse(error.body(), status_code=413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        received = 0
        deadline = None
        complete = False

        async def counting_receive():
            nonlocal received, deadline, complete
            if complete:  # after the body, receive only reports a disconnect: no deadline
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise UploadTimeout() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise UploadTooLarge()
                complete = not message.get("more_body", False)
            return message

        return await self.app(scope, counting_receive, send)


def create_app(model: "SpeechModel", options: ServerOptions | None = None) -> "FastAPI":
    """The application serving ``model`` (any :func:`funasr_nano.load_model` result) with ``options``.

    The model's engine is wrapped for dynamic batching; the model itself is not closed when the
    application stops (its owner closes it).

    Raises:
        TranslatorError: ``translation_mode`` cascade with a translator that cannot be used.
        InvalidOptionError: an ``api_key_file`` that cannot be read or holds no key.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from . import realtime, routes

    from .auth import APIKeyAuth, load_api_keys

    from .metrics import Metrics, MetricsMiddleware

    options = options or ServerOptions()
    keys = load_api_keys(options.api_key, options.api_key_file)  # before loading anything: a bad file fails first
    state = ServerState(model, options)
    state.metrics = Metrics(state)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        state.close()

    app = FastAPI(title="funasr-nano", description="OpenAI-compatible speech recognition and translation",
                  version=__version__, lifespan=lifespan)
    app.state.server = state

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        state.count("errors_5xx" if error.status >= 500 else "errors_4xx")
        if error.status == 499:  # the client went away: nobody reads the answer
            state.count("client_closed")
            logger.info("%s %s: %s", request.method, request.url.path, error.message)
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        state.count("errors_5xx" if error.status_code >= 500 else "errors_4xx")
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        body = APIError(error.status_code, str(error.detail), code=code).body()
        return JSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        state.count("errors_4xx")
        first = (error.errors() or [{}])[0]
        param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        body = APIError(400, f"{param or 'request'}: {first.get('msg', 'invalid request')}", param=param,
                        code="invalid_value").body()
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):  # a bug: logged, never shown
        from .errors import from_exception

        state.count("errors_5xx")
        api = from_exception(error)
        return JSONResponse(api.body(), status_code=api.status)

    @app.get("/health")
    async def health():
        """Status, limits and counters (requests, cancellations, batch sizes); 503 while draining."""
        status = state.health()
        if state.draining:
            status["status"] = "draining"
            return JSONResponse(status, status_code=503, headers=state.shutting_down().headers)
        return status

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        """The counters in Prometheus' text format (:mod:`.metrics`)."""
        from fastapi.responses import Response

        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models():
        """The one model this server serves (OpenAI's model list)."""
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{model_id:path}")
    async def model_card(model_id: str):
        if model_id != state.model_id:
            raise APIError(404, f"model {model_id!r} is not served here; this server serves {state.model_id!r}",
                           param="model", code="model_not_found")
        return _model_card(state)

    routes.add_routes(app, state)
    realtime.add_routes(app, state)
    app.add_middleware(_BodyLimit, limit=options.max_upload_bytes, timeout=options.request_timeout)
    if keys:  # outermost: a request without a key reaches nothing else
        app.add_middleware(APIKeyAuth, keys=keys, public_paths=options.public_paths)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost: counts every refusal too
    return app


def _model_card(state: ServerState) -> dict:
    return {"id": state.model_id, "object": "model", "created": int(state.started), "owned_by": "funasr-nano",
            "tasks": list(state.model.tasks), "engine": state.batching.name}
