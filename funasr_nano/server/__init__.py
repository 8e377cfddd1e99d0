"""An OpenAI-compatible speech server (FastAPI + uvicorn; the ``server`` extra).

``funasr-nano serve --model DIR`` serves one loaded model: ``POST /v1/audio/transcriptions`` (every
``response_format``, ``stream=true`` server-sent events), ``POST /v1/audio/translations``, the
``/v1/realtime`` WebSocket (OpenAI's realtime transcription events), ``GET /v1/models`` and
``GET /health``, with dynamic batching of concurrent requests and bounded queues.

Modules, one job each: :mod:`.app` (the application, limits, health), :mod:`.routes` (the audio
endpoints), :mod:`.realtime` (the WebSocket), :mod:`.schema` (request fields derived from the option
dataclasses), :mod:`.batching` (the dynamic-batching engine), :mod:`.formats` (response bodies, events),
:mod:`.errors` (OpenAI's error JSON), :mod:`.config` (:class:`ServerOptions`).
"""

from .config import ServerOptions

__all__ = ["ServerOptions", "create_app"]


def create_app(model, options: ServerOptions | None = None):
    """See :func:`funasr_nano.server.app.create_app` (imports FastAPI only when called)."""
    from .app import create_app as create

    return create(model, options)
