"""Argument checks at segcam's boundaries: type and range, with an error that names the fix.

Every public function checks what it is given before doing anything with it, so a bad value
ends in one :class:`~segcam.errors.SegcamError` that says which argument is wrong and what it
should be, never in a ``TypeError`` from deep inside torch.

>>> check_int(3, "n_masks", low=1)
3
>>> check_int(2.5, "window")
Traceback (most recent call last):
...
segcam.errors.SegcamError: window must be an integer, got 2.5 (float).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SegcamError

Error = type[SegcamError]


def shown(value: Any) -> str:
    """``value`` as a short text with its type, for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_int(
    value: Any, name: str, *, low: int | None = None, high: int | None = None, error: Error = SegcamError
) -> int:
    """An integer in ``[low, high]``; numpy integers and integral floats are accepted, bools not."""
    if isinstance(value, (bool, np.bool_)):
        raise error(f"{name} must be an integer, got {shown(value)}.")
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    try:
        number = int(value.__index__())
    except (AttributeError, TypeError):
        raise error(f"{name} must be an integer, got {shown(value)}.") from None
    _check_range(number, name, low, high, error)
    return number


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    error: Error = SegcamError,
) -> float:
    """A finite real number in ``[low, high]`` (``open_low`` / ``open_high`` exclude the ends)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise error(f"{name} must be a number, got {shown(value)}.")
    number = float(value)
    if not math.isfinite(number):
        raise error(f"{name} must be a finite number, got {value!r}.")
    too_low = low is not None and (number <= low if open_low else number < low)
    too_high = high is not None and (number >= high if open_high else number > high)
    if too_low or too_high:
        left = "(" if open_low or low is None else "["
        right = ")" if open_high or high is None else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise error(f"{name} must be in {left}{lo}, {hi}{right}, got {number:g}.")
    return number


def _check_range(number: int, name: str, low: int | None, high: int | None, error: Error) -> None:
    if low is not None and number < low:
        bound = "positive" if low == 1 else "at least 0" if low == 0 else f"at least {low}"
        raise error(f"{name} must be {bound}, got {number}.")
    if high is not None and number > high:
        raise error(f"{name} must be at most {high}, got {number}.")


def check_bool(value: Any, name: str, *, error: Error = SegcamError) -> bool:
    """``True`` or ``False`` (numpy bools too); ``0``/``1`` and strings are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name} must be True or False, got {shown(value)}.")
    return bool(value)


def check_choice(value: Any, name: str, choices: Collection[str], *, error: Error = SegcamError) -> str:
    """One of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise error(f"{name} must be one of {options}, got {shown(value)}.")
    return value


def check_str(value: Any, name: str, *, empty: bool = False, error: Error = SegcamError) -> str:
    """A string (non-empty unless ``empty``)."""
    if not isinstance(value, str):
        raise error(f"{name} must be a string, got {shown(value)}.")
    if not empty and not value.strip():
        raise error(f"{name} must not be empty.")
    return value


def check_callable(value: Any, name: str, *, error: Error = SegcamError) -> Callable[..., Any]:
    """A callable (function, lambda, bound method, class)."""
    if not callable(value):
        raise error(f"{name} must be callable (a function), got {shown(value)}.")
    return value


def check_path(value: Any, name: str, *, error: Error = SegcamError) -> Path:
    """A ``str`` or ``os.PathLike`` turned into a :class:`~pathlib.Path` (not checked to exist)."""
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return Path(os.fspath(value)).expanduser()
    raise error(f"{name} must be a file path (str or pathlib.Path), got {shown(value)}.")


def check_names(value: Any, name: str, *, error: Error = SegcamError) -> list[str]:
    """A non-string sequence of distinct non-empty strings (class names, say)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
        raise error(f"{name} must be a list of strings, got {shown(value)}.")
    names = list(value)
    for item in names:
        if not isinstance(item, str) or not item:
            raise error(f"{name} must hold non-empty strings, got {shown(item)} in it.")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise error(f"{name} must not repeat a name; {', '.join(map(repr, twice))} appear twice.")
    return names


def check_mapping(value: Any, name: str, *, error: Error = SegcamError) -> dict[str, str]:
    """A mapping of strings to strings (readable layer names to module names, say)."""
    if not isinstance(value, Mapping):
        raise error(f"{name} must be a dict of str → str, got {shown(value)}.")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise error(f"{name} must map strings to strings, got {key!r}: {item!r}.")
    return dict(value)


def check_sizes(value: Any, name: str, *, dims: Sequence[int] = (2, 3), error: Error = SegcamError) -> tuple[int, ...]:
    """A tuple of positive integers with one of the lengths in ``dims``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise error(f"{name} must be a tuple of {' or '.join(map(str, dims))} positive integers, got {shown(value)}.")
    sizes = tuple(check_int(v, name, low=1, error=error) for v in value)
    if len(sizes) not in dims:
        raise error(f"{name} must have {' or '.join(map(str, dims))} sizes, got {len(sizes)}: {sizes}.")
    return sizes
