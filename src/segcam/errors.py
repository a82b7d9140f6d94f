"""Errors and warnings raised by segcam.

Every error a user can trigger is a :class:`SegcamError` (a ``ValueError``) whose
message names the problem and a way to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SegcamError(ValueError):
    """Base class of every error segcam raises on bad input."""


class LayerNotFoundError(SegcamError, KeyError):
    """A layer name does not exist in the model."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class RegionError(SegcamError):
    """A region is empty, outside the image, or does not fit the image's dimensions."""


class TargetError(SegcamError):
    """A target class is out of range or unknown."""


class ImageError(SegcamError):
    """An image has the wrong type, shape, size, channel count or non-finite values."""


class TooLargeError(SegcamError):
    """An input is over a size limit (an upload's bytes, an image's pixels); the message names the
    limit and how to raise it.  A server answers it with HTTP 413."""


class ImageTooLargeError(TooLargeError, ImageError):
    """An image or volume has more pixels than ``max_pixels``, or is a decompression bomb."""


class ModelError(SegcamError):
    """The model failed to run or returned something segcam cannot read as logits."""


class ModelLoadError(SegcamError):
    """A model spec or weights file cannot be read (missing, unknown, mismatched, broken)."""


class UnsafePickleError(ModelLoadError):
    """A file holds pickled Python objects, which could run code; refused without allow_pickle."""


class LayerError(SegcamError):
    """A layer's output cannot be turned into a spatial feature map."""


class MethodError(SegcamError):
    """An unknown method, or a method option of the wrong type or out of range."""


class SegcamWarning(UserWarning):
    """Something is probably not what the user meant, but an answer exists (e.g. a zero map)."""


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Names in ``candidates`` that look most like ``name`` (fuzzy match, then substring)."""
    pool = [c for c in candidates if c]
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    for c in pool:
        if len(found) >= n:
            break
        if c not in found and (name in c or c.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]):
            found.append(c)
    return found
