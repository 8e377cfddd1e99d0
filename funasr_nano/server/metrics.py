"""``GET /metrics``: the server's counters in Prometheus' text format (prometheus-client), named by
Prometheus' conventions (``funasr_nano_`` prefix, base units, ``_total`` counters, ``_seconds``
histograms), as vLLM and speaches export theirs.

========================================================  =========  ==============================================
name                                                      type       what
========================================================  =========  ==============================================
``funasr_nano_http_requests_total{route,status}``         counter    HTTP responses (and WebSocket handshakes) by
                                                                     route template and status code
``funasr_nano_http_request_duration_seconds{route}``      histogram  request start -> response end
``funasr_nano_time_to_first_delta_seconds{route}``        histogram  request start -> first text delta (streamed
                                                                     transcriptions, realtime items)
``funasr_nano_audio_seconds_total{route}``                counter    seconds of audio transcribed or translated
``funasr_nano_requests_in_flight``                        gauge      admitted HTTP requests (decoding or queued)
``funasr_nano_queue_depth``                               gauge      generation calls waiting for the next batch
``funasr_nano_requests_refused_total``                    counter    requests refused with 429 (queue full)
``funasr_nano_batch_size``                                histogram  rows per engine batch
``funasr_nano_generated_tokens_total``                    counter    tokens generated (all batches)
``funasr_nano_cancellations_total``                       counter    requests cancelled because the client left
``funasr_nano_client_closed_requests_total``              counter    clients gone before their upload was complete
                                                                     (answered 499)
``funasr_nano_realtime_sessions_active``                  gauge      open realtime WebSocket sessions
``funasr_nano_realtime_sessions_total``                   counter    realtime sessions opened
========================================================  =========  ==============================================

Every application has its own registry (two servers in one process do not mix their figures). The
gauges and the batching counters are read from the server state when scraped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import ServerState

# route labels: the application's route templates; any other path is "other" (bounded label values)
ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/realtime", "/v1/models", "/health", "/metrics")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def route_label(path: str) -> str:
    """The ``route`` label of ``path``: one of :data:`ROUTES`, ``/v1/models/{model}``, or ``other``."""
    if path in ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "other"


class Metrics:
    """The Prometheus metrics of one server (``state``: its :class:`~funasr_nano.server.app.ServerState`).

    Raises:
        MissingDependencyError: prometheus-client is not installed (the ``server`` extra).
    """

    def __init__(self, state: "ServerState"):
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError as error:
            from ..errors import MissingDependencyError

            raise MissingDependencyError(f"the server's /metrics needs prometheus-client ({error}); install it with: "
                                         "pip install 'funasr-nano[server]'") from None
        self.state = state
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter("funasr_nano_http_requests", "HTTP responses by route and status code",
                                     ["route", "status"], registry=self.registry)
        self.http_duration = Histogram("funasr_nano_http_request_duration_seconds",
                                       "Time from the request's start to the end of its response", ["route"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.first_delta = Histogram("funasr_nano_time_to_first_delta_seconds",
                                     "Time from the request's start (realtime: the item's first audio) to its "
                                     "first text delta", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.audio_seconds = Counter("funasr_nano_audio_seconds", "Seconds of audio transcribed or translated",
                                     ["route"], registry=self.registry)
        self.registry.register(_StateCollector(state))

    def exposition(self) -> tuple[bytes, str]:
        """``(body, content type)`` of ``GET /metrics``."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector:
    """The gauges and batching counters, read from the server state at each scrape."""

    def __init__(self, state: "ServerState"):
        self.state = state

    def describe(self):
        return []  # collected fresh on every scrape

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        state = self.state
        stats = state.batching.stats
        counters = dict(state.counters)
        yield GaugeMetricFamily("funasr_nano_requests_in_flight", "Admitted HTTP requests (decoding or queued)",
                                value=state.requests.active)
        yield GaugeMetricFamily("funasr_nano_queue_depth", "Generation calls waiting for the next batch",
                                value=state.batching.waiting)
        yield CounterMetricFamily("funasr_nano_requests_refused", "Requests refused with 429 (queue full)",
                                  value=state.requests.refused)
        yield CounterMetricFamily("funasr_nano_generated_tokens", "Tokens generated (all batches)", value=stats.tokens)
        yield CounterMetricFamily("funasr_nano_cancellations", "Requests cancelled because their client went away",
                                  value=counters.get("cancelled", 0))
        yield CounterMetricFamily("funasr_nano_client_closed_requests",
                                  "Clients gone before their upload was complete (499)",
                                  value=counters.get("client_closed", 0))
        yield GaugeMetricFamily("funasr_nano_realtime_sessions_active", "Open realtime WebSocket sessions",
                                value=state.sessions.active)
        yield CounterMetricFamily("funasr_nano_realtime_sessions", "Realtime sessions opened",
                                  value=counters.get("realtime_sessions", 0))
        sizes = dict(stats.batch_sizes)
        buckets, cumulative = [], 0
        for bound in BATCH_BUCKETS:
            cumulative = sum(count for rows, count in sizes.items() if rows <= bound)
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", sum(sizes.values())))
        yield HistogramMetricFamily("funasr_nano_batch_size", "Rows per engine batch", buckets=buckets,
                                    sum_value=sum(rows * count for rows, count in sizes.items()))


class MetricsMiddleware:
    """ASGI middleware: counts every HTTP response (and WebSocket handshake) by route and status, and
    times it. Outermost, so that refusals of the other middleware (401, 413) are counted too."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        route = route_label(scope.get("path", ""))
        began = time.perf_counter()
        status = []

        async def observed_send(message):
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status.append(message["status"])
            elif kind == "websocket.accept":
                status.append(101)
            elif kind == "websocket.close" and not status:
                status.append(403)  # closed before accepting: uvicorn answers 403
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            code = str(status[0]) if status else ("499" if scope["type"] == "http" else "1006")
            self.metrics.http_requests.labels(route, code).inc()
            if scope["type"] == "http":
                self.metrics.http_duration.labels(route).observe(time.perf_counter() - began)
