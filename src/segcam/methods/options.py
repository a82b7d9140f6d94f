"""Method options: each is a dataclass field with a kind that checks, parses and describes it.

A method declares ``window: int | tuple[int, ...] | None = option(2, Window(), "...")``; the
kind checks values given from Python (type and range, a :class:`~segcam.errors.MethodError`
naming the fix), parses them from command-line text, describes them in ``--help`` and gives a
JSON schema for the web tool's form.  A field without :func:`option` gets its kind from its
default's type (int, float, bool or str).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..checks import check_bool, check_choice, check_float, check_int, shown
from ..errors import MethodError

_KEY = "segcam_option"


class Kind:
    """How an option's value is checked, read from text and described."""

    def check(self, value: Any, name: str) -> Any:
        raise NotImplementedError

    def parse(self, text: str, name: str) -> Any:
        return self.check(text, name)

    def describe(self) -> str:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Kind):
    """An integer in ``[low, high]``."""

    low: int | None = None
    high: int | None = None

    def check(self, value: Any, name: str) -> int:
        return check_int(value, name, low=self.low, high=self.high, error=MethodError)

    def parse(self, text: str, name: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise MethodError(f"{name} takes an integer, got {text!r}.") from None
        return self.check(value, name)

    def describe(self) -> str:
        return "integer" + _bounds(self.low, self.high)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Float(Kind):
    """A real number in ``[low, high]`` (ends excluded when ``open_low`` / ``open_high``)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def check(self, value: Any, name: str) -> float:
        return check_float(value, name, low=self.low, high=self.high, open_low=self.open_low,
                           open_high=self.open_high, error=MethodError)

    def parse(self, text: str, name: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise MethodError(f"{name} takes a number, got {text!r}.") from None
        return self.check(value, name)

    def describe(self) -> str:
        left = "(" if self.open_low or self.low is None else "["
        right = ")" if self.open_high or self.high is None else "]"
        if self.low is None and self.high is None:
            return "number"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"number in {left}{lo}, {hi}{right}"

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.low, "maximum": self.high,
                "exclusiveMinimum": self.open_low, "exclusiveMaximum": self.open_high}


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few strings."""

    choices: tuple[str, ...]

    def check(self, value: Any, name: str) -> str:
        return check_choice(value, name, self.choices, error=MethodError)

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Bool(Kind):
    """True or False (``true``/``false``, ``yes``/``no``, ``1``/``0`` on the command line)."""

    def check(self, value: Any, name: str) -> bool:
        return check_bool(value, name, error=MethodError)

    def parse(self, text: str, name: str) -> bool:
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text.lower() not in words:
            raise MethodError(f"{name} takes true or false, got {text!r}.")
        return words[text.lower()]

    def describe(self) -> str:
        return "true or false"

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Text(Kind):
    """Any string."""

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise MethodError(f"{name} must be a string, got {shown(value)}.")
        return value

    def describe(self) -> str:
        return "text"

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}


@dataclass(frozen=True)
class Optional(Kind):
    """``None`` (written ``none`` or ``auto`` on the command line) or a value of ``kind``."""

    kind: Kind
    none: str = "none"  # what None means, for --help

    def check(self, value: Any, name: str) -> Any:
        return None if value is None else self.kind.check(value, name)

    def parse(self, text: str, name: str) -> Any:
        return None if text.lower() in ("none", "auto") else self.kind.parse(text, name)

    def describe(self) -> str:
        return f"{self.kind.describe()}, or none ({self.none})"

    def schema(self) -> dict[str, Any]:
        return {**self.kind.schema(), "nullable": True}


@dataclass(frozen=True)
class Window(Kind):
    """A window size: an int for every axis, one int per axis (``(h, w)`` / ``(d, h, w)``), or
    ``None`` for the whole map.  Text: ``2``, ``2x3``, ``2x2x1`` or ``full``."""

    def check(self, value: Any, name: str) -> int | tuple[int, ...] | None:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if len(value) not in (2, 3):
                raise MethodError(f"{name} takes one size per axis (2 or 3 of them), got {tuple(value)}.")
            return tuple(check_int(v, name, low=1, error=MethodError) for v in value)
        return check_int(value, name, low=1, error=MethodError)

    def parse(self, text: str, name: str) -> int | tuple[int, ...] | None:
        if text.lower() in ("full", "none"):
            return None
        try:
            sizes = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
        except ValueError:
            raise MethodError(f"{name} takes N, HxW, DxHxW or 'full', got {text!r}.") from None
        return self.check(sizes[0] if len(sizes) == 1 else sizes, name)

    def describe(self) -> str:
        return "N, HxW, DxHxW or full (the whole map)"

    def schema(self) -> dict[str, Any]:
        return {"type": "window", "minimum": 1, "nullable": True}


@dataclass(frozen=True)
class Spec:
    """One option of a method: its name, default, kind and help."""

    name: str
    default: Any
    kind: Kind
    help: str

    def to_dict(self) -> dict[str, Any]:
        """JSON schema of the option for forms (the web tool)."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {"name": self.name, "default": default, "help": self.help, "describe": self.kind.describe(),
                **self.kind.schema()}


def option(default: Any, kind: Kind, help: str) -> Any:
    """A method option: a dataclass field with its ``kind`` (checks, parsing) and ``help``."""
    if not isinstance(kind, Kind):
        raise MethodError(f"an option's kind must be a segcam option kind (Int(), Float(), ...), got {shown(kind)}.")
    return dataclasses.field(default=default, metadata={_KEY: (kind, help)})


def specs(cls: type) -> list[Spec]:
    """The options of method class ``cls``, from its dataclass fields."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        default = f.default
        if _KEY in f.metadata:
            kind, help_text = f.metadata[_KEY]
        else:
            kind, help_text = _kind_of(default, cls, f.name), ""
        out.append(Spec(f.name, default, kind, help_text))
    return out


def _kind_of(default: Any, cls: type, name: str) -> Kind:
    kinds: list[tuple[type, Kind]] = [(bool, Bool()), (int, Int()), (float, Float()), (str, Text())]
    for typ, kind in kinds:
        if isinstance(default, typ):
            return kind
    raise MethodError(
        f"method option {cls.__name__}.{name} has default {default!r}, whose kind segcam cannot guess; "
        "declare it with segcam.option(default, Int(...) | Float(...) | Choice(...) | ..., help=...)."
    )


def _bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" ≥ {low}"
    return "" if high is None else f" ≤ {high}"
