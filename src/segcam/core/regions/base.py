"""What every region is: a set of output pixels that resolves to a boolean mask ``(B, *S)``.

A new region kind is a frozen dataclass subclass of :class:`Region` with ``_resolve``, a
``kind`` name and JSON fields, decorated with :func:`region_kind` so that :func:`from_dict` can
rebuild it (the web tool and batch mode store regions as JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ...checks import check_int, shown
from ...errors import RegionError

KINDS: dict[str, type[Region]] = {}


class RegionContext:
    """What a region needs to become a mask: the image's size, the class, and the predicted
    labels ``(B, *S)``, which are computed only if a region asks for them."""

    def __init__(
        self, spatial: Sequence[int], batch: int, device: torch.device, cls: int, labels: Callable[[], Tensor]
    ):
        self.spatial = tuple(spatial)
        self.batch = batch
        self.device = device
        self.cls = cls
        self._labels = labels

    @classmethod
    def of_labels(cls, predicted: Tensor, target_class: int) -> RegionContext:
        """A context for a known label map ``(B, *S)``."""
        return cls(predicted.shape[1:], predicted.shape[0], predicted.device, target_class, lambda: predicted)

    @cached_property
    def predicted(self) -> Tensor:
        return self._labels()


class Region:
    """A set of output pixels; subclasses implement :meth:`_resolve` and :meth:`to_dict`."""

    kind: ClassVar[str] = ""

    def resolve(self, ctx: RegionContext) -> Tensor:
        """Boolean mask ``(B, *S)``; raises :class:`RegionError` when it is empty."""
        m = self._resolve(ctx)
        counts = m.flatten(1).sum(1)
        if bool((counts == 0).any()):
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

    def to_dict(self) -> dict[str, Any]:
        """The region as JSON-ready data, ``{"kind": ..., ...}`` (see :func:`from_dict`)."""
        raise NotImplementedError


def region_kind(name: str) -> Callable[[type[Region]], type[Region]]:
    """Class decorator registering a region kind under ``name`` for :func:`from_dict`."""
    def add(cls: type[Region]) -> type[Region]:
        cls.kind = name
        KINDS[name] = cls
        return cls
    return add


def from_dict(data: Any) -> Region:
    """Rebuild a region from :meth:`Region.to_dict`'s output."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise RegionError(f"a region's data must be a dict with a 'kind', got {shown(data)}.")
    kind = data["kind"]
    if kind not in KINDS:
        raise RegionError(f"unknown region kind {kind!r}; known: {', '.join(sorted(KINDS))}.")
    return KINDS[kind].from_dict(data)  # type: ignore[attr-defined]


def axes_text(ndim: int) -> str:
    return "(row, column)" if ndim == 2 else "(slice, row, column)"


def check_point(point: Sequence[int], spatial: tuple[int, ...], what: str) -> tuple[int, ...]:
    """``point`` if it has one coordinate per axis and lies inside ``spatial``."""
    if len(point) != len(spatial):
        raise RegionError(
            f"{what} {tuple(point)} has {len(point)} coordinate(s) but the image is "
            f"{len(spatial)}-D of size {spatial}; give {axes_text(len(spatial))}."
        )
    for coord, size in zip(point, spatial):
        if not 0 <= coord < size:
            ranges = ", ".join(f"0..{s - 1}" for s in spatial)
            raise RegionError(
                f"{what} {tuple(point)} is outside the image of size {spatial}; valid coordinates are {ranges}."
            )
    return tuple(int(c) for c in point)


def int_tuple(values: Any, what: str) -> tuple[int, ...]:
    """Integer coordinates (integral floats accepted), or a RegionError."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray, Tensor)):
        raise RegionError(f"{what} coordinates must be a sequence of integers, got {shown(values)}.")
    try:
        return tuple(check_int(v, f"{what} coordinates", error=RegionError) for v in values)
    except RegionError:
        raise RegionError(f"{what} coordinates must be integers, got {tuple(values)}.") from None


def empty_mask(ctx: RegionContext) -> Tensor:
    return torch.zeros((ctx.batch, *ctx.spatial), dtype=torch.bool, device=ctx.device)
