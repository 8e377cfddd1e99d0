"""The native packages behind GGUF, imported on first use: ``gguf`` (gguf-py, llama.cpp's file format) and
``llama_cpp`` (llama-cpp-python), each with an error naming the extra when it is missing; llama.cpp's own log
routed to :mod:`logging`. Used by the GGUF export (:mod:`.gguf`, :mod:`.gguf_architectures`) and the llama.cpp
engine.
"""

from __future__ import annotations

import ctypes
import logging
import threading

from ..errors import MissingDependencyError

LLAMA_EXTRA_HINT = "pip install 'funasr-nano[llama]'"


def import_gguf():
    """The ``gguf`` module, or a :class:`MissingDependencyError` (an ``ImportError``) naming the extra."""
    try:
        import gguf
    except ImportError as error:
        raise MissingDependencyError(f"GGUF export needs the gguf package: {LLAMA_EXTRA_HINT}") from error
    return gguf


# llama.cpp's own messages go to this logger instead of stderr
NATIVE_LOGGER = "funasr_nano.llama_cpp"
# ggml_log_level (ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5) -> logging level; llama.cpp's
# INFO is chatty (every load logs ~300 lines), so it becomes DEBUG
_NATIVE_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_native = {"callback": None, "level": logging.DEBUG}
_native_lock = threading.Lock()


def import_llama_cpp():
    """The ``llama_cpp`` module (llama-cpp-python), or a :class:`MissingDependencyError` naming the extra.

    The first call routes llama.cpp's log (stderr by default; llama-cpp-python prints all of it) to
    the :data:`NATIVE_LOGGER` logger and initialises the backend.
    """
    try:
        import llama_cpp
    except ImportError as error:
        raise MissingDependencyError(f"llama.cpp support needs llama-cpp-python: {LLAMA_EXTRA_HINT}") from error
    with _native_lock:
        if _native["callback"] is None:
            native_logger = logging.getLogger(NATIVE_LOGGER)

            @llama_cpp.llama_log_callback
            def callback(level: int, text: bytes, user_data) -> None:
                if level != 5:  # GGML_LOG_LEVEL_CONT continues the previous message
                    _native["level"] = _NATIVE_LEVELS.get(level, logging.DEBUG)
                message = text.decode("utf-8", errors="replace").rstrip("\n")
                if message:
                    native_logger.log(_native["level"], "%s", message)

            _native["callback"] = callback  # the C side keeps only a pointer: keep the object alive
            llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
    return llama_cpp
