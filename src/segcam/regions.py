"""Regions M of output pixels whose class-c logits make the explained score.

Coordinates are in input pixels and follow numpy indexing: ``(row, column)`` in 2-D and
``(slice, row, column)`` in 3-D.  ``box(y0, x0, y1, x1)`` is end-exclusive like slicing.
Every region resolves to a boolean mask of shape ``(B, *S)`` for a batch of ``B`` images;
regions that depend on the prediction (``predicted``, ``instance``) use the predicted labels.

>>> import segcam
>>> segcam.regions.pixel(120, 64)
pixel(120, 64)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import RegionError

__all__ = [
    "Region",
    "Everything",
    "Pixels",
    "Box",
    "Polygon",
    "Mask",
    "Predicted",
    "Instance",
    "pixel",
    "voxel",
    "pixels",
    "box",
    "polygon",
    "mask",
    "predicted",
    "instance",
    "everything",
    "as_region",
]


class RegionContext:
    """What a region needs to become a mask: the image's size, the class, and the predicted
    labels ``(B, *S)``, which are computed only if a region asks for them."""

    def __init__(
        self,
        spatial: Sequence[int],
        batch: int,
        device: torch.device,
        cls: int,
        labels: Callable[[], Tensor],
    ):
        self.spatial = tuple(spatial)
        self.batch = batch
        self.device = device
        self.cls = cls
        self._labels = labels

    @classmethod
    def of_labels(cls, predicted: Tensor, target_class: int) -> "RegionContext":
        """A context for a known label map ``(B, *S)``."""
        return cls(predicted.shape[1:], predicted.shape[0], predicted.device, target_class,
                   lambda: predicted)

    @cached_property
    def predicted(self) -> Tensor:
        return self._labels()


def _axes(ndim: int) -> str:
    return "(row, column)" if ndim == 2 else "(slice, row, column)"


def _check_point(point: Sequence[int], spatial: tuple[int, ...], what: str) -> tuple[int, ...]:
    if len(point) != len(spatial):
        raise RegionError(
            f"{what} {tuple(point)} has {len(point)} coordinate(s) but the image is "
            f"{len(spatial)}-D of size {spatial}; give {_axes(len(spatial))}."
        )
    for coord, size in zip(point, spatial):
        if not 0 <= coord < size:
            ranges = ", ".join(f"0..{s - 1}" for s in spatial)
            raise RegionError(
                f"{what} {tuple(point)} is outside the image of size {spatial}; "
                f"valid coordinates are {ranges}."
            )
    return tuple(int(c) for c in point)


def _int_tuple(values: Sequence[Any], what: str) -> tuple[int, ...]:
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                v = int(v)
            else:
                raise RegionError(f"{what} coordinates must be integers, got {tuple(values)}.")
        out.append(int(v))
    return tuple(out)


class Region:
    """A set of output pixels; subclasses implement :meth:`_resolve`."""

    def resolve(self, ctx: RegionContext) -> Tensor:
        """Boolean mask ``(B, *S)``; raises :class:`RegionError` when it is empty."""
        m = self._resolve(ctx)
        if m.shape[1:] != ctx.spatial:  # pragma: no cover - guarded by each region
            raise RegionError(f"{self} gave a mask of shape {tuple(m.shape)} for {ctx.spatial}.")
        counts = m.flatten(1).sum(1)
        if (counts == 0).any():
            empty = [i for i, c in enumerate(counts.tolist()) if c == 0]
            raise RegionError(self._empty_message(ctx, empty))
        return m

    def _resolve(self, ctx: RegionContext) -> Tensor:
        raise NotImplementedError

    def _empty_message(self, ctx: RegionContext, empty: list[int]) -> str:
        where = "" if ctx.batch == 1 else f" for image(s) {empty} of the batch"
        return f"{self} is empty{where}; give a region with at least one pixel."

    def describe(self) -> str:
        """A short human-readable caption."""
        return repr(self)


@dataclass(frozen=True, repr=False)
class Everything(Region):
    """Every pixel of the image (the paper's whole-image score)."""

    def _resolve(self, ctx: RegionContext) -> Tensor:
        return torch.ones((ctx.batch, *ctx.spatial), dtype=torch.bool, device=ctx.device)

    def __repr__(self) -> str:
        return "everything()"

    def describe(self) -> str:
        return "whole image"


@dataclass(frozen=True, repr=False)
class Pixels(Region):
    """One or more single pixels (voxels in 3-D)."""

    points: tuple[tuple[int, ...], ...]

    def _resolve(self, ctx: RegionContext) -> Tensor:
        m = torch.zeros((ctx.batch, *ctx.spatial), dtype=torch.bool, device=ctx.device)
        what = "pixel" if len(ctx.spatial) == 2 else "voxel"
        for p in self.points:
            m[(slice(None), *_check_point(p, ctx.spatial, what))] = True
        return m

    def __repr__(self) -> str:
        if len(self.points) == 1:
            return f"pixel{self.points[0]}"
        return f"pixels({list(self.points)})"

    def describe(self) -> str:
        if len(self.points) == 1:
            return f"pixel {self.points[0]}"
        return f"{len(self.points)} pixels"


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
        m = torch.zeros((ctx.batch, *ctx.spatial), dtype=torch.bool, device=ctx.device)
        m[(slice(None), *(slice(a, b) for a, b in zip(self.start, self.stop)))] = True
        return m

    def __repr__(self) -> str:
        return f"box{self.start + self.stop}"

    def describe(self) -> str:
        return "box " + "×".join(f"[{a}:{b}]" for a, b in zip(self.start, self.stop))


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
        dt = torch.float64
        py = torch.arange(h, device=ctx.device, dtype=dt)[:, None].expand(h, w)
        px = torch.arange(w, device=ctx.device, dtype=dt)[None, :].expand(h, w)
        inside = torch.zeros((h, w), dtype=torch.bool, device=ctx.device)
        on_edge = torch.zeros_like(inside)
        verts = list(self.vertices)
        for (y1, x1), (y2, x2) in zip(verts, verts[1:] + verts[:1]):
            crosses = (y1 > py) != (y2 > py)
            if y1 != y2:
                x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
                inside ^= crosses & (px < x_at)
            # distance from the centre to the segment, for pixels the edge passes through
            dy, dx = y2 - y1, x2 - x1
            length2 = dy * dy + dx * dx
            t = ((py - y1) * dy + (px - x1) * dx) / length2 if length2 else torch.zeros_like(py)
            t = t.clamp(0, 1)
            on_edge |= ((py - y1 - t * dy) ** 2 + (px - x1 - t * dx) ** 2) <= 1e-12
        m = inside | on_edge
        return m.unsqueeze(0).expand(ctx.batch, h, w).clone()

    def __repr__(self) -> str:
        return f"polygon({list(self.vertices)})"

    def describe(self) -> str:
        return f"polygon of {len(self.vertices)} vertices"


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
                f"the mask has shape {tuple(m.shape)} but the image's spatial size is "
                f"{ctx.spatial}; give a mask of shape {ctx.spatial} (or {(ctx.batch, *ctx.spatial)})."
            )
        return m.clone()

    def __repr__(self) -> str:
        return f"mask({int(self.values.sum())} px)"

    def describe(self) -> str:
        return f"mask of {int(self.values.sum())} px"


@dataclass(frozen=True, repr=False)
class Predicted(Region):
    """All pixels predicted as the target class, optionally only those inside ``within``."""

    within: Region | None = None

    def _resolve(self, ctx: RegionContext) -> Tensor:
        m = ctx.predicted == ctx.cls
        if self.within is not None:
            m = m & self.within._resolve(ctx)
        return m

    def _empty_message(self, ctx: RegionContext, empty: list[int]) -> str:
        where = "" if ctx.batch == 1 else f" in image(s) {empty} of the batch"
        found = sorted(torch.unique(ctx.predicted[empty[0]]).tolist())
        inside = "" if self.within is None else f" inside {self.within}"
        return (
            f"class {ctx.cls} is not predicted anywhere{inside}{where} (predicted classes there: "
            f"{found}); pick one of those classes or give an explicit region such as a box."
        )

    def __repr__(self) -> str:
        return "predicted()" if self.within is None else f"predicted(within={self.within!r})"

    def describe(self) -> str:
        return "predicted class" + ("" if self.within is None else f" in {self.within.describe()}")


def _neighbour_kernel(ndim: int, full: bool, device: torch.device) -> Tensor:
    size = (3,) * ndim
    if full:
        return torch.ones((1, 1, *size), device=device)
    k = torch.zeros(size, device=device)
    centre = (1,) * ndim
    k[centre] = 1
    for axis in range(ndim):
        for off in (0, 2):
            idx = list(centre)
            idx[axis] = off
            k[tuple(idx)] = 1
    return k[None, None]


def flood_fill(allowed: Tensor, seed: tuple[int, ...], full_connectivity: bool = False) -> Tensor:
    """Connected component of ``allowed`` (bool ``(*S)``) that contains ``seed``.

    ``seed`` must itself be allowed (callers check this; :class:`Instance` does).

    Neighbours share a face (4-/6-connectivity) or, with ``full_connectivity``, also an edge or
    corner (8-/26-connectivity).  Grows by repeated dilation restricted to ``allowed``.
    """
    ndim = allowed.ndim
    conv = F.conv2d if ndim == 2 else F.conv3d
    kernel = _neighbour_kernel(ndim, full_connectivity, allowed.device)
    allowed_f = allowed.float()[None, None]
    region = torch.zeros_like(allowed_f)
    region[(0, 0, *seed)] = 1.0
    count = 1.0
    while True:
        for _ in range(16):
            region = (conv(region, kernel, padding=1) > 0).float() * allowed_f
        new_count = region.sum().item()
        if new_count == count:
            return region[0, 0].bool()
        count = new_count


@dataclass(frozen=True, repr=False)
class Instance(Region):
    """The connected object of the target class under a pixel (the predicted instance)."""

    point: tuple[int, ...]
    full_connectivity: bool = False

    def _resolve(self, ctx: RegionContext) -> Tensor:
        p = _check_point(self.point, ctx.spatial, "pixel" if len(ctx.spatial) == 2 else "voxel")
        masks = []
        for b in range(ctx.batch):
            label = int(ctx.predicted[(b, *p)])
            if label != ctx.cls:
                raise RegionError(
                    f"pixel {p} is predicted as class {label}, not class {ctx.cls}, so it is in "
                    f"no class-{ctx.cls} object; click inside a class-{ctx.cls} object or use "
                    f"cls={label}."
                )
            masks.append(flood_fill(ctx.predicted[b] == ctx.cls, p, self.full_connectivity))
        return torch.stack(masks)

    def __repr__(self) -> str:
        return f"instance{self.point}"

    def describe(self) -> str:
        return f"object at {self.point}"


def pixel(*coords: int) -> Pixels:
    """One pixel ``pixel(row, column)`` (or voxel ``pixel(slice, row, column)``)."""
    return Pixels((_int_tuple(coords, "pixel"),))


voxel = pixel


def pixels(points: Sequence[Sequence[int]]) -> Pixels:
    """Several pixels, each ``(row, column)`` or ``(slice, row, column)``."""
    pts = tuple(_int_tuple(p, "pixel") for p in points)
    if not pts:
        raise RegionError("pixels([]) is empty; give at least one (row, column).")
    return Pixels(pts)


def box(*bounds: int) -> Box:
    """``box(y0, x0, y1, x1)`` or ``box(z0, y0, x0, z1, y1, x1)``, end-exclusive."""
    b = _int_tuple(bounds, "box")
    if len(b) not in (4, 6):
        raise RegionError(
            f"box takes 4 bounds (y0, x0, y1, x1) or 6 (z0, y0, x0, z1, y1, x1), got {len(b)}."
        )
    half = len(b) // 2
    return Box(b[:half], b[half:])


def polygon(vertices: Sequence[Sequence[float]]) -> Polygon:
    """A 2-D polygon from at least three ``(row, column)`` vertices."""
    verts = tuple((float(y), float(x)) for y, x in vertices)
    if len(verts) < 3:
        raise RegionError(f"a polygon needs at least 3 vertices, got {len(verts)}.")
    return Polygon(verts)


def mask(values: Any) -> Mask:
    """A region from a boolean (or 0/1) array or tensor of the image's spatial shape."""
    if isinstance(values, Tensor):
        t = values.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(values)))
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise RegionError("a mask must be boolean or hold only 0 and 1.")
        t = t.bool()
    return Mask(t)


def predicted(within: Region | None = None) -> Predicted:
    """All pixels predicted as the target class (optionally only inside ``within``)."""
    return Predicted(within)


def instance(*coords: int, full_connectivity: bool = False) -> Instance:
    """The connected predicted object of the target class containing pixel ``coords``."""
    return Instance(_int_tuple(coords, "instance"), full_connectivity)


def everything() -> Everything:
    """The whole image."""
    return Everything()


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
