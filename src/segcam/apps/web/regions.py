"""The page's region tools → segcam regions, on the picture shown (a 2-D image or one slice).

Points are ``[y, x]`` on the picture.  For a 2-D model the picture is what the model sees and
each tool maps to one region kind (pixel, box, polygon, brush → mask, object → instance,
class → predicted, all → everything).  For a 3-D model the picture is slice ``index`` along
``axis`` of the volume: points get the slice's coordinate inserted, a box is one slice thick,
polygons and brush strokes become masks on the slice, and an object is the predicted instance
connected in 3-D.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ... import regions
from ...errors import RegionError

TOOLS = ("pixel", "box", "polygon", "brush", "object", "class", "all")
MAX_POINTS = 256  # vertices of a polygon or points of a brush stroke


@dataclass(frozen=True)
class Slice:
    """Slice ``index`` along ``axis`` (0, 1 or 2 of ``(D, H, W)``) of a volume."""

    axis: int
    index: int

    def insert(self, point: tuple[int, int]) -> tuple[int, int, int]:
        coords = list(point)
        coords.insert(self.axis, self.index)
        return tuple(coords)  # type: ignore[return-value]

    def embed(self, mask: Tensor, volume: tuple[int, ...]) -> Tensor:
        out = torch.zeros(volume, dtype=torch.bool, device=mask.device)
        out.select(self.axis, self.index).copy_(mask)
        return out

    def take(self, values: Tensor) -> Tensor:
        """The slice of ``values (*lead, D, H, W)``."""
        return values.select(values.ndim - 3 + self.axis, self.index)


def _points(spec: dict[str, Any], shape: tuple[int, int], low: int, high: int | None = None) -> list[tuple[int, int]]:
    points = spec.get("points") or []
    kind = spec["kind"]
    if len(points) < low or (high is not None and len(points) > high):
        wanted = f"{low}" if high == low else f"{low} to {high or MAX_POINTS}"
        raise RegionError(f"the {kind} tool takes {wanted} points [y, x], got {len(points)}.")
    out = []
    for y, x in points:
        if not (0 <= y < shape[0] and 0 <= x < shape[1]):
            raise RegionError(f"point [{y}, {x}] is outside the picture ({shape[0]}×{shape[1]} pixels); "
                              "pick a point inside it (rows 0..{}, columns 0..{}).".format(shape[0] - 1, shape[1] - 1))
        out.append((int(y), int(x)))
    return out


def _brush(points: list[tuple[int, int]], radius: int, shape: tuple[int, int]) -> Tensor:
    """Discs of ``radius`` along the stroke's segments (each drawn within its bounding box)."""
    out = torch.zeros(shape, dtype=torch.bool)
    ends = list(itertools.pairwise(points)) or [(points[0], points[0])]
    for (y0, x0), (y1, x1) in ends:
        top, bottom = max(0, min(y0, y1) - radius), min(shape[0], max(y0, y1) + radius + 1)
        left, right = max(0, min(x0, x1) - radius), min(shape[1], max(x0, x1) + radius + 1)
        yy = torch.arange(top, bottom).view(-1, 1).float()
        xx = torch.arange(left, right).view(1, -1).float()
        dy, dx = y1 - y0, x1 - x0
        length2 = float(dy * dy + dx * dx)
        t = ((yy - y0) * dy + (xx - x0) * dx) / length2 if length2 else torch.zeros_like(yy + xx)
        t = t.clamp(0, 1)
        dist2 = (yy - (y0 + t * dy)) ** 2 + (xx - (x0 + t * dx)) ** 2
        out[top:bottom, left:right] |= dist2 <= radius * radius
    return out


def flat_region(spec: dict[str, Any], shape: tuple[int, int]) -> regions.Region:
    """The region of ``spec`` on a 2-D picture of ``shape``."""
    kind = spec.get("kind")
    if kind not in TOOLS:
        raise RegionError(f"unknown region kind {kind!r}; use one of {', '.join(TOOLS)}.")
    if kind == "pixel":
        return regions.pixel(*_points(spec, shape, 1, 1)[0])
    if kind == "object":
        return regions.instance(*_points(spec, shape, 1, 1)[0])
    if kind == "box":
        (y0, x0), (y1, x1) = _points(spec, shape, 2, 2)
        return regions.box(min(y0, y1), min(x0, x1), max(y0, y1) + 1, max(x0, x1) + 1)
    if kind == "polygon":
        return regions.polygon(_points(spec, shape, 3, MAX_POINTS))
    if kind == "brush":
        return regions.mask(_brush(_points(spec, shape, 1, MAX_POINTS), int(spec.get("radius", 3)), shape))
    return regions.predicted() if kind == "class" else regions.everything()


def volume_region(spec: dict[str, Any], where: Slice, volume: tuple[int, int, int]) -> regions.Region:
    """The region of ``spec`` drawn on slice ``where`` of a volume of shape ``volume``."""
    shape = tuple(s for i, s in enumerate(volume) if i != where.axis)
    flat = flat_region(spec, shape)  # type: ignore[arg-type]
    kind = spec["kind"]
    if kind in ("class", "all"):
        return flat
    if kind == "pixel":
        return regions.pixel(*where.insert(_points(spec, shape, 1, 1)[0]))  # type: ignore[arg-type]
    if kind == "object":
        return regions.instance(*where.insert(_points(spec, shape, 1, 1)[0]))  # type: ignore[arg-type]
    if kind == "box":  # one slice thick
        (y0, x0), (y1, x1) = _points(spec, shape, 2, 2)
        lo = where.insert((min(y0, y1), min(x0, x1)))
        hi = tuple(c + 1 for c in where.insert((max(y0, y1), max(x0, x1))))
        return regions.box(*lo, *hi)
    ctx = regions.RegionContext(shape, 1, torch.device("cpu"), 0, lambda: torch.zeros((1, *shape), dtype=torch.long))
    return regions.mask(where.embed(flat.resolve(ctx)[0], volume))
