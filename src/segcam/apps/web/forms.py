"""What a request asks of a method, checked: the method and options, the work they ask for, the
class, and the forms the page builds from each method's options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ...core import batch_size_for
from ...errors import SegcamError
from ...methods import METHODS, create


def checked_method(name: str, options: dict[str, Any], limits: Mapping[str, int]) -> Any:
    """The method, its options checked by the method and against the server's work ``limits``."""
    method = create(name, options)
    for option, limit in limits.items():
        value = getattr(method, option, None)
        if isinstance(value, int) and value > limit:
            raise SegcamError(f"{option}={value} asks for more work than this server allows (at most {limit}); "
                              f"lower {option} or run `segcam explain` on your own machine.")
    return method


def method_info(name: str, limits: Mapping[str, int]) -> dict[str, Any]:
    """A registered method as the page's form needs it: its options with their JSON schemas
    (maxima lowered to the server's work ``limits``)."""
    cls = METHODS[name]
    options = [{"name": s.name, "default": s.default if not isinstance(s.default, tuple) else list(s.default),
                "help": s.help, "schema": _limited(s.kind.schema(), limits.get(s.name))} for s in cls.options()]
    return {"name": name, "summary": cls.summary(), "on_input": cls.on_input, "gradients": cls.gradients,
            "long": not cls.gradients, "options": options}


def _limited(schema: dict[str, Any], limit: int | None) -> dict[str, Any]:
    if limit is None or schema.get("type") != "integer":
        return schema
    return {**schema, "maximum": limit if schema.get("maximum") is None else min(schema["maximum"], limit)}


def class_of(value: int | str) -> int | str:
    """A class index or name as the page sends it; a string of ASCII digits is an index (as on the CLI)."""
    return int(value) if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value) else value


def check_batch(method: Any, x: Tensor) -> None:
    """A method's ``batch_size`` must fit the memory budget of modified inputs for this image."""
    requested, largest = getattr(method, "batch_size", None), batch_size_for(x)
    if isinstance(requested, int) and requested > largest:
        raise SegcamError(f"batch_size={requested} is too large for a {'×'.join(map(str, x.shape[1:]))} image on "
                          f"this server (at most {largest}); lower it or leave it empty (automatic).")
