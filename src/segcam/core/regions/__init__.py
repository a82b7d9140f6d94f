"""Regions M of output pixels whose class-c logits make the explained score.

Coordinates are in input pixels and follow numpy indexing: ``(row, column)`` in 2-D and
``(slice, row, column)`` in 3-D.  ``box(y0, x0, y1, x1)`` is end-exclusive like slicing.
Every region resolves to a boolean mask of shape ``(B, *S)`` for a batch of ``B`` images;
regions that depend on the prediction (``predicted``, ``instance``) use the predicted labels.
Each region has a JSON form (``to_dict`` / :func:`from_dict`).  A new kind of region is a
subclass of :class:`Region` registered with :func:`region_kind` (see ``base.py``).

>>> import segcam
>>> segcam.regions.pixel(120, 64)
pixel(120, 64)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from ...errors import RegionError
from .base import KINDS, Region, RegionContext, from_dict, region_kind
from .predicted import Instance, Predicted, flood_fill, instance, predicted
from .shapes import Box, Everything, Mask, Pixels, Polygon, box, everything, mask, pixel, pixels, polygon, voxel

__all__ = [
    "KINDS",
    "Box",
    "Everything",
    "Instance",
    "Mask",
    "Pixels",
    "Polygon",
    "Predicted",
    "Region",
    "RegionContext",
    "as_region",
    "box",
    "everything",
    "flood_fill",
    "from_dict",
    "instance",
    "mask",
    "pixel",
    "pixels",
    "polygon",
    "predicted",
    "region_kind",
    "voxel",
]


def as_region(value: Region | Any | None) -> Region:
    """Accept a region, ``None`` (the whole image) or a boolean array (a mask)."""
    if value is None:
        return Everything()
    if isinstance(value, Region):
        return value
    if isinstance(value, (np.ndarray, Tensor)):
        return mask(value)
    raise RegionError(
        f"cannot use {type(value).__name__} as a region; use segcam.regions.pixel/box/"
        "polygon/mask/predicted/instance/everything."
    )
