"""The masking test of Seg-XRes-CAM: is the part of the image a map highlights enough?

Hasany et al. (2023, section 3.4, after Mullan and Sonka) binarise the map ``h`` at a threshold
``t`` (0.2 in the paper), keep those pixels of the image, fill the rest with a baseline ``b``,
and compare the model's class-``c`` prediction inside the region ``M`` with the original one::

    K    = [h >= t]  (optionally dilated: the paper suggests dilation for maps that are too fine)
    Dice = Dice( [pred(x ⊙ K + b ⊙ (1 - K)) = c] ∩ M ,  [pred(x) = c] ∩ M )
    kept = |K| / N

A good map keeps the Dice high with ``kept`` small.  :func:`sufficiency_curve` sweeps ``t`` and
summarises Dice against ``kept`` by the area under it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import check_choice, check_float, check_int, shown
from ..core.logits import Logits
from ..core.target import region_dice
from ..errors import SegcamError, SegcamWarning
from .perturb import BASELINES, batch_size, keep_mask, masked_images, measure_batches
from .subject import Subject, resolve_subject

DEFAULT_THRESHOLDS = tuple(k / 20 for k in range(1, 21))  # 0.05, 0.10, ..., 1.0 (0.2 is the paper's)


@dataclass(frozen=True)
class MaskingResult:
    """One masking test: the region's Dice under masking and the share of the image kept.

    ``keep`` is the boolean keep mask ``(*S)`` and ``masked_image`` the image the model saw
    ``(C, *S)`` (for figures).
    """

    threshold: float
    dilation: int
    dice: float
    kept: float
    keep: Tensor
    masked_image: Tensor
    baseline: str

    def to_dict(self) -> dict[str, Any]:
        """The scalars, JSON-ready."""
        return {"threshold": self.threshold, "dilation": self.dilation, "baseline": self.baseline,
                "dice": self.dice, "kept": self.kept}


@dataclass(frozen=True)
class SufficiencyCurve:
    """The masking test at every threshold, thresholds ascending (so ``kept`` never grows).

    ``area`` is the area under Dice against ``kept`` over [0, 1], by the trapezoid rule on the
    points sorted by ``kept`` together with the end points ``(0, baseline_dice)`` (nothing kept:
    the all-baseline image) and ``(1, 1)`` (the whole image).  Higher means the map needs less
    of the image to keep the prediction.
    """

    thresholds: Tensor
    dice: Tensor
    kept: Tensor
    area: float
    dilation: int
    baseline: str
    baseline_dice: float

    def points(self) -> tuple[Tensor, Tensor]:
        """``(kept, dice)`` sorted by ``kept`` with the end points (0, ``baseline_dice``) and (1, 1):
        the curve whose area is :attr:`area`."""
        return _points(self.kept, self.dice, self.baseline_dice)

    def to_dict(self) -> dict[str, Any]:
        """Lists of floats and the scalars, JSON-ready."""
        return {"thresholds": self.thresholds.tolist(), "dice": self.dice.tolist(), "kept": self.kept.tolist(),
                "area": self.area, "dilation": self.dilation, "baseline": self.baseline,
                "baseline_dice": self.baseline_dice}


def masking_test(
    model: nn.Module,
    image: Any,
    heatmap: Any,
    region: Any = None,
    cls: int | None = None,
    *,
    threshold: float = 0.2,
    baseline: str = "mean",
    dilation: int = 0,
    reference: Tensor | None = None,
) -> MaskingResult:
    """The masking test (module docstring) of ``heatmap`` for ``cls`` over ``region``.

    ``image`` is ``(C, *S)`` or ``(1, C, *S)``; ``heatmap`` a map ``(*S)`` (segcam's maps are in
    [0, 1]; the threshold applies to the values as given) or an
    :class:`~segcam.explanation.Explanation`, which supplies ``region`` and ``cls``;
    ``reference`` the original label map ``(*S)`` when already known (saves a forward pass).
    """
    s = resolve_subject(model, image, heatmap, region, cls, reference)
    baseline = check_choice(baseline, "baseline", BASELINES)
    keep = keep_mask(s.heatmap, threshold, dilation)
    _warn_scale(s.heatmap)
    masked = masked_images(s.image, keep[None], baseline)
    dice = region_dices(model, s, 1, lambda a, b: masked, 1)
    return MaskingResult(float(threshold), int(dilation), float(dice[0]), float(keep.sum()) / s.pixels, keep,
                         masked[0], baseline)


def sufficiency_curve(
    model: nn.Module,
    image: Any,
    heatmap: Any,
    region: Any = None,
    cls: int | None = None,
    *,
    thresholds: Sequence[float] | Tensor | None = None,
    baseline: str = "mean",
    dilation: int = 0,
    batch: int | None = None,
    reference: Tensor | None = None,
) -> SufficiencyCurve:
    """:func:`masking_test` at every threshold (default 0.05, 0.10, ..., 1.0), in batched forwards.

    ``thresholds`` (each in (0, 1]) are sorted ascending without repeats; ``batch`` masked images
    go through the model at a time (default :func:`segcam.core.batch_size_for`).  The all-baseline
    image runs in the same batches and gives ``baseline_dice``.
    """
    s = resolve_subject(model, image, heatmap, region, cls, reference)
    baseline = check_choice(baseline, "baseline", BASELINES)
    dilation = check_int(dilation, "dilation", low=0)
    levels = _thresholds(thresholds)
    step = batch_size(batch, s.image)
    _warn_scale(s.heatmap)

    def keep(i: int) -> Tensor:  # image 0 keeps nothing, image i > 0 thresholds at levels[i - 1]
        if i == 0:
            return torch.zeros_like(s.region)
        return keep_mask(s.heatmap, float(levels[i - 1]), dilation)

    def make(start: int, stop: int) -> Tensor:
        return masked_images(s.image, torch.stack([keep(i) for i in range(start, stop)]), baseline)

    dice = region_dices(model, s, len(levels) + 1, make, step)
    kept = torch.tensor([float(keep(i).sum()) / s.pixels for i in range(1, len(levels) + 1)], dtype=torch.float64)
    return SufficiencyCurve(levels, dice[1:], kept, _area(kept, dice[1:], float(dice[0])), dilation, baseline,
                            float(dice[0]))


def region_dices(model: nn.Module, s: Subject, count: int, make: Callable[[int, int], Tensor], batch: int) -> Tensor:
    """``(count,)`` float64 region Dice of each made image's prediction against the original one."""
    reference = s.original_labels(model)

    def measure(logits: Logits) -> Tensor:
        return region_dice(logits.predicted(), reference, s.check_class(logits), s.region, s.dims)

    return torch.cat(measure_batches(model, count, make, measure, batch)).cpu()


def _points(kept: Tensor, dice: Tensor, floor: float) -> tuple[Tensor, Tensor]:
    """Dice against kept with the end points (0, floor) and (1, 1), sorted by kept."""
    x = torch.cat([torch.zeros(1, dtype=torch.float64), kept, torch.ones(1, dtype=torch.float64)])
    y = torch.cat([torch.tensor([floor], dtype=torch.float64), dice, torch.ones(1, dtype=torch.float64)])
    order = torch.sort(x, stable=True).indices
    return x[order], y[order]


def _area(kept: Tensor, dice: Tensor, floor: float) -> float:
    """Trapezoid area under :func:`_points`."""
    x, y = _points(kept, dice, floor)
    return float(torch.trapezoid(y, x))


def _thresholds(value: Any) -> Tensor:
    if value is None:
        return torch.tensor(DEFAULT_THRESHOLDS, dtype=torch.float64)
    if isinstance(value, (Tensor, np.ndarray)):
        if value.ndim != 1:
            raise SegcamError(f"thresholds must be one list of numbers in (0, 1], got shape {tuple(value.shape)}.")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not len(value):
        raise SegcamError(f"thresholds must be a non-empty list of numbers in (0, 1], got {shown(value)}.")
    levels = sorted({check_float(t, "each threshold", low=0, high=1, open_low=True) for t in value})
    return torch.tensor(levels, dtype=torch.float64)


def _warn_scale(heatmap: Tensor) -> None:
    lo, hi = float(heatmap.min()), float(heatmap.max())
    if lo < 0 or hi > 1:
        warnings.warn(
            f"the heatmap's values run from {lo:g} to {hi:g}, outside [0, 1]; the threshold applies to them as "
            "given. Normalise the map (e.g. h / h.max()) to compare maps at one threshold.",
            SegcamWarning, stacklevel=3,
        )
