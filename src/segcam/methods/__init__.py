"""Methods: how a context (activations, gradients, forwards of modified inputs, the region
score) becomes a map.  One file per method; each registers itself with :func:`register`.

Every module of this package is imported here, so a new built-in method is just a new file.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import METHODS, Method, create, register, unregister
from .cam import CamMethod
from .options import Bool, Choice, Float, Int, Kind, Optional, Spec, Text, Window, option, specs

__all__ = [
    "METHODS",
    "Bool",
    "CamMethod",
    "Choice",
    "Float",
    "Int",
    "Kind",
    "Method",
    "Optional",
    "Spec",
    "Text",
    "Window",
    "create",
    "option",
    "register",
    "specs",
    "unregister",
]

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "options"):
        importlib.import_module(f"{__name__}.{_module.name}")
