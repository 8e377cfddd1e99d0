"""``funasr-nano serve [--model DIR] [--host 127.0.0.1] [--port 8000] [--engine ...] [--max-upload-mb N]
[--max-queue N] ...``: OpenAI's audio API over HTTP (:mod:`funasr_nano.server`), the model loaded once.

The server flags derive from :class:`funasr_nano.server.ServerOptions`, as the transcription flags
derive from the option dataclasses. The socket is bound before the model loads, so a port in use is
one clear error (exit 2); ``--port 0`` picks a free port, and the address is logged. Without an API key
a non-loopback ``--host`` is refused unless ``--allow-unauthenticated`` (:mod:`funasr_nano.server.auth`).
SIGTERM/SIGINT drain the server, then it exits 0 (:mod:`funasr_nano.server.runner`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
from typing import Mapping

from ..errors import InvalidOptionError, MissingDependencyError
from ..options import AdapterOptions
from ..server.config import ServerOptions  # dataclasses only: FastAPI loads when the server starts
from .options import add_family_flags, add_model_flags, add_option_flags, load_model_from_args, options_from_args

logger = logging.getLogger("funasr_nano.cli")


def add_parser(commands, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("serve", help="serve a model over HTTP with OpenAI's audio API", parents=parents,
                                 description="Serve one model: POST /v1/audio/transcriptions and /v1/audio/translations, "
                                             "the /v1/realtime WebSocket, GET /v1/models and /health; concurrent "
                                             "requests are decoded in batches.")
    add_model_flags(parser)
    add_option_flags(parser, AdapterOptions, exclude=("translator",))  # --lora (ServerOptions has --translator)
    add_family_flags(parser, "serve")  # --aligner (Qwen3-ASR), ...
    add_option_flags(parser, ServerOptions)
    parser.set_defaults(run=run)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        InvalidOptionError: the address cannot be bound (in use, not this machine's), naming it.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise InvalidOptionError(f"--host {host}: {error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise InvalidOptionError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None
    return sock


def with_environment_key(options, environ: Mapping[str, str]):
    """``options`` with the key of the environment variable ``FUNASR_NANO_API_KEY`` (if set) added."""
    from ..server.auth import ENV_VAR

    key = environ.get(ENV_VAR, "").strip()
    if not key:
        return options
    return dataclasses.replace(options, api_key=options.api_key + (key,))


def run(args: argparse.Namespace) -> int:
    from ..server.auth import check_exposure, load_api_keys

    options = options_from_args(ServerOptions, args)  # bad values fail here, before loading the model
    adapters = options_from_args(AdapterOptions, args)
    options = with_environment_key(options, os.environ)
    keys = load_api_keys(options.api_key, options.api_key_file)
    check_exposure(options.host, keys, options.allow_unauthenticated)
    try:
        import importlib.util

        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401

        if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
            raise ImportError("No module named 'python_multipart'")  # FastAPI's form parser
    except ImportError as error:
        raise MissingDependencyError(f"the server needs FastAPI, uvicorn, python-multipart and prometheus-client "
                                     f"({error}); install them with: pip install 'funasr-nano[server]'") from None
    from ..server import create_app
    from ..server.runner import GracefulServer, uvicorn_config

    sock = bind(options.host, options.port)
    try:
        model = load_model_from_args(args, lora=adapters.adapters("default"))
        try:
            app = create_app(model, options)
            host, port = sock.getsockname()[:2]
            url_host = f"[{host}]" if ":" in host else host
            for name in ("funasr_nano.cli", "funasr_nano.server"):
                logging.getLogger(name).setLevel(logging.INFO)
            logger.info("serving %s (%s engine) on http://%s:%d (batch window %g s, up to %d per batch; queue %d; "
                        "uploads up to %g MB; %s)", app.state.server.model_id, model.engine.name, url_host, port,
                        options.batch_window, options.max_batch_size, options.max_queue, options.max_upload_mb,
                        f"{len(keys)} API key{'s' if len(keys) > 1 else ''}" if keys else "no API key")
            config = uvicorn_config(app, options, log_level="info" if args.verbose else "warning",
                                    access_log=args.verbose)
            GracefulServer(config, app.state.server).run(sockets=[sock])
        finally:
            model.close()
    finally:
        sock.close()
    return 0
