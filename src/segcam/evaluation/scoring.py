"""Every measurement of one explanation, as one flat row: where its mass falls, whether the model
keeps its prediction on what the map keeps, how fast the score falls when the map's pixels go,
and how well it agrees with a RISE map of many masks.

=====================  ==============================================================
``share_*``, ``lift_*``  :func:`~segcam.evaluation.evidence.evidence_score` (known evidence only)
``empty``              1 for an all-zero map (its evidence shares are NaN and leave the means)
``pointing``           :func:`~segcam.evaluation.evidence.pointing_game` on the true evidence
``mask_dice``          the Seg-XRes-CAM paper's masking test at ``threshold`` (0.2): Dice of the
``mask_kept``          region's prediction on the masked image, and the share of the image kept
``*_dilated``          the same after dilating the kept pixels by ``dilation`` pixels
``sufficiency_area``   area under Dice against share kept over a sweep of thresholds
``deletion_*_area``    deletion / insertion curves of the mean class probability in the region,
``insertion_*_area``   of the region's Dice and of ``S_c`` (lower deletion, higher insertion better)
``rise_spearman``      rank (ties averaged) and linear correlation with a reference RISE map
``rise_pearson``
=====================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..checks import check_choice, check_float, check_int, shown
from ..errors import SegcamError
from ..explanation import Explanation
from .evidence import evidence_score, pointing_game
from .faithfulness import deletion_curve, insertion_curve
from .masking import masking_test, sufficiency_curve
from .perturb import BASELINES
from .similarity import pearson, spearman

Curves = dict[str, tuple[list[float], list[float]]]


@dataclass(frozen=True)
class Scoring:
    """How each explanation is measured.

    ``threshold`` binarises the map for the masking test (the paper's 0.2), ``dilation`` grows
    the kept pixels for the dilated variant, ``thresholds`` are the sufficiency sweep (it must
    hold ``threshold``), ``steps`` the deletion/insertion steps, ``baseline`` what removed pixels
    show, ``batch`` modified images per forward pass (``None``: automatic).
    """

    threshold: float = 0.2
    dilation: int = 2
    thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    steps: int = 10
    baseline: str = "mean"
    batch: int | None = None

    def __post_init__(self) -> None:
        check_float(self.threshold, "threshold", low=0, high=1, open_low=True)
        check_int(self.dilation, "dilation", low=0)
        check_int(self.steps, "steps", low=1)
        check_choice(self.baseline, "baseline", BASELINES)
        if self.batch is not None:
            check_int(self.batch, "batch", low=1)
        if not isinstance(self.thresholds, Sequence) or not self.thresholds:
            raise SegcamError(f"thresholds must be a non-empty sequence of numbers in (0, 1], got {shown(self.thresholds)}.")
        values = tuple(sorted({check_float(t, "threshold", low=0, high=1, open_low=True) for t in self.thresholds}))
        if not any(abs(t - self.threshold) < 1e-9 for t in values):
            raise SegcamError(f"thresholds {values} must include the masking threshold {self.threshold}; add it.")
        object.__setattr__(self, "thresholds", values)


def score_explanation(
    model: nn.Module,
    image: Tensor,
    exp: Explanation,
    reference: Tensor,
    *,
    evidence: Mapping[str, Tensor] | None = None,
    rise_map: Tensor | None = None,
    scoring: Scoring = Scoring(),
) -> tuple[dict[str, Any], Curves]:
    """The row of measurements of ``exp`` (one image: ``image (C, *S)``, ``reference`` the
    model's prediction ``(*S)``) and its curves ``{"sufficiency": (kept, dice), "deletion":
    (fractions, prob), "insertion": (fractions, prob)}``.

    ``evidence`` (masks ``object``, ``context``, ``bias``, ``distractors``) adds the evidence
    scores and the pointing game; ``rise_map`` adds the agreement with RISE.
    """
    if not isinstance(exp, Explanation) or exp.map.shape[0] != 1:
        raise SegcamError(f"score_explanation takes one Explanation of one image, got {shown(exp)}.")
    if not isinstance(scoring, Scoring):
        raise SegcamError(f"scoring must be a segcam.evaluation.Scoring, got {shown(scoring)}.")
    heatmap = exp.map[0]
    row: dict[str, Any] = {}
    row["empty"] = float(not bool((heatmap > 0).any()))  # an all-zero map: no evidence shares (NaN)
    if evidence is not None:
        row.update(evidence_score(heatmap, evidence))
        for key in ("context", "bias", "distractors"):  # no cue, no bias tile ...: not applicable
            if not bool(evidence[key].any()):
                row[f"share_{key}"] = float("nan")
        row["pointing"] = pointing_game(heatmap, evidence["object"] | evidence["context"])
    common = {"baseline": scoring.baseline, "reference": reference}
    sweep = sufficiency_curve(model, image, exp, thresholds=scoring.thresholds, batch=scoring.batch, **common)
    at = min(range(len(sweep.thresholds)), key=lambda i: abs(float(sweep.thresholds[i]) - scoring.threshold))
    row["mask_dice"], row["mask_kept"] = float(sweep.dice[at]), float(sweep.kept[at])
    if scoring.dilation:
        dilated = masking_test(model, image, exp, threshold=scoring.threshold, dilation=scoring.dilation, **common)
        row["mask_dice_dilated"], row["mask_kept_dilated"] = dilated.dice, dilated.kept
    row["sufficiency_area"] = sweep.area
    curves: Curves = {"sufficiency": tuple(t.tolist() for t in sweep.points())}
    for kind, curve_of in (("deletion", deletion_curve), ("insertion", insertion_curve)):
        curve = curve_of(model, image, exp, steps=scoring.steps, batch=scoring.batch, **common)
        row[f"{kind}_prob_area"], row[f"{kind}_dice_area"] = curve.prob_area, curve.dice_area
        row[f"{kind}_score_area"] = curve.score_area  # in the model's logit units: compare within a case
        curves[kind] = (curve.fractions.tolist(), curve.prob.tolist())
    if rise_map is not None:
        row["rise_spearman"] = spearman(heatmap, rise_map)
        row["rise_pearson"] = pearson(heatmap, rise_map)
    return row, curves
