"""Deletion and insertion curves: does the model's region prediction follow the map's order?

After Petsiuk et al. (2018, RISE), for the region ``M`` and class ``c``: order the ``N`` pixels
by the map, most relevant first, and at step ``k = 0 .. K`` change the first
``n_k = round(k·N / K)`` of them (rounded half up)::

    deletion:   x_k = b at the first n_k pixels, x elsewhere        (x_0 = x, x_K = b)
    insertion:  x_k = x at the first n_k pixels, b elsewhere        (x_0 = b, x_K = x)

and measure the model on ``x_k``: the region score ``S_c`` (:func:`segcam.core.region_score`),
the mean probability of ``c`` over ``M``, and the region Dice against the original prediction.
Each curve's area is the trapezoid rule over the shares ``n_k / N``.  A faithful map makes the
deletion curve fall fast (small area) and the insertion curve rise fast (large area).

The order is a stable sort of the map, descending: pixels of equal value are taken in the order
of their flat index (row-major), a choice that a map with ties leaves to the test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_int
from ..core.logits import Logits
from ..core.target import region_dice, region_score
from ..methods.rise import baseline_image
from .perturb import BASELINES, batch_size, measure_batches
from .subject import Subject, resolve_subject

KINDS = ("deletion", "insertion")


@dataclass(frozen=True)
class FaithfulnessCurve:
    """One deletion or insertion curve: per step ``k = 0 .. K`` the share of pixels changed
    (``fractions``), the region score, the mean class probability over the region and the
    region Dice (all ``(K + 1,)`` float64), and the area under each over the fractions."""

    kind: str
    fractions: Tensor
    score: Tensor
    prob: Tensor
    dice: Tensor
    score_area: float
    prob_area: float
    dice_area: float
    baseline: str
    reduce: str

    def to_dict(self) -> dict[str, Any]:
        """Lists of floats and the scalars, JSON-ready."""
        return {"kind": self.kind, "baseline": self.baseline, "reduce": self.reduce,
                "fractions": self.fractions.tolist(), "score": self.score.tolist(), "prob": self.prob.tolist(),
                "dice": self.dice.tolist(), "score_area": self.score_area, "prob_area": self.prob_area,
                "dice_area": self.dice_area}


def deletion_curve(
    model: nn.Module,
    image: Any,
    heatmap: Any,
    region: Any = None,
    cls: int | None = None,
    *,
    steps: int = 20,
    baseline: str = "mean",
    reduce: str | None = None,
    batch: int | None = None,
    reference: Tensor | None = None,
) -> FaithfulnessCurve:
    """The deletion curve (module docstring): the map's pixels replaced by the baseline, most
    relevant first, in ``steps`` steps.

    Arguments as for :func:`segcam.evaluation.masking_test`; ``reduce`` is the region score's
    (default: the explanation's target's, else ``"sum"``); ``batch`` images go through the model
    at a time (default :func:`segcam.core.batch_size_for`).
    """
    return _curve("deletion", model, image, heatmap, region, cls, steps, baseline, reduce, batch, reference)


def insertion_curve(
    model: nn.Module,
    image: Any,
    heatmap: Any,
    region: Any = None,
    cls: int | None = None,
    *,
    steps: int = 20,
    baseline: str = "mean",
    reduce: str | None = None,
    batch: int | None = None,
    reference: Tensor | None = None,
) -> FaithfulnessCurve:
    """The insertion curve (module docstring): from the all-baseline image, the original pixels
    put back, most relevant first, in ``steps`` steps.  Arguments as for :func:`deletion_curve`."""
    return _curve("insertion", model, image, heatmap, region, cls, steps, baseline, reduce, batch, reference)


def pixel_rank(heatmap: Tensor) -> Tensor:
    """``(*S)`` position of each pixel in the map's order: 0 for the largest value, ties by flat index."""
    order = torch.sort(heatmap.flatten(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank.reshape(heatmap.shape)


def step_counts(steps: int, pixels: int) -> Tensor:
    """``(steps + 1,)`` pixels changed at each step: ``round(k·N / K)``, halves rounded up."""
    k = torch.arange(steps + 1)
    return (2 * k * pixels + steps) // (2 * steps)


def class_probability(logits: Logits, cls: int) -> Tensor:
    """``(B, *S)`` float64 probability of class ``cls``: the softmax over classes, or for a 1-channel
    binary head the sigmoid of the class's logit (``σ(z)`` for class 1, ``σ(-z) = 1 - σ(z)`` for 0)."""
    if logits.binary:
        return torch.sigmoid(logits.of_class(cls).double())
    return torch.softmax(logits.values.double(), dim=1)[:, cls]


def _curve(kind: str, model: nn.Module, image: Any, heatmap: Any, region: Any, cls: Any, steps: Any,
           baseline: Any, reduce: Any, batch: Any, reference: Any) -> FaithfulnessCurve:
    s = resolve_subject(model, image, heatmap, region, cls, reference, reduce)
    steps = check_int(steps, "steps", low=1)
    baseline = check_choice(baseline, "baseline", BASELINES)
    chunk = batch_size(batch, s.image)
    rank = pixel_rank(s.heatmap)
    counts = step_counts(steps, s.pixels).to(rank.device)
    base = baseline_image(s.image, baseline)
    changed, unchanged = (base, s.image) if kind == "deletion" else (s.image, base)

    def make(start: int, stop: int) -> Tensor:
        first = rank < counts[start:stop].reshape(-1, *(1,) * s.dims)  # (n, *S): the first n_k pixels
        return torch.where(first[:, None], changed, unchanged)

    rows = torch.cat(measure_batches(model, steps + 1, make, _measure(s, s.original_labels(model)), chunk)).cpu()
    fractions = counts.cpu().double() / s.pixels
    score, prob, dice = rows.unbind(1)
    area = [float(torch.trapezoid(y, fractions)) for y in (score, prob, dice)]
    return FaithfulnessCurve(kind, fractions, score, prob, dice, *area, baseline, s.reduce)


def _measure(s: Subject, reference: Tensor) -> Callable[[Logits], Tensor]:
    """The per-chunk measure: ``(n, 3)`` float64 rows of region score, mean probability, Dice."""
    def measure(logits: Logits) -> Tensor:
        c = s.check_class(logits)
        score = region_score(logits.of_class(c).double(), s.region, s.reduce, s.dims)
        prob = region_score(class_probability(logits, c), s.region, "mean", s.dims)
        dice = region_dice(logits.predicted(), reference, c, s.region, s.dims)
        return torch.stack([score, prob, dice], dim=1)
    return measure
