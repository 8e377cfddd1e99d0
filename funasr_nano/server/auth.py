"""API keys: every HTTP route and the realtime WebSocket ask for one, as vLLM's and llama.cpp's
servers (``--api-key``) and OpenAI's API do.

A client sends ``Authorization: Bearer <key>`` (what the ``openai`` client sends from its ``api_key``);
the realtime WebSocket also takes the key from the ``openai-insecure-api-key.<key>`` subprotocol, which
OpenAI's browser clients use because a browser cannot set headers on a WebSocket. Keys are compared in
constant time (:func:`hmac.compare_digest`, against every configured key). A missing or wrong key gets
401 with OpenAI's error JSON (``code: invalid_api_key``); a refused WebSocket handshake gets the same
401 response, before the connection is accepted. The paths of ``ServerOptions.public_paths``
(``/health`` by default) need no key.

Keys come from ``--api-key`` (repeatable), ``--api-key-file`` (one key per line; blank lines and
``#`` comments skipped) and the environment variable :data:`ENV_VAR` (read by the CLI); they are never
logged. Without a key, :func:`check_exposure` refuses a host other machines can reach unless
``allow_unauthenticated`` is set.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
from typing import Iterable, Sequence

from ..errors import InvalidOptionError
from .errors import APIError

logger = logging.getLogger(__name__)

ENV_VAR = "FUNASR_NANO_API_KEY"
SUBPROTOCOL_PREFIX = "openai-insecure-api-key."  # OpenAI's browser clients (openai-node, openai-realtime-api-beta)


def load_api_keys(keys: Sequence[str], key_file: str | None) -> tuple[str, ...]:
    """``keys`` plus the keys of ``key_file`` (one per line; blank lines and ``#`` comments skipped).

    Raises:
        InvalidOptionError: the file cannot be read or holds no key (naming the file, never a key).
    """
    found = list(keys)
    if key_file is not None:
        try:
            with open(key_file, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidOptionError(f"api_key_file {key_file!r}: cannot read it ({getattr(error, 'strerror', None) or error})") from None
        from_file = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not from_file:
            raise InvalidOptionError(f"api_key_file {key_file!r} holds no key (one key per line)")
        found += from_file
    for key in found:
        if not key or any(character.isspace() for character in key):
            raise InvalidOptionError("an API key must be a non-empty string without spaces")
    return tuple(dict.fromkeys(found))


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback one (only this machine can connect).
    An unresolvable host counts as reachable (binding it fails later with its own error)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except OSError:
        return False
    try:
        return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)
    except ValueError:
        return False


def check_exposure(host: str, keys: Sequence[str], allow_unauthenticated: bool) -> None:
    """Refuse to serve ``host`` without a key when other machines can reach it.

    Raises:
        InvalidOptionError: ``host`` is not a loopback address, no key is set and
            ``allow_unauthenticated`` is false.
    """
    if keys or allow_unauthenticated or is_loopback(host):
        return
    raise InvalidOptionError(f"--host {host} is reachable from other machines and no API key is set: give --api-key "
                             f"(or --api-key-file, or {ENV_VAR}), or --allow-unauthenticated to serve anyone")


def unauthorized(provided: bool) -> APIError:
    """OpenAI's 401 for a missing (``provided`` false) or wrong key."""
    message = ("Incorrect API key provided." if provided else
               "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (the openai client's api_key).")
    return APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class APIKeyAuth:
    """ASGI middleware: requests (HTTP and WebSocket) outside ``public_paths`` need one of ``keys``.

    Args:
        app: the application.
        keys: the accepted keys (non-empty).
        public_paths: exact paths served without a key.
    """

    def __init__(self, app, keys: Iterable[str], public_paths: Iterable[str] = ("/health",)):
        self.app = app
        self._keys = [key.encode() for key in keys]
        if not self._keys:
            raise ValueError("APIKeyAuth needs at least one key")
        self.public_paths = frozenset(public_paths)

    def valid(self, candidate: str) -> bool:
        """Whether ``candidate`` is one of the keys, in time independent of where they differ."""
        data = candidate.encode("utf-8", "surrogateescape")
        found = False
        for key in self._keys:  # every key compared: the time does not say which one matched
            found |= hmac.compare_digest(data, key)
        return found

    def candidates(self, scope) -> list[str]:
        """The keys the request offers: the ``Authorization: Bearer`` one, and for a WebSocket the
        ``openai-insecure-api-key.<key>`` subprotocols."""
        offered = []
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    offered.append(credentials.strip())
        if scope["type"] == "websocket":
            offered += [protocol[len(SUBPROTOCOL_PREFIX):] for protocol in scope.get("subprotocols") or []
                        if protocol.startswith(SUBPROTOCOL_PREFIX)]
        return offered

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.public_paths:
            return await self.app(scope, receive, send)
        offered = self.candidates(scope)
        if any(self.valid(candidate) for candidate in offered):
            return await self.app(scope, receive, send)
        error = unauthorized(bool(offered))
        logger.info("refused %s %s: %s API key", scope["type"], scope.get("path"), "wrong" if offered else "no")
        body = json.dumps(error.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"www-authenticate", b"Bearer")]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if "websocket.http.response" in (scope.get("extensions") or {}):  # a real 401 for the handshake
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # the server cannot answer the handshake itself: closing before accepting is a 403
            await send({"type": "websocket.close", "code": 1008})
