"""Errors as the OpenAI API returns them: ``{"error": {"message", "type", "param", "code"}}`` with a
4xx status naming the problem (the ``openai`` client raises ``BadRequestError`` (400),
``PermissionDeniedError``/``NotFoundError``, ``RateLimitError`` (429), ... from them).

Bad input never gets a 500: every error the package raises on purpose for a request's audio or
options (:class:`funasr_nano.errors.FunASRNanoError`) maps to a 400 here; only a bug is a 500
(``server_error``), logged with its traceback, its message free of internals.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping, Sequence

from ..errors import (AudioDecodeError, AudioTooLongError, AudioTooShortError, FunASRNanoError, InvalidOptionError,
                      TranslatorError, UnsupportedLanguageError)

logger = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered to the client.

    Args:
        status: HTTP status (400, 404, 413, 429, 500, ...).
        message: what went wrong, naming the field or file.
        type: OpenAI's error type (``invalid_request_error``, ``rate_limit_exceeded``, ``server_error``).
        param: the request field at fault, or ``None``.
        code: a short machine-readable code (``invalid_value``, ``file_too_large``, ...), or ``None``.
        headers: extra response headers (``Retry-After``).
    """

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class UploadTooLarge(Exception):
    """A request body grew past the upload limit while it was read."""


class UploadTimeout(Exception):
    """A request body was not complete within the request timeout."""


def too_large(limit: int) -> APIError:
    """The 413 for a request body over ``limit`` bytes (``funasr-nano serve --max-upload-mb``)."""
    return APIError(413, f"the request body is larger than the server's upload limit of {limit / (1 << 20):g} MB "
                         "(funasr-nano serve --max-upload-mb)", param="file", code="file_too_large")


def param_in_message(message: str, params: Sequence[str]) -> str | None:
    """The first of ``params`` that ``message`` names (``max_new_tokens must be ...``), or ``None``."""
    found = [(match.start(), name) for name in params if (match := re.search(rf"\b{re.escape(name)}\b(?!=)", message))]
    return min(found)[1] if found else None


def from_exception(error: BaseException, *, file_name: str | None = None, params: Sequence[str] = ()) -> APIError:
    """The :class:`APIError` for an exception raised while serving a request.

    ``file_name`` (the uploaded file's name) replaces the anonymous ``<N bytes>`` in audio errors so that
    the message names the file the client sent; an option error's ``param`` is the first of ``params``
    its message names. Anything that is not a :class:`FunASRNanoError` is a bug: 500, logged with its
    traceback.
    """
    if isinstance(error, APIError):
        return error
    message = str(error)
    if file_name is not None:
        message = re.sub(r"<\d+ bytes>|<_io\.BytesIO object at 0x[0-9a-fA-F]+>", repr(file_name), message)
    if isinstance(error, AudioDecodeError):
        return APIError(400, message, param="file", code="invalid_audio")
    if isinstance(error, AudioTooShortError):
        return APIError(400, message, param="file", code="audio_too_short")
    if isinstance(error, AudioTooLongError):
        return APIError(400, message + " (send vad=true)", param="file", code="audio_too_long")
    if isinstance(error, UnsupportedLanguageError):
        return APIError(400, message, param="language", code="unsupported_language")
    if isinstance(error, TranslatorError):
        return APIError(400, message, param="model", code="unsupported_task")
    if isinstance(error, InvalidOptionError):
        return APIError(400, message, param=param_in_message(message, params), code="invalid_value")
    if isinstance(error, FunASRNanoError):
        return APIError(400, message, code="invalid_request")
    logger.error("internal error: %s: %s", type(error).__name__, error, exc_info=error)
    return APIError(500, f"internal error ({type(error).__name__}); the server log has the details",
                    type="server_error", code="internal_error")
