"""The ``funasr-nano`` command line (see :mod:`funasr_nano.cli.main`)."""

from .main import main

__all__ = ["main"]
