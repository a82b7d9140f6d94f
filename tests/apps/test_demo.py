"""The main job, and what the default model's explanations say about the known evidence."""

from __future__ import annotations

import math
import statistics

import pytest

from segcam import Explainer, Target, regions
from segcam.apps.demo import run_demo
from segcam.data import BIASED_CLASS, CONTEXT_CLASSES, make_scene
from segcam.evaluation import evidence_score
from segcam.models import default

FRESH = [make_scene(i, 7) for i in range(40)]  # not the training (0) or sample (3) seeds


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return Explainer(default())


def lifts(explainer: Explainer, classes, key: str, n: int) -> list[float]:
    """Seg-XRes-CAM (2×2, max) of the centre pixel of the first object of ``classes`` in each of
    the first ``n`` fresh scenes that have one; the lift of ``key`` evidence over uniform."""
    out = []
    for scene in FRESH:
        objects = [k for k, c in enumerate(scene.classes, start=1) if c in classes]
        if not objects:
            continue
        k = objects[0]
        point = scene.centre_of(k)
        fwd = explainer.forward(scene.image)
        cls = int(fwd.predicted[(0, *point)])
        assert cls == scene.classes[k - 1]  # the model gets these pixels right
        exp = explainer.explain(fwd, Target(cls, regions.pixel(*point)), method="seg-xres-cam",
                                window=2, pool="max")
        out.append(evidence_score(exp.heatmap, scene.evidence(k))[f"lift_{key}"])
        if len(out) == n:
            return out
    raise AssertionError(f"fewer than {n} scenes with classes {classes}")


def test_context_pixel_explanations_put_more_mass_on_the_cue_than_uniform(explainer):
    cue = lifts(explainer, CONTEXT_CLASSES, "context", n=10)
    assert all(lift > 1 for lift in cue), cue
    assert statistics.mean(cue) > 3, cue


def test_biased_class_explanations_point_at_the_bias_tile(explainer):
    bias = lifts(explainer, (BIASED_CLASS,), "bias", n=8)
    assert all(lift > 2 for lift in bias), bias


def test_main_job_writes_its_figure_and_scores(tmp_path):
    report = run_demo(tmp_path / "demo.png")
    assert (tmp_path / "demo.png").stat().st_size > 50_000
    assert len(report) == 6 and {r["method"] for r in report} == {"seg-grad-cam", "seg-xres-cam"}
    for r in report:
        assert all(math.isfinite(r[k]) for k in ("share_true", "share_context", "share_bias"))
    biased = [r for r in report if r["class"] == "spotted disc"]
    assert all(r["share_bias"] > r["uniform_bias"] for r in biased)
