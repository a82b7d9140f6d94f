"""The one method protocol and the registry.

A method is a frozen dataclass whose fields are its options (see :mod:`.options`) and whose
:meth:`Method.explain` turns a :class:`~segcam.core.context.Context` into a signed map
``(T, B, *grid)`` — one per target and image — at the layer's grid (the input's for methods that
explain the input).  Two class attributes say what the engine must prepare:

* ``on_input``: the map is over the input's pixels and the method takes no layer;
* ``gradients``: the method asks for gradients, so the forward pass must record a graph.

The engine then applies the same post-processing to every method's map.  Adding a method is one
file with a subclass and :func:`register`; the CLI, web tool and batch mode read its options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..checks import shown
from ..errors import MethodError, closest
from .options import Spec, specs

if TYPE_CHECKING:
    from torch import Tensor

    from ..core.context import Context

METHODS: dict[str, type[Method]] = {}


@dataclass(frozen=True)
class Method:
    """Base of every method: options are dataclass fields, checked when the method is made."""

    name: ClassVar[str] = ""
    on_input: ClassVar[bool] = False
    gradients: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for spec in specs(type(self)):
            value = spec.kind.check(getattr(self, spec.name), spec.name)
            object.__setattr__(self, spec.name, value)

    def explain(self, ctx: Context, layer: str) -> Tensor:
        """The signed map ``(T, B, *grid)`` of every target of ``ctx`` at ``layer``."""
        raise NotImplementedError

    @classmethod
    def options(cls) -> list[Spec]:
        """This method's options: name, default, kind and help of each."""
        return specs(cls)

    @classmethod
    def summary(cls) -> str:
        """The first line of the method's docstring."""
        return (inspect.getdoc(cls) or cls.__name__).splitlines()[0]

    def to_dict(self) -> dict[str, Any]:
        """The option values as JSON-ready data (tuples become lists)."""
        return {s.name: _json(getattr(self, s.name)) for s in self.options()}


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a :class:`Method` subclass to :data:`METHODS` under ``name``.

    The class is made a frozen dataclass if it is not one yet, and its options are checked.
    """
    if not isinstance(name, str) or not name.strip():
        raise MethodError(f"a method's name must be a non-empty string, got {shown(name)}.")

    def add(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise MethodError(f"register({name!r}) decorates a subclass of segcam.Method, got {shown(cls)}.")
        if name in METHODS and METHODS[name] is not cls:
            raise MethodError(f"a method named {name!r} is already registered; pick another name or unregister it.")
        if "__dataclass_fields__" not in cls.__dict__:
            cls = dataclass(frozen=True)(cls)
        specs(cls)  # every option has a kind
        cls.name = name
        METHODS[name] = cls
        return cls
    return add


def unregister(name: str) -> None:
    """Remove method ``name`` from :data:`METHODS` (for methods added for a while, e.g. in tests)."""
    METHODS.pop(name, None)


def create(method: str | Method, options: Mapping[str, Any]) -> Method:
    """The method ``method`` (a registered name, or an instance) with ``options``, all checked."""
    if isinstance(method, Method):
        if options:
            raise MethodError(
                f"options {sorted(options)} were given next to a method object; set them on the object "
                f"({type(method).__name__}(...)) or pass the method by name."
            )
        return method
    if not isinstance(method, str):
        raise MethodError(f"method must be a method name or a segcam.Method, got {shown(method)}.")
    if method not in METHODS:
        near = closest(method, METHODS)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise MethodError(f"unknown method {method!r}.{hint} Available: {', '.join(sorted(METHODS))}.")
    cls = METHODS[method]
    allowed = [s.name for s in cls.options()]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "no options"
        raise MethodError(f"method {method!r} does not take {', '.join(unknown)}; it takes {takes}.")
    try:
        return cls(**options)
    except MethodError:
        raise
    except (TypeError, ValueError) as e:  # a method's own __post_init__ refusing a combination
        raise MethodError(f"method {method!r}: {e}") from e

