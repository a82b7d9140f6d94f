"""Regions that follow the model's prediction: the predicted class, and one predicted object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...checks import check_bool
from ...errors import RegionError
from .base import Region, RegionContext, check_point, from_dict, int_tuple, region_kind


@region_kind("predicted")
@dataclass(frozen=True, repr=False)
class Predicted(Region):
    """All pixels predicted as the target class, optionally only those inside ``within``."""

    within: Region | None = None

    def _resolve(self, ctx: RegionContext) -> Tensor:
        m = ctx.predicted == ctx.cls
        return m if self.within is None else m & self.within._resolve(ctx)

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

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "within": None if self.within is None else self.within.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Predicted:
        within = data.get("within")
        return predicted(None if within is None else from_dict(within))


def _neighbours(ndim: int, full: bool, device: torch.device) -> Tensor:
    """A 3×3(×3) kernel of the face neighbours (4/6), or of all neighbours (8/26) when ``full``."""
    if full:
        return torch.ones((1, 1, *(3,) * ndim), device=device)
    k = torch.zeros((3,) * ndim, device=device)
    centre = (1,) * ndim
    k[centre] = 1
    for axis in range(ndim):
        for offset in (0, 2):
            idx = list(centre)
            idx[axis] = offset
            k[tuple(idx)] = 1
    return k[None, None]


def flood_fill(allowed: Tensor, seed: tuple[int, ...], full_connectivity: bool = False) -> Tensor:
    """The connected component of ``allowed`` (bool ``(*S)``) that contains ``seed`` (which must
    itself be allowed), grown by repeated dilation restricted to ``allowed``.

    Neighbours share a face (4-/6-connectivity) or, with ``full_connectivity``, also an edge or a
    corner (8-/26-connectivity).
    """
    conv = F.conv2d if allowed.ndim == 2 else F.conv3d
    kernel = _neighbours(allowed.ndim, full_connectivity, allowed.device)
    allowed_f = allowed.float()[None, None]
    region = torch.zeros_like(allowed_f)
    region[(0, 0, *seed)] = 1.0
    count = 1.0
    while True:
        for _ in range(16):  # grow a few steps between the (synchronising) size checks
            region = (conv(region, kernel, padding=1) > 0).float() * allowed_f
        new_count = region.sum().item()
        if new_count == count:
            return region[0, 0].bool()
        count = new_count


@region_kind("instance")
@dataclass(frozen=True, repr=False)
class Instance(Region):
    """The connected object of the target class under a pixel (the predicted instance)."""

    point: tuple[int, ...]
    full_connectivity: bool = False

    def _resolve(self, ctx: RegionContext) -> Tensor:
        p = check_point(self.point, ctx.spatial, "pixel" if len(ctx.spatial) == 2 else "voxel")
        masks = []
        for b in range(ctx.batch):
            label = int(ctx.predicted[(b, *p)])
            if label != ctx.cls:
                raise RegionError(
                    f"pixel {p} is predicted as class {label}, not class {ctx.cls}, so it is in no "
                    f"class-{ctx.cls} object; click inside a class-{ctx.cls} object or use cls={label}."
                )
            masks.append(flood_fill(ctx.predicted[b] == ctx.cls, p, self.full_connectivity))
        return torch.stack(masks)

    def __repr__(self) -> str:
        return f"instance{self.point}"

    def describe(self) -> str:
        return f"object at {self.point}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "point": list(self.point), "full_connectivity": self.full_connectivity}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Instance:
        return instance(*int_tuple(data.get("point", ()), "instance"),
                        full_connectivity=data.get("full_connectivity", False))


def predicted(within: Region | None = None) -> Predicted:
    """All pixels predicted as the target class (optionally only inside ``within``)."""
    if within is not None and not isinstance(within, Region):
        raise RegionError(f"within must be a region (e.g. box(...)), got {type(within).__name__}.")
    return Predicted(within)


def instance(*coords: int, full_connectivity: bool = False) -> Instance:
    """The connected predicted object of the target class containing pixel ``coords``."""
    point = int_tuple(coords, "instance")
    if len(point) not in (2, 3):
        raise RegionError(f"instance takes 2 coordinates (row, column) or 3 (slice, row, column), got {point}.")
    return Instance(point, check_bool(full_connectivity, "full_connectivity", error=RegionError))
