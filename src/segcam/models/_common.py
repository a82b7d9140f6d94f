"""Small helpers shared by :mod:`segcam.models`: checked paths, and paths and names in messages."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..checks import check_path
from ..errors import ModelLoadError


def show_path(path: Path) -> str:
    """``path`` made absolute, so that a message says which file was meant."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return str(path)


def few(names: Sequence[str], n: int = 4) -> str:
    """The first ``n`` of ``names``, quoted, and how many more there are."""
    text = ", ".join(repr(name) for name in names[:n])
    return text + (f", … {len(names) - n} more" if len(names) > n else "")


def existing(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` that exists; ``what`` names it in the error."""
    found = check_path(path, what, error=ModelLoadError)
    if not found.exists():
        raise ModelLoadError(f"{what} not found: {show_path(found)}; check the path.")
    return found
