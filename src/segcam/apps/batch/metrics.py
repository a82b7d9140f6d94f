"""The evaluation metrics of a batch run: each explanation's measurements as flat columns of its
row, and its overlay figure, computed by :mod:`segcam.evaluation` and :mod:`segcam.viz`.

The columns carry the names :func:`segcam.evaluation.score_explanation` gives them, so
:func:`segcam.evaluation.summarise` reads a batch table as it reads a benchmark's rows:

==============  =========================================================================
``masking``     ``mask_dice``, ``mask_kept``: :func:`~segcam.evaluation.masking_test` at
                ``Scoring.threshold`` (0.2) with ``Scoring.baseline`` (mean) filling the rest
``deletion``    ``deletion_prob_area``, ``deletion_dice_area``, ``deletion_score_area``:
                the areas of :func:`~segcam.evaluation.deletion_curve` (``Scoring.steps``)
``insertion``   ``insertion_prob_area``, ``insertion_dice_area``, ``insertion_score_area``
``evidence``    with a ground-truth mask ``T``, its region of the explained class ``c`` is the
                true evidence ``E = [T = c]``: ``share_true = Σ h·E / Σ h``, ``lift_true =
                share_true / (|E| / N)`` (:func:`~segcam.evaluation.evidence_score`) and
                ``pointing`` (:func:`~segcam.evaluation.pointing_game` on ``E``).  For a
                synthetic scene (a ``.npz`` input) the evidence is known: ``E`` is the
                class's object and its cue (:meth:`~segcam.data.Scene.class_evidence`), and
                ``share_``/``lift_`` of ``object``, ``context``, ``bias`` and
                ``distractors`` are columns too (``pointing`` on the object).  ``None``
                without either, and wherever a value is undefined (an all-zero map, no pixel
                of ``c`` in ``T``)
==============  =========================================================================

``metric_seconds`` is the time the metrics of one explanation took.  A mask read at another
size than the model's input (a model that resizes) is brought to the map's size by nearest
neighbour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ... import Explanation, SegcamError
from ...evaluation import (
    EVIDENCE_KEYS,
    Scoring,
    deletion_curve,
    evidence_score,
    insertion_curve,
    masking_test,
    pointing_game,
)

METRICS = ("masking", "deletion", "insertion", "evidence")
PERTURBING = ("masking", "deletion", "insertion")  # the metrics that run the model on changed images
OVERLAYS = "overlays"

Value = float | None


@dataclass(frozen=True)
class Overlay:
    """What the writer needs to draw one explanation's overlay besides its map: the model's
    input ``image (C, *S)``, the explained ``region (*S)`` and a title."""

    image: Tensor
    region: Tensor
    title: str


def check_metrics(names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of known metric names without repeats, in the order given."""
    if isinstance(names, str) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise SegcamError(f"metrics must be a list of metric names ({', '.join(METRICS)}), got {names!r}.")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise SegcamError(f"unknown metric(s) {', '.join(map(repr, unknown))}; the batch metrics are "
                          f"{', '.join(METRICS)}.")
    return tuple(dict.fromkeys(names))


def reference_labels(predicted: Tensor, metrics: Sequence[str]) -> Tensor | None:
    """The item's prediction ``(*S)`` (from its one kept forward pass), the reference the
    perturbing metrics compare with; ``None`` when no metric in ``metrics`` needs it."""
    return predicted if any(m in PERTURBING for m in metrics) else None


def measure(metrics: Sequence[str], model: nn.Module, image: Tensor, exp: Explanation, *,
            reference: Tensor | None, truth: Tensor | None, scoring: Scoring,
            known: dict[int, dict[str, Tensor]] | None = None) -> dict[str, Value]:
    """The columns of ``metrics`` (module docstring) for ``exp``, one explanation of ``image``
    (the model's input ``(C, *S)``) whose prediction is ``reference``; ``truth`` is the item's
    ground-truth label map or ``None``, ``known`` a scene's evidence masks by class or ``None``.
    No column is NaN: undefined values are ``None``."""
    start = time.perf_counter()
    row: dict[str, Value] = {}
    common = {"baseline": scoring.baseline, "reference": reference}
    if "masking" in metrics:
        masked = masking_test(model, image, exp, threshold=scoring.threshold, **common)
        row["mask_dice"], row["mask_kept"] = masked.dice, masked.kept
    for kind, curve_of in (("deletion", deletion_curve), ("insertion", insertion_curve)):
        if kind in metrics:
            curve = curve_of(model, image, exp, steps=scoring.steps, batch=scoring.batch, **common)
            row[f"{kind}_prob_area"], row[f"{kind}_dice_area"] = curve.prob_area, curve.dice_area
            row[f"{kind}_score_area"] = curve.score_area
    if "evidence" in metrics:
        row.update(evidence(exp.map[0], exp.cls, truth, known))
    if metrics:
        row["metric_seconds"] = time.perf_counter() - start
    return defined(row)


SCENE_COLUMNS = tuple(f"{kind}_{k}" for kind in ("share", "lift") for k in EVIDENCE_KEYS)


def evidence(heatmap: Tensor, cls: int, truth: Tensor | None,
             known: dict[int, dict[str, Tensor]] | None = None) -> dict[str, Value]:
    """``share_true``, ``lift_true`` and ``pointing`` of ``heatmap (*S)`` on the ground truth's
    region of class ``cls``, or on a scene's ``known`` evidence of ``cls`` with its
    :data:`SCENE_COLUMNS` (module docstring); ``None`` without either and where undefined."""
    blank: dict[str, Value] = dict.fromkeys(SCENE_COLUMNS)
    if known is not None and cls in known:
        masks = {k: at_size(m.to(heatmap.device), tuple(heatmap.shape)) for k, m in known[cls].items()}
        scores = evidence_score(heatmap, masks)
        return defined({"share_true": scores["share_true"], "lift_true": scores["lift_true"],
                        "pointing": pointing_game(heatmap, masks["object"]), **{c: scores[c] for c in SCENE_COLUMNS}})
    if truth is None:
        return {"share_true": None, "lift_true": None, "pointing": None, **blank}
    region = at_size(truth, tuple(heatmap.shape)) == cls
    nothing = torch.zeros_like(region)
    scores = evidence_score(heatmap, {k: region if k == "object" else nothing for k in EVIDENCE_KEYS})
    return {**defined({"share_true": scores["share_true"], "lift_true": scores["lift_true"],
                       "pointing": pointing_game(heatmap, region)}), **blank}


def defined(row: dict[str, Value]) -> dict[str, Value]:
    """``row`` with NaN as ``None`` (a table's missing value) and numbers as floats."""
    return {k: None if v is None or math.isnan(v) else float(v) for k, v in row.items()}


def at_size(labels: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A label map ``(*S')`` at ``shape`` by nearest neighbour (itself when already that size)."""
    if tuple(labels.shape) == shape:
        return labels
    resized = torch.nn.functional.interpolate(labels[None, None].double(), size=shape, mode="nearest-exact")
    return resized[0, 0].to(labels.dtype)


def overlay_path(out: Path, key: str) -> Path:
    """``out/overlays/<key, '/' → '__'>.png``."""
    return out / OVERLAYS / f"{key.replace('/', '__')}.png"


def save_batch_overlay(out: Path, key: str, heatmap: Tensor, overlay: Overlay) -> None:
    """Draw one explanation with :func:`segcam.viz.save_overlay` (3-D: its region's centre slice)
    to :func:`overlay_path`."""
    from ...viz import save_overlay  # matplotlib only when overlays are asked for

    path = overlay_path(out, key)
    path.parent.mkdir(exist_ok=True)
    save_overlay(path, overlay.image, heatmap, overlay.region, title=overlay.title)
