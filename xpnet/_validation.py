"""Argument checks shared by the whole package: one message style, naming the argument.

Every check raises :class:`ValueError` (also for a value of the wrong type, as
xpnet always has for numeric arguments) with the argument's name, what was
expected and what was given, and returns the value in its canonical type.

Examples
--------
>>> from xpnet._validation import check_int, check_number
>>> check_int(3, "epochs", low=1)
3
>>> check_int(True, "epochs", low=1)
Traceback (most recent call last):
...
ValueError: epochs must be a positive int, got True
>>> check_number(0.5, "rate", low=0.0, high=1.0, high_open=True)
0.5
>>> check_number(float("nan"), "learning_rate", low=0)
Traceback (most recent call last):
...
ValueError: learning_rate must be a finite number >= 0, got nan
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_number", "check_bool"]


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_int(value: object) -> bool:
    """A Python or NumPy integer, but not a bool (``True`` is no batch size)."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _int_kind(low: int | None, high: int | None) -> str:
    if high is not None:
        return f"an int in [{low}, {high}]" if low is not None else f"an int <= {high}"
    if low == 1:
        return "a positive int"
    return "an int" if low is None else f"an int >= {low}"


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``[low, high]``, else ``ValueError``.

    Parameters
    ----------
    value : object
    name : str
        The argument's name, used in the message.
    low, high : int, optional
        Inclusive bounds; ``None`` leaves that side open.
    """
    if not _is_int(value) or (low is not None and value < low) \
            or (high is not None and value > high):
        raise ValueError(f"{name} must be {_int_kind(low, high)}, got {value!r}")
    return int(value)


def _number_kind(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if high is not None:
        return f"a finite number {'<' if high_open else '<='} {high}"
    if low is not None:
        return f"a finite number {'>' if low_open else '>='} {low}"
    return "a finite number"


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False,
                 expected: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number within the bounds.

    Parameters
    ----------
    value : object
    name : str
        The argument's name, used in the message.
    low, high : float, optional
        Bounds; ``None`` leaves that side open (NaN is always refused, and
        infinities unless ``high`` is ``math.inf``).
    low_open, high_open : bool
        Whether the bound itself is excluded.
    expected : str, optional
        What the message says was expected, where the caller has its own
        established wording (default: derived from the bounds).

    Examples
    --------
    >>> import math
    >>> from xpnet._validation import check_number
    >>> check_number(-1, "eps", low=0.0, high=math.inf, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: eps must be in (0.0, inf], got -1
    """
    kind = expected or _number_kind(low, high, low_open, high_open)
    if not isinstance(value, numbers.Real) or _is_bool(value) or not math.isfinite(value):
        # An interval reads "must be in [0.0, 1.0)": say first that a number is needed.
        two_sided = low is not None and high is not None and expected is None
        raise ValueError(f"{name} must be {'a finite number' if two_sided else kind}, "
                         f"got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    # typeshed's numbers.Real declares only __lt__/__le__; Python reflects > and >= onto them.
    too_high = high is not None and (value >= high if high_open else value > high)  # type: ignore[operator]
    if too_low or too_high:
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a ``bool`` if it is a Python or NumPy bool, else ``TypeError``."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)
