"""What the engine returns: one post-processing stage, one Explanation, one collection.

Every method's signed map goes through the same :class:`PostProcess` — ReLU, normalisation,
resize to the input — so maps of different methods are comparable.  An :class:`Explanation`
carries the maps as tensors and JSON-ready :attr:`~Explanation.metadata` (method, options,
layer, target, score, timings) that the web tool and batch mode store.  Several targets or
layers come back as one :class:`Explanations`, indexable by target and layer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .checks import check_bool, check_choice
from .core.target import Target
from .errors import SegcamError
from .spatial import resize_maps

Normalise = Literal["max", "minmax", "none"]


@dataclass(frozen=True)
class PostProcess:
    """From a method's signed map ``(N, *grid)`` to what people look at.

    ``relu``: keep positive evidence only (the CAM papers' ``ReLU``).  ``normalise``: ``"max"``
    divides each map by its largest absolute value (so 0 stays "no evidence" and a map with
    nothing in it stays all zero, never NaN), ``"minmax"`` stretches it to [0, 1], ``"none"``
    leaves it.  The input-sized map is resized by :func:`segcam.spatial.resize_maps`.
    """

    relu: bool = True
    normalise: Normalise = "max"

    def __post_init__(self) -> None:
        check_bool(self.relu, "relu")
        check_choice(self.normalise, "normalise", ("max", "minmax", "none"))

    def layer_map(self, raw: Tensor) -> Tensor:
        """The post-processed map at the layer's grid."""
        x = raw.clamp_min(0) if self.relu else raw
        flat = x.flatten(1)
        shape = (-1, *([1] * (x.ndim - 1)))
        if self.normalise == "max":
            peak = flat.abs().amax(1).reshape(shape)
            return torch.where(peak > 0, x / peak.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))
        if self.normalise == "minmax":
            lo, hi = flat.amin(1).reshape(shape), flat.amax(1).reshape(shape)
            return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))
        return x

    def __call__(self, raw: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
        """``(layer_map, map)``: the map at the layer's grid and at the input's ``size``.

        The layer map is resized before normalising again, so the input-sized map's peak is 1
        even where interpolation lowers it.
        """
        layer = self.layer_map(raw)
        return layer, (layer if tuple(layer.shape[1:]) == tuple(size) else self.layer_map(resize_maps(layer, size)))


@dataclass(frozen=True, eq=False)
class Explanation:
    """One target explained at one layer by one method.

    ``map`` is ``(B, *S)`` at the input's size, ``layer_map`` the same at the layer's grid,
    ``raw`` the method's signed map before post-processing (layer grid), ``region`` the boolean
    mask ``M`` that was scored and ``score`` the region score per image.
    """

    map: Tensor
    layer_map: Tensor
    raw: Tensor
    region: Tensor
    score: Tensor
    target: Target
    cls: int
    class_name: str | None
    layer: str
    method: str
    options: dict[str, Any]
    batched: bool
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def heatmap(self) -> np.ndarray:
        """float32 numpy map in [0, 1] of the input's spatial shape (``(B, *S)`` if batched)."""
        m = self.map.detach().float().cpu().numpy()
        return m if self.batched else m[0]

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything about this explanation except the arrays, as JSON-ready data."""
        return {
            "method": self.method,
            "options": dict(self.options),
            "layer": self.layer,
            "target": {**self.target.to_dict(), "cls": self.cls, "class_name": self.class_name},
            "score": [float(s) for s in self.score.detach().cpu()],
            "region_pixels": [int(n) for n in self.region.flatten(1).sum(1).cpu()],
            "shape": list(self.map.shape[1:]),
            "layer_shape": list(self.layer_map.shape[1:]),
            "batched": self.batched,
            "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()},
            "details": dict(self.details),
        }

    def to_json(self, **kwargs: Any) -> str:
        """:attr:`metadata` as a JSON string."""
        return json.dumps(self.metadata, **kwargs)

    def __repr__(self) -> str:
        return (f"Explanation(method={self.method!r}, layer={self.layer!r}, target={self.target!r}, "
                f"shape={tuple(self.map.shape)})")


class Explanations:
    """Explanations of several targets at one or more layers, from one forward pass.

    ``exps[k, layer]`` is target ``k`` at ``layer`` (a module name, a readable name the
    explainer knows, or an index into :attr:`layers`); with one layer ``exps[k]`` is target
    ``k``, and with one target ``exps[layer]`` is that layer.  Iterating yields every
    explanation, target by target, each target's layers in order.
    """

    def __init__(self, grid: Sequence[Sequence[Explanation]], layers: Sequence[str],
                 aliases: Mapping[str, str] | None = None):
        self._grid = [list(row) for row in grid]
        self.layers = list(layers)
        self._aliases = dict(aliases or {})

    @property
    def targets(self) -> list[Target]:
        return [row[0].target for row in self._grid]

    def __len__(self) -> int:
        return len(self._grid) * len(self.layers)

    def __iter__(self) -> Iterator[Explanation]:
        for row in self._grid:
            yield from row

    def __getitem__(self, key: Any) -> Explanation:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise SegcamError(f"index explanations as exps[target, layer], got {key!r}.")
            return self._grid[self._target(key[0])][self._layer(key[1])]
        if isinstance(key, str):
            if len(self._grid) != 1:
                raise SegcamError(f"these explanations hold {len(self._grid)} targets; use exps[k, {key!r}].")
            return self._grid[0][self._layer(key)]
        if len(self.layers) != 1:
            raise SegcamError(
                f"these explanations hold {len(self.layers)} layers ({', '.join(self.layers)}); "
                f"use exps[{key!r}, layer]."
            )
        return self._grid[self._target(key)][0]

    def for_layer(self, layer: str | int) -> list[Explanation]:
        """Every target's explanation at ``layer``, in target order."""
        j = self._layer(layer)
        return [row[j] for row in self._grid]

    def for_target(self, k: int) -> dict[str, Explanation]:
        """Target ``k``'s explanations by layer name."""
        return dict(zip(self.layers, self._grid[self._target(k)]))

    @property
    def metadata(self) -> list[dict[str, Any]]:
        return [e.metadata for e in self]

    def _target(self, k: Any) -> int:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not -len(self._grid) <= k < len(self._grid):
            raise SegcamError(f"target index {k!r} is out of range: there are {len(self._grid)} targets.")
        return int(k)

    def _layer(self, layer: Any) -> int:
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, (bool, np.bool_)):
            if -len(self.layers) <= layer < len(self.layers):
                return int(layer)
        elif isinstance(layer, str):
            name = self._aliases.get(layer, layer)
            if name in self.layers:
                return self.layers.index(name)
        raise SegcamError(f"no explanation at layer {layer!r}; these hold {', '.join(self.layers)}.")

    def __repr__(self) -> str:
        return f"Explanations({len(self._grid)} targets × layers {self.layers})"
