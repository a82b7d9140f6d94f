"""From benchmark rows to what a reader wants: means with 95% bootstrap intervals per group, and
the papers' claims as paired comparisons on the same cases.

Each claim compares two methods on exactly the same (model, image, case, layer) and says
``holds`` (the difference points the claimed way and the paired sign-flip test gives
p < ``alpha``), ``reversed`` (significant the other way) or ``not shown``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..checks import check_float, shown
from ..errors import SegcamError
from .stats import bootstrap_mean, paired_comparison

# metric → (readable name, True when higher is better, None when neither): the one list the
# summaries and the reports read
METRICS: dict[str, tuple[str, bool | None]] = {
    "share_true": ("evidence share", True),
    "lift_true": ("evidence lift", True),
    "lift_object": ("object lift", True),
    "share_context": ("cue share", None),
    "share_bias": ("bias-tile share", None),
    "share_distractors": ("distractor share", False),
    "pointing": ("pointing", True),
    "empty": ("empty maps", False),
    "mask_dice": ("Dice @0.2", True),
    "mask_kept": ("kept @0.2", False),
    "mask_dice_dilated": ("Dice @0.2 dilated", True),
    "mask_kept_dilated": ("kept @0.2 dilated", False),
    "sufficiency_area": ("sufficiency", True),
    "deletion_prob_area": ("deletion", False),
    "insertion_prob_area": ("insertion", True),
    "deletion_dice_area": ("deletion (Dice)", False),
    "insertion_dice_area": ("insertion (Dice)", True),
    "rise_spearman": ("ρ with RISE", True),
    "rise_pearson": ("r with RISE", True),
    "ms": ("ms", False),
}


def metric_name(metric: str) -> str:
    """The readable column name of ``metric``, with ↑ / ↓ when higher / lower is better."""
    name, higher = METRICS.get(metric, (metric, None))
    return name + {True: " ↑", False: " ↓", None: ""}[higher]


def summarise(rows: Sequence[Mapping[str, Any]], by: Sequence[str] = ("model", "method", "layer", "kind"),
              metrics: Sequence[str] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """One dict per group of ``rows`` sharing the ``by`` columns: ``n`` and, per metric, its
    mean with a 95% bootstrap interval (``{"mean", "low", "high", "n", "level"}``)."""
    rows = _check_rows(rows)
    for what, names in (("by", by), ("metrics", metrics or ())):
        if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
            raise SegcamError(f"{what} must be a list of column names, got {shown(names)}.")
    metrics = [m for m in (metrics or METRICS) if any(m in r for r in rows)]
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        entry: dict[str, Any] = {**dict(zip(by, key)), "n": len(members)}
        for m in metrics:
            entry[m] = bootstrap_mean([_number(r.get(m)) for r in members], seed=seed).to_dict()
        out.append(entry)
    return out


@dataclass(frozen=True)
class Claim:
    """A paper's statement as a paired test: ``a`` beats ``b`` on ``metric`` (higher when
    ``higher``) over the rows matching ``where``."""

    statement: str
    a: str
    b: str
    metric: str
    higher: bool
    where: Mapping[str, Any]


def paper_claims(bottleneck: str) -> list[Claim]:
    """The Seg-XRes-CAM paper's claims, at the bottleneck where it studied them."""
    at = {"layer": bottleneck}
    xres, grad = "seg-xres-cam (max)", "seg-grad-cam"
    return [
        Claim("Seg-XRes-CAM is more local than Seg-Grad-CAM for pixel regions (more mass on the object)",
              xres, grad, "lift_object", True, {**at, "kind": "pixel"}),
        Claim("Seg-XRes-CAM keeps less of the image than Seg-Grad-CAM for pixel regions",
              xres, grad, "mask_kept", False, {**at, "kind": "pixel"}),
        Claim("RISE agrees more with Seg-XRes-CAM than with Seg-Grad-CAM (Spearman)",
              xres, grad, "rise_spearman", True, at),
        Claim("max pooling keeps more of the image than mean pooling (Seg-XRes-CAM)",
              xres, "seg-xres-cam (mean)", "mask_kept", True, at),
        Claim("max pooling reaches a higher masking Dice than mean pooling (Seg-XRes-CAM)",
              xres, "seg-xres-cam (mean)", "mask_dice", True, at),
        Claim("Seg-XRes-CAM's masking test is more sufficient after dilation (higher Dice)",
              xres, xres, "mask_dice_dilated", True, at),
    ]


def check_claims(rows: Sequence[Mapping[str, Any]], claims: Sequence[Claim], alpha: float = 0.05,
                 seed: int = 0) -> list[dict[str, Any]]:
    """Each claim tested on the rows it covers; claims whose methods are absent are left out.
    A claim comparing a method with itself compares ``metric`` with its undilated twin."""
    rows, alpha = _check_rows(rows), check_float(alpha, "alpha", low=0, high=1, open_low=True, open_high=True)
    if isinstance(claims, Claim) or not isinstance(claims, Sequence) or not all(isinstance(c, Claim) for c in claims):
        raise SegcamError(f"claims must be a list of Claim (e.g. paper_claims(layer)), got {shown(claims)}.")
    out = []
    for claim in claims:
        a, b = _paired(rows, claim)
        if not a:
            continue
        test = paired_comparison(a, b, seed=seed)
        wanted = test.mean_diff > 0 if claim.higher else test.mean_diff < 0
        verdict = "not shown"
        if test.p_value < alpha and test.mean_diff != 0:
            verdict = "holds" if wanted else "reversed"
        out.append({"claim": claim.statement, "a": claim.a, "b": claim.b, "metric": claim.metric,
                    "mean_a": _mean(a), "mean_b": _mean(b), **test.to_dict(), "verdict": verdict})
    return out


def _paired(rows: list[Mapping[str, Any]], claim: Claim) -> tuple[list[float], list[float]]:
    def key(r: Mapping[str, Any]) -> tuple:
        return (r.get("model"), r.get("image"), r.get("case"), r.get("layer"))

    chosen = [r for r in rows if all(r.get(k) == v for k, v in claim.where.items())]
    if claim.a == claim.b:  # dilated against plain masking of the same maps
        base = claim.metric.replace("_dilated", "")
        pairs = [(r.get(claim.metric), r.get(base)) for r in chosen if r.get("method") == claim.a]
    else:
        b_rows = {key(r): r for r in chosen if r.get("method") == claim.b}
        pairs = [(r.get(claim.metric), b_rows[key(r)].get(claim.metric))
                 for r in chosen if r.get("method") == claim.a and key(r) in b_rows]
    pairs = [(_number(x), _number(y)) for x, y in pairs]
    pairs = [(x, y) for x, y in pairs if not (math.isnan(x) or math.isnan(y))]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _check_rows(rows: Any) -> list[Mapping[str, Any]]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not all(isinstance(r, Mapping) for r in rows):
        raise SegcamError(f"rows must be a list of dicts (benchmark rows), got {shown(rows)}.")
    return list(rows)
