"""What to explain: a class and a region, turned into one scalar score per image.

Seg-Grad-CAM's score (Vinogradova et al., 2020) is the sum of the pre-softmax logit of class
``c`` over the region ``M`` of output pixels::

    S_c = sum_{(i, j) in M} y^c_ij          (reduce="sum", the paper)
    S_c = S_c / |M|                         (reduce="mean")
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .errors import TargetError, closest
from .inputs import Logits
from .regions import Region, as_region

Reduce = Literal["sum", "mean"]


@dataclass(frozen=True)
class Target:
    """Class ``cls`` (index or name) over ``region`` (default: the whole image)."""

    cls: int | str
    region: Region = field(default=None)  # type: ignore[assignment]
    reduce: Reduce = "sum"

    def __post_init__(self) -> None:
        object.__setattr__(self, "region", as_region(self.region))
        if self.reduce not in ("sum", "mean"):
            raise TargetError(f"reduce must be 'sum' or 'mean', got {self.reduce!r}.")
        if not isinstance(self.cls, str):
            object.__setattr__(self, "cls", _as_index(self.cls))

    def describe(self, class_names: Sequence[str] | None = None) -> str:
        name = self.cls
        if isinstance(self.cls, int) and class_names and 0 <= self.cls < len(class_names):
            name = f"{self.cls} ({class_names[self.cls]})"
        return f"class {name}, {self.region.describe()}" + (", mean" if self.reduce == "mean" else "")


def _as_index(cls: Any) -> int:
    """An integer class index from an int-like value (numpy/torch integers); floats are refused."""
    if isinstance(cls, (bool, np.bool_)):
        raise TargetError(f"cls must be a class index or name, got the boolean {cls!r}.")
    try:
        return operator.index(cls)
    except TypeError:
        raise TargetError(
            f"cls must be a class index or name (an integer or a string), got {cls!r}."
        ) from None


def class_index(cls: Any, n_classes: int, class_names: Sequence[str] | None) -> int:
    """Check a class index (or look up a class name) against the model's ``n_classes``."""
    if isinstance(cls, str):
        if not class_names:
            raise TargetError(
                f"class {cls!r} is a name but the explainer has no class names; pass "
                "class_names=[...] to Explainer or use the class index."
            )
        if cls not in class_names:
            near = closest(cls, class_names)
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            raise TargetError(f"unknown class name {cls!r}.{hint}")
        return list(class_names).index(cls)
    cls = _as_index(cls)
    if not 0 <= cls < n_classes:
        kind = " (a 1-channel binary head: 0 = background, 1 = foreground)" if n_classes == 2 else ""
        raise TargetError(
            f"class {cls} is out of range: the model has {n_classes} classes{kind}, "
            f"so use 0..{n_classes - 1}."
        )
    return int(cls)


def region_scores(logits: Logits, cls: int, region: Tensor, reduce: Reduce) -> Tensor:
    """Score of each image ``b``: ``sum_{p in M_b} y^c_b(p)`` (divided by ``|M_b|`` for "mean").

    Images of a batch do not interact in eval mode, so the gradient of the batch's summed
    score with respect to image ``b``'s activations is the gradient of image ``b``'s score.
    """
    logit = logits.of_class(cls)
    per_image = torch.where(region, logit, torch.zeros((), dtype=logit.dtype)).flatten(1).sum(1)
    if reduce == "mean":
        per_image = per_image / region.flatten(1).sum(1)
    return per_image
