"""What to explain: a class over a region, and the two things a target measures on a prediction.

The region score of Seg-Grad-CAM (Vinogradova et al., 2020) is the sum of the pre-softmax logit
of class ``c`` over the region ``M`` of output pixels — defined here and nowhere else::

    S_c = sum_{p in M} y^c(p)          (reduce="sum", the paper)
    S_c = S_c / |M|                    (reduce="mean")

Every method, the captum adapter and the evaluation code score through :func:`region_score`.
:func:`region_dice` is the other measure: how well the class-``c`` prediction inside ``M``
agrees with a reference prediction (RISE's weights, the masking test).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..checks import check_choice, check_int, shown
from ..errors import ModelError, TargetError, closest
from .logits import Logits
from .regions import Region, RegionContext, as_region, from_dict

Reduce = Literal["sum", "mean"]
REDUCE_CHOICES = ("sum", "mean")


@dataclass(frozen=True)
class Target:
    """Class ``cls`` (index or name) over ``region`` (default: the whole image), scored by
    the sum (or, with ``reduce="mean"``, the mean) of its logits there."""

    cls: int | str
    region: Region = field(default=None)  # type: ignore[assignment]
    reduce: Reduce = "sum"

    def __post_init__(self) -> None:
        object.__setattr__(self, "region", as_region(self.region))
        check_choice(self.reduce, "reduce", REDUCE_CHOICES, error=TargetError)
        if isinstance(self.cls, str):
            if not self.cls:
                raise TargetError("cls must be a class index or a non-empty class name.")
        else:
            object.__setattr__(self, "cls", _as_index(self.cls))

    def describe(self, class_names: Sequence[str] | None = None) -> str:
        name = self.cls
        if isinstance(self.cls, int) and class_names and 0 <= self.cls < len(class_names):
            name = f"{self.cls} ({class_names[self.cls]})"
        return f"class {name}, {self.region.describe()}" + (", mean" if self.reduce == "mean" else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"cls": ..., "region": {...}, "reduce": ...}``."""
        return {"cls": self.cls, "region": self.region.to_dict(), "reduce": self.reduce}

    @classmethod
    def from_dict(cls, data: Any) -> Target:
        """The target :meth:`to_dict` describes (a mask region needs its values, see
        :func:`segcam.regions.from_dict`)."""
        if not isinstance(data, dict) or "cls" not in data:
            raise TargetError(f"a target's data is a dict with 'cls' (and 'region', 'reduce'), got {shown(data)}.")
        region = data.get("region")
        return cls(data["cls"], None if region is None else from_dict(region), data.get("reduce", "sum"))


def as_target(value: Any) -> Target:
    """A :class:`Target`, or a class index / name meaning that class over the whole image."""
    if isinstance(value, Target):
        return value
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return Target(value)
    raise TargetError(
        f"a target is segcam.Target(cls, region) or a class index or name, got {shown(value)}."
    )


def _as_index(cls: Any) -> int:
    try:
        return check_int(cls, "cls", error=TargetError)
    except TargetError:
        raise TargetError(f"cls must be a class index or name (an integer or a string), got {shown(cls)}.") from None


def class_index(cls: int | str, n_classes: int, class_names: Sequence[str] | None) -> int:
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
            f"class {cls} is out of range: the model has {n_classes} classes{kind}, so use 0..{n_classes - 1}."
        )
    return cls


def region_score(logit: Tensor, region: Tensor, reduce: Reduce, dims: int) -> Tensor:
    """``S`` over the last ``dims`` axes: ``sum_{p in M} y(p)``, divided by ``|M|`` for "mean".

    ``logit`` is ``(..., *S)`` and ``region`` a boolean ``(..., *S)`` broadcastable to it (e.g.
    ``(B, *S)`` with ``(B, *S)`` for one class, or ``(B, C, *S)`` with ``(B, 1, *S)`` for every
    class at once).  Logits outside ``M`` never enter the score, not even as NaN.
    """
    axes = tuple(range(-dims, 0))
    score = torch.where(region, logit, torch.zeros((), dtype=logit.dtype, device=logit.device)).sum(axes)
    if reduce == "mean":
        score = score / region.sum(axes)
    return score


def dice(a: Tensor, b: Tensor, dims: int) -> Tensor:
    """Dice ``2|a ∩ b| / (|a| + |b|)`` of boolean masks over their last ``dims`` axes (shapes
    broadcast); 1 when both are empty (they agree)."""
    axes = tuple(range(-dims, 0))
    inter = (a & b).sum(axes).double()
    total = (a.sum(axes) + b.sum(axes)).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def region_dice(labels: Tensor, reference: Tensor, cls: int, region: Tensor, dims: int) -> Tensor:
    """Dice of ``[labels = c] ∩ M`` against ``[reference = c] ∩ M`` (label maps ``(..., *S)``)."""
    return dice(labels.eq(cls) & region, reference.eq(cls) & region, dims)


@dataclass(frozen=True)
class ResolvedTarget:
    """A target made concrete for one batch: its class index, its mask ``(B, *S)`` and its
    score per image ``(B,)`` (part of the autograd graph when the forward recorded one)."""

    target: Target
    cls: int
    region: Tensor
    score: Tensor

    def score_of(self, logits: Logits, image: int | None = None) -> Tensor:
        """:func:`region_score` of this target for other logits: of the same batch
        (``image=None``), or of a batch of variants of image ``image`` (``(N,)`` scores)."""
        region = self.region if image is None else self.region[image]
        return region_score(logits.of_class(self.cls), region, self.target.reduce, self.region.ndim - 1)



def resolve_targets(
    targets: Sequence[Target],
    logits: Logits,
    predicted: Callable[[], Tensor],
    class_names: Sequence[str] | None,
) -> list[ResolvedTarget]:
    """Class indices, region masks and scores of ``targets`` on one forward pass's ``logits``."""
    values = logits.values
    spatial, batch = tuple(values.shape[2:]), values.shape[0]
    out = []
    for t in targets:
        cls = class_index(t.cls, logits.n_classes, class_names)
        region = t.region.resolve(RegionContext(spatial, batch, values.device, cls, predicted))
        score = region_score(logits.of_class(cls), region, t.reduce, len(spatial))
        if not bool(torch.isfinite(score).all()):
            raise ModelError(
                f"the model produced non-finite logits (NaN or inf) in the region of {t.describe(class_names)}."
            )
        out.append(ResolvedTarget(t, cls, region, score))
    return out
