"""Regions given by geometry: everything, pixels, boxes, polygons and explicit masks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...checks import shown
from ...errors import RegionError
from .base import Region, RegionContext, check_point, empty_mask, int_tuple, region_kind


@region_kind("everything")
@dataclass(frozen=True, repr=False)
class Everything(Region):
    """Every pixel of the image (the paper's whole-image score)."""

    def _resolve(self, ctx: RegionContext) -> Tensor:
        return torch.ones((ctx.batch, *ctx.spatial), dtype=torch.bool, device=ctx.device)

    def __repr__(self) -> str:
        return "everything()"

    def describe(self) -> str:
        return "whole image"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Everything:
        return cls()


@region_kind("pixels")
@dataclass(frozen=True, repr=False)
class Pixels(Region):
    """One or more single pixels (voxels in 3-D)."""

    points: tuple[tuple[int, ...], ...]

    def _resolve(self, ctx: RegionContext) -> Tensor:
        m = empty_mask(ctx)
        what = "pixel" if len(ctx.spatial) == 2 else "voxel"
        for p in self.points:
            m[(slice(None), *check_point(p, ctx.spatial, what))] = True
        return m

    def __repr__(self) -> str:
        return f"pixel{self.points[0]}" if len(self.points) == 1 else f"pixels({list(self.points)})"

    def describe(self) -> str:
        return f"pixel {self.points[0]}" if len(self.points) == 1 else f"{len(self.points)} pixels"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "points": [list(p) for p in self.points]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pixels:
        return pixels(data.get("points", []))


@region_kind("box")
@dataclass(frozen=True, repr=False)
class Box(Region):
    """An axis-aligned box ``[start, stop)`` on every axis, end-exclusive like slicing."""

    start: tuple[int, ...]
    stop: tuple[int, ...]

    def _resolve(self, ctx: RegionContext) -> Tensor:
        n = len(ctx.spatial)
        if len(self.start) != n:
            order = "y0, x0, y1, x1" if n == 2 else "z0, y0, x0, z1, y1, x1"
            raise RegionError(
                f"{self} has {2 * len(self.start)} bounds but the image is {n}-D of size "
                f"{ctx.spatial}; give box({order})."
            )
        for a, b, size in zip(self.start, self.stop, ctx.spatial):
            if not (0 <= a < b <= size):
                raise RegionError(
                    f"{self} does not fit the image of size {ctx.spatial}: each axis needs "
                    f"0 <= start < stop <= size (stop is exclusive, like slicing)."
                )
        m = empty_mask(ctx)
        m[(slice(None), *(slice(a, b) for a, b in zip(self.start, self.stop)))] = True
        return m

    def __repr__(self) -> str:
        return f"box{self.start + self.stop}"

    def describe(self) -> str:
        return "box " + "×".join(f"[{a}:{b}]" for a, b in zip(self.start, self.stop))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": list(self.start), "stop": list(self.stop)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Box:
        return box(*int_tuple(data.get("start", ()), "box"), *int_tuple(data.get("stop", ()), "box"))


@region_kind("polygon")
@dataclass(frozen=True, repr=False)
class Polygon(Region):
    """A 2-D polygon with vertices ``(row, column)``; a pixel is in if its centre is inside or
    on an edge (even-odd rule)."""

    vertices: tuple[tuple[float, float], ...]

    def _resolve(self, ctx: RegionContext) -> Tensor:
        if len(ctx.spatial) != 2:
            raise RegionError("polygon regions are 2-D only; use box(...) or mask(...) for volumes.")
        h, w = ctx.spatial
        for y, x in self.vertices:
            if not (0 <= y <= h - 1 and 0 <= x <= w - 1):
                raise RegionError(
                    f"polygon vertex ({y}, {x}) is outside the image of size {ctx.spatial}; "
                    f"rows go 0..{h - 1} and columns 0..{w - 1}."
                )
        # only pixels in the vertices' bounding box can be inside or on an edge
        top, left = math.floor(min(y for y, _ in self.vertices)), math.floor(min(x for _, x in self.vertices))
        bottom, right = math.ceil(max(y for y, _ in self.vertices)) + 1, math.ceil(max(x for _, x in self.vertices)) + 1
        py = torch.arange(top, bottom, device=ctx.device, dtype=torch.float64)[:, None].expand(bottom - top, right - left)
        px = torch.arange(left, right, device=ctx.device, dtype=torch.float64)[None, :].expand(bottom - top, right - left)
        inside = torch.zeros(py.shape, dtype=torch.bool, device=ctx.device)
        on_edge = torch.zeros_like(inside)
        verts = list(self.vertices)
        for (y1, x1), (y2, x2) in zip(verts, verts[1:] + verts[:1]):
            if y1 != y2:  # even-odd rule: does a ray to the left cross this edge?
                crosses = (y1 > py) != (y2 > py)
                inside ^= crosses & (px < x1 + (py - y1) * (x2 - x1) / (y2 - y1))
            dy, dx = y2 - y1, x2 - x1  # distance from each centre to the edge segment
            length2 = dy * dy + dx * dx
            t = (((py - y1) * dy + (px - x1) * dx) / length2 if length2 else torch.zeros_like(py)).clamp(0, 1)
            on_edge |= ((py - y1 - t * dy) ** 2 + (px - x1 - t * dx) ** 2) <= 1e-12
        out = torch.zeros((h, w), dtype=torch.bool, device=ctx.device)
        out[top:bottom, left:right] = inside | on_edge
        return out.unsqueeze(0).expand(ctx.batch, h, w).clone()

    def __repr__(self) -> str:
        return f"polygon({list(self.vertices)})"

    def describe(self) -> str:
        return f"polygon of {len(self.vertices)} vertices"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vertices": [list(v) for v in self.vertices]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Polygon:
        return polygon(data.get("vertices", []))


@region_kind("mask")
@dataclass(frozen=True, repr=False)
class Mask(Region):
    """Any boolean mask of the image's spatial shape ``S`` (or ``(B, *S)`` for a batch)."""

    values: Tensor = field(compare=False)

    def _resolve(self, ctx: RegionContext) -> Tensor:
        m = self.values.to(ctx.device)
        if tuple(m.shape) == ctx.spatial:
            m = m.unsqueeze(0).expand(ctx.batch, *ctx.spatial)
        elif tuple(m.shape) != (ctx.batch, *ctx.spatial):
            raise RegionError(
                f"the mask has shape {tuple(m.shape)} but the image's spatial size is {ctx.spatial}; "
                f"give a mask of shape {ctx.spatial} (or {(ctx.batch, *ctx.spatial)})."
            )
        return m.clone()

    def __repr__(self) -> str:
        return f"mask({int(self.values.sum())} px)"

    def describe(self) -> str:
        return f"mask of {int(self.values.sum())} px"

    def to_dict(self) -> dict[str, Any]:
        """The mask's shape and size only (a mask can be large); it cannot be rebuilt from them."""
        return {"kind": self.kind, "shape": list(self.values.shape), "pixels": int(self.values.sum())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mask:
        if "values" not in data:
            raise RegionError("a mask region's summary cannot be turned back into a mask; pass the mask itself.")
        return mask(data["values"])


def pixel(*coords: int) -> Pixels:
    """One pixel ``pixel(row, column)`` (or voxel ``pixel(slice, row, column)``)."""
    point = int_tuple(coords, "pixel")
    if len(point) not in (2, 3):
        raise RegionError(f"a pixel has 2 coordinates (row, column) or 3 (slice, row, column), got {point}.")
    return Pixels((point,))


voxel = pixel


def pixels(points: Any) -> Pixels:
    """Several pixels, each ``(row, column)`` or ``(slice, row, column)``."""
    try:
        if isinstance(points, (str, bytes)):
            raise TypeError
        pts = tuple(int_tuple(p, "pixel") for p in points)
    except TypeError:  # not a sequence of points (a number, a 0-d array, a string)
        raise RegionError(f"pixels takes a list of (row, column) points, got {shown(points)}.") from None
    if not pts:
        raise RegionError("pixels([]) is empty; give at least one (row, column).")
    return Pixels(pts)


def box(*bounds: int) -> Box:
    """``box(y0, x0, y1, x1)`` or ``box(z0, y0, x0, z1, y1, x1)``, end-exclusive."""
    b = int_tuple(bounds, "box")
    if len(b) not in (4, 6):
        raise RegionError(f"box takes 4 bounds (y0, x0, y1, x1) or 6 (z0, y0, x0, z1, y1, x1), got {len(b)}.")
    half = len(b) // 2
    return Box(b[:half], b[half:])


def polygon(vertices: Any) -> Polygon:
    """A 2-D polygon from at least three ``(row, column)`` vertices."""
    try:
        verts = tuple((float(y), float(x)) for y, x in vertices)
    except (TypeError, ValueError):
        raise RegionError(f"a polygon takes (row, column) vertices, got {vertices!r}.") from None
    if len(verts) < 3:
        raise RegionError(f"a polygon needs at least 3 vertices, got {len(verts)}.")
    if not all(math.isfinite(c) for v in verts for c in v):
        raise RegionError("polygon vertices must be finite numbers.")
    return Polygon(verts)


def mask(values: Any) -> Mask:
    """A region from a boolean (or 0/1) array or tensor of the image's spatial shape."""
    if isinstance(values, Tensor):
        t = values.detach()
    else:
        array = np.asarray(values)
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise RegionError(f"a mask must be a boolean or 0/1 array, got dtype {array.dtype}.")
        t = torch.from_numpy(np.ascontiguousarray(array)).reshape(array.shape)  # ascontiguousarray makes 0-D 1-D
    if t.ndim == 0:
        raise RegionError("a mask must be an array of the image's spatial shape, got a single value.")
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise RegionError("a mask must be boolean or hold only 0 and 1.")
        t = t.bool()
    return Mask(t)


def everything() -> Everything:
    """The whole image."""
    return Everything()
