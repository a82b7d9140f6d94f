"""The main job: explain the bundled scenes with the default model and draw what it looked at.

For each bundled scene one target is explained at the bottleneck with Seg-Grad-CAM and
Seg-XRes-CAM, and each heatmap is scored against the scene's known evidence
(:func:`segcam.evaluation.evidence_score`):

1. a pixel of the context-dependent plus (its label depends on the cue square elsewhere);
2. the object of the biased class, the spotted disc (the model may look at the bias tile);
3. every pixel predicted as the plus class of another scene (the paper's whole-class region).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from .. import Explainer, Target, regions
from ..data import BIASED_CLASS, CONTEXT_CLASSES, Scene, sample_scenes
from ..evaluation import evidence_score
from ..models import default, default_info
from ..viz import Row, save_rows

METHODS = {
    "Seg-Grad-CAM": ("seg-grad-cam", {}),
    "Seg-XRes-CAM (2×2 max)": ("seg-xres-cam", {"window": 2, "pool": "max"}),
}


def demo_target(scene: Scene, kind: str, predicted: Tensor) -> tuple[Target, dict[str, Tensor], str]:
    """The target of ``kind`` ("pixel", "object", "class") in ``scene``, its evidence and a caption."""
    if kind == "pixel":
        k = next(k for k, c in enumerate(scene.classes, 1) if c in CONTEXT_CLASSES)
        point = scene.centre_of(k)
        return Target(int(predicted[point]), regions.pixel(*point)), scene.evidence(k), f"pixel {point}"
    if kind == "object":
        k = next(k for k, c in enumerate(scene.classes, 1) if c == BIASED_CLASS)
        point = scene.centre_of(k)
        return Target(int(predicted[point]), regions.instance(*point)), scene.evidence(k), f"object at {point}"
    cls = next(c for c in scene.classes if c in CONTEXT_CLASSES)
    return Target(cls, regions.predicted()), scene.class_evidence(cls), "whole class"


def run_demo(output: str | Path = "segcam-demo.png") -> list[dict[str, Any]]:
    """Explain the bundled scenes, write the figure to ``output``, return the evidence scores."""
    names = default_info()["class_names"]
    explainer = Explainer(default(), class_names=names)
    rows, report = [], []
    for scene, kind in zip(sample_scenes(), ("pixel", "object", "class")):
        fwd = explainer.forward(scene.image)
        target, evidence, where = demo_target(scene, kind, fwd.predicted[0])
        heatmaps = {}
        for label, (method, options) in METHODS.items():
            exp = explainer.explain(fwd, target, method=method, **options)
            score = evidence_score(exp.heatmap, evidence)
            caption = f"evidence {score['share_true']:.2f} (×{score['lift_true']:.1f})"
            if evidence["bias"].any():
                caption += f", bias tile {score['share_bias']:.2f}"
            heatmaps[label] = (exp.heatmap, caption)
            report.append({"scene": scene.index, "region": where, "class": names[exp.cls],
                           "method": method, "layer": exp.layer, **score})
        rows.append(Row(
            scene.image, fwd.predicted[0], exp.region[0], heatmaps,
            title=f"{names[exp.cls]}: {where}", truth=scene.labels,
            evidence={"cue": evidence["context"], "bias tile": evidence["bias"]},
        ))
    save_rows(output, rows, len(names), names)
    return report
