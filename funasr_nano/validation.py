"""The checks that option dataclasses run on their values, written once: numbers in a range, switches,
one-of-a-few strings, nested option objects. Every message names the option and the bad value
(``max_queue must be an integer >= 1, got 0``), so that the command line and the HTTP server can put
the flag or field in front of it.

The ``*_problem`` functions return the message (``None`` when the value is fine), for callers that collect
every problem before raising (:class:`funasr_nano.training.config.TrainConfig`); the ``check_*`` functions
raise it as :class:`~funasr_nano.errors.InvalidOptionError`. Users: :mod:`funasr_nano.options`,
:class:`funasr_nano.audio.vad.VadOptions`, :class:`funasr_nano.server.config.ServerOptions`, the training
config.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from .errors import InvalidOptionError


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """``>= 0``, ``> 0``, ``<= 5``, ``in [0, 1]``, ``in (0, 1)``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    return f"{'<' if high_open else '<='} {_bound(high)}"


def number_problem(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                   low_open: bool = False, high_open: bool = False, integer: bool = False) -> str | None:
    """What is wrong with the option ``name`` = ``value`` as a number, or ``None`` when nothing is.

    Args:
        low, high: the bounds (``None``: unbounded on that side); inclusive unless ``low_open`` /
            ``high_open``.
        integer: the value must be an integer (``bool`` is never a number here).

    Returns:
        ``"{name} must be an integer >= 1, got 0"``, ``"{name} must be a finite number, got nan"``,
        ``"{name} must be in (0, 1), got 1.5"``, ... or ``None``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        kind = "an integer" if integer else "a finite number"
        bounds = f" {_range(low, high, low_open, high_open)}" if integer and (low, high) != (None, None) else ""
        return f"{name} must be {kind}{bounds}, got {value!r}"
    if not integer and not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}"
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        return f"{name} must be {'an integer ' if integer else ''}{_range(low, high, low_open, high_open)}, got {value!r}"
    return None


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
    """:func:`number_problem` raised.

    Raises:
        InvalidOptionError: the value is no (finite) number, no integer where one is needed, or out of range.
    """
    problem = number_problem(name, value, low, high, low_open=low_open, high_open=high_open, integer=integer)
    if problem:
        raise InvalidOptionError(problem)


def check_integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> None:
    """:func:`check_number` of an integer in ``[low, high]``."""
    check_number(name, value, low, high, integer=True)


def check_switch(name: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is ``True`` or ``False`` (or ``None`` when ``optional``: decided later).

    Raises:
        InvalidOptionError: ``{name} must be True or False[ or None], got ...``.
    """
    if value is True or value is False or (optional and value is None):
        return
    raise InvalidOptionError(f"{name} must be {'True, False or None' if optional else 'True or False'}, got {value!r}")


def choice_problem(name: str, value: Any, choices: Sequence[str]) -> str | None:
    """``"{name} must be one of ('a', 'b'), not 'c'"`` unless ``value`` is one of ``choices``."""
    return None if value in choices else f"{name} must be one of {tuple(choices)}, not {value!r}"


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """:func:`choice_problem` raised as :class:`InvalidOptionError`."""
    problem = choice_problem(name, value, choices)
    if problem:
        raise InvalidOptionError(problem)


def check_instance(name: str, value: Any, cls: type) -> None:
    """``value`` is a ``cls`` (a nested option dataclass).

    Raises:
        InvalidOptionError: ``{name} must be a {cls}, got {type}``.
    """
    if not isinstance(value, cls):
        raise InvalidOptionError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
