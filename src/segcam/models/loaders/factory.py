"""The spec ``package.module:function``: a Python factory that returns an ``nn.Module``.

The module is imported with :mod:`importlib`; the attribute path after the colon may name a
function, a class or ``obj.attr``.  The factory gets ``num_classes=`` only when it is given.  A
module that is not importable but sits in the current folder is found by appending the current
folder to ``sys.path``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ...errors import ModelLoadError, SegcamError, closest
from .._common import show_path
from ..weights import load_state
from .base import LoadedModel, family_preprocess, loaded, own_family
from .state_dict import fit_keys, read_weights

PATTERN = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def load_factory(spec: str, weights: Path | None, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    """Call the factory ``spec`` names and load ``weights`` (if any) into what it returns."""
    factory = _resolve(spec)
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    if kwargs and not _accepts(factory, "num_classes"):
        raise ModelLoadError(f"the model factory {spec!r} takes no num_classes argument; leave num_classes out "
                             "(CLI: --num-classes) or add the parameter to the factory.")
    call = f"{spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        model = factory(**kwargs)
    except SegcamError:
        raise
    except Exception as e:
        raise ModelLoadError(f"calling the model factory {call} failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"the model factory {call} returned a {type(model).__name__}, not a torch nn.Module; "
                             "make it return the model.")
    names = None
    if weights is not None:
        state, meta = read_weights(weights, allow_pickle)
        load_state(model, fit_keys(state, model), weights, f"the model from {call}")
        names = meta.get("class_names")
    family = own_family(model)
    how = f"weights from {show_path(weights)}" if weights is not None else "the factory's own weights"
    return loaded(model, family_preprocess(family), names, f"{call} ({how})", family)


def _resolve(spec: str) -> Callable[..., Any]:
    """The callable that ``package.module:attr.path`` names."""
    module_name, path = spec.split(":", 1)
    found: Any = _import(module_name, spec)
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not hasattr(found, part):
            where = module_name if i == 0 else f"{module_name}:{'.'.join(parts[:i])}"
            near = closest(part, [n for n in dir(found) if not n.startswith("_")])
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ModelLoadError(f"the model factory {spec!r}: {where} has no attribute {part!r}.{hint} Write "
                                 "package.module:function with a function that returns an nn.Module.")
        found = getattr(found, part)
    if not callable(found):
        raise ModelLoadError(f"the model factory {spec!r} is a {type(found).__name__}, not something callable; "
                             "name a function or class that returns an nn.Module.")
    return found


def _import(module_name: str, spec: str) -> Any:
    """Import ``module_name``, looking in the current folder too; every failure says how to fix it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if not missing or not (module_name == missing or module_name.startswith(missing + ".")):
            raise ModelLoadError(f"importing {module_name!r} for the model factory {spec!r} failed: it imports "
                                 f"{missing!r}, which is not installed; install it (pip install ...) and retry.") from e
        top, here = module_name.split(".")[0], Path.cwd()
        if ((here / f"{top}.py").is_file() or (here / top).is_dir()) and not _on_path(here):
            sys.path.append(str(here))
            importlib.invalidate_caches()
            return _import(module_name, spec)
        raise ModelLoadError(f"cannot import {module_name!r} for the model factory {spec!r}: no module named "
                             f"{missing!r}. Check the spelling, install the package, or put the folder that holds "
                             f"it on PYTHONPATH (the current folder is {show_path(here)}).") from None
    except SegcamError:
        raise
    except Exception as e:
        raise ModelLoadError(f"importing {module_name!r} for the model factory {spec!r} raised {type(e).__name__}: "
                             f"{e}; fix the module so that it imports cleanly.") from e


def _on_path(folder: Path) -> bool:
    """Whether ``folder`` is on ``sys.path`` already (``''`` meaning the current folder)."""
    for entry in sys.path:
        try:
            if Path(entry or ".").resolve() == folder.resolve():
                return True
        except OSError:
            continue
    return False


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` takes a keyword argument ``name`` (``**kwargs`` counts)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
