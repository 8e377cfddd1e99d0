"""The server's own settings (the ``funasr-nano serve`` flags derive from this dataclass, as the
transcription flags derive from :class:`funasr_nano.options.TranscribeOptions`)."""

from __future__ import annotations

import dataclasses

from ..errors import InvalidOptionError
from ..options import TRANSLATION_MODES
from ..validation import check_choice, check_integer, check_number

MB = 1 << 20  # bytes in the MB of max_upload_mb


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How the speech server runs.

    Attributes:
        host: address to listen on (127.0.0.1: this machine only).
        port: TCP port (0: any free port; the address is logged).
        max_upload_mb: request bodies larger than this many MB (1 MB = 2^20 bytes) are refused with 413;
            OpenAI's limit is 25.
        max_queue: HTTP requests admitted at once (being decoded or waiting for the model); one more gets
            429 with Retry-After.
        batch_window: seconds the scheduler waits after the first request of a batch for more to join it
            (requests arriving together are decoded as one batch; not used on the llama.cpp engine, which
            batches continuously).
        max_batch_size: most utterances decoded together in one batch; 1 turns dynamic batching off
            (requests are decoded one at a time, in arrival order). On the llama.cpp engine: the most
            rows per decoding step (new rows join the running batch at the next step).
        arrival_wait: longest extra wait (seconds, beyond batch_window) for requests admitted but still
            reading their upload or running the encoder, so that they join the batch (0: never wait).
        max_sessions: realtime WebSocket sessions at once; one more is refused (error event, close code 1013).
        translation_mode: how /v1/audio/translations translates by default: unified (the speech LLM
            translates in one pass) or cascade (transcribe, then translate each sentence).
        translator: cascade translator of /v1/audio/translations and realtime task translate: a chat LLM GGUF
            file or a folder of one (llama.cpp; funasr-nano export gguf LLM_DIR OUT_DIR writes one), or a
            transformers chat LLM or Marian/NLLB folder (default: the speech model's own LLM on its text
            translation task).
        model_name: the model id clients see in GET /v1/models (default: the model folder's name, or
            funasr-nano-demo for the embedded demo model).
        api_key: API keys clients must send (Authorization: Bearer KEY, or the realtime subprotocol
            openai-insecure-api-key.KEY); repeatable; never logged (also: api_key_file, FUNASR_NANO_API_KEY).
        api_key_file: a file of API keys, one per line (blank lines and # comments skipped).
        public_paths: paths served without an API key.
        allow_unauthenticated: serve a non-loopback host without an API key (anyone who reaches the port
            can use the server).
        shutdown_timeout: seconds SIGTERM/SIGINT waits for requests in flight and realtime items to
            finish (new ones get 503) before the server exits; a second signal exits at once.
        request_timeout: seconds a client has to send a request's body, from its headers to its last
            byte (a slower upload gets 408).
        keep_alive_timeout: seconds an idle keep-alive HTTP connection stays open.
        max_uploads: request bodies being received at once (uploads are read before a request takes one
            of the max_queue slots, so that stalled uploads cannot hold them); one more gets 429.
        max_connections: open connections (HTTP and WebSocket) at once; more get 503.
        realtime_idle_timeout: seconds a realtime session may stay silent (no client event) before the
            server closes it.
        ws_ping_interval: seconds between WebSocket pings (a client that does not answer within as many
            seconds is disconnected).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 25.0
    max_queue: int = 64
    batch_window: float = 0.01
    max_batch_size: int = 16
    arrival_wait: float = 0.5
    max_sessions: int = 16
    translation_mode: str = "unified"
    translator: str | None = None
    model_name: str | None = None
    api_key: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    api_key_file: str | None = None
    public_paths: tuple[str, ...] = ("/health",)
    allow_unauthenticated: bool = False
    shutdown_timeout: float = 30.0
    request_timeout: float = 60.0
    keep_alive_timeout: float = 5.0
    max_uploads: int = 256
    max_connections: int = 1024
    realtime_idle_timeout: float = 300.0
    ws_ping_interval: float = 20.0

    def __post_init__(self):
        check_integer("port", self.port, 0, 65535)
        for name in ("shutdown_timeout", "batch_window", "arrival_wait"):
            check_number(name, getattr(self, name), 0.0)
        for name in ("max_upload_mb", "request_timeout", "keep_alive_timeout", "realtime_idle_timeout",
                     "ws_ping_interval"):
            check_number(name, getattr(self, name), 0.0, low_open=True)
        for name in ("batch_window", "arrival_wait"):
            if getattr(self, name) > 5:
                raise InvalidOptionError(f"{name} must be at most 5 s (it delays batches), got {getattr(self, name)}")
        for name in ("max_queue", "max_batch_size", "max_sessions", "max_uploads", "max_connections"):
            check_integer(name, getattr(self, name), 1)
        check_choice("translation_mode", self.translation_mode, TRANSLATION_MODES)
        if self.translator is not None and self.translation_mode != "cascade":
            raise InvalidOptionError("translator is only used with translation_mode cascade")
        if not isinstance(self.api_key, tuple) or any(not isinstance(key, str) or not key or
                                                      any(c.isspace() for c in key) for key in self.api_key):
            raise InvalidOptionError("api_key must be a tuple of non-empty strings without spaces")  # never a key
        for path in self.public_paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise InvalidOptionError(f"public_paths must be paths starting with '/', got {path!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)
