"""The scored benchmark: a row per (image, case, method, layer), each measurement the same as the
evaluation function it comes from, and the sanity checks beside them."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_untouched, snapshot
from torch import nn

from segcam import Explainer, SegcamError
from segcam.evaluation import (
    BenchmarkConfig,
    Scoring,
    benchmark_layers,
    candidates,
    masking_test,
    run_benchmark,
    scene_cases,
)
from segcam.evaluation.similarity import spearman
from segcam.models import default


@pytest.fixture(scope="module")
def small_run():
    explainer = Explainer(default().train())  # a model in training mode stays so
    before = snapshot(explainer.model)
    items = list(scene_cases(explainer, 1, seed=3))
    config = BenchmarkConfig(
        candidates=tuple(candidates(["seg-grad-cam", "seg-xres-cam", "rise"], rise_masks=40)),
        reference_masks=80, scoring=Scoring(thresholds=(0.2, 0.6), steps=2), sanity_images=1, sanity_rise_masks=16)
    seen = []
    result = run_benchmark(explainer, items, config, model_name="unet", progress=lambda *a: seen.append(a))
    assert_untouched(explainer.model, before)
    return explainer, items, config, result, seen


def test_candidates_are_every_method_with_both_poolings_of_seg_xres_cam():
    labels = [c.label for c in candidates(rise_masks=7)]
    assert "seg-xres-cam (max)" in labels and "seg-xres-cam (mean)" in labels and "seg-xres-cam" not in labels
    assert next(c for c in candidates(rise_masks=7) if c.method == "rise").options == {"n_masks": 7}
    with pytest.raises(SegcamError, match="unknown method"):
        candidates(["grad-cam-deluxe"])


def test_layers_are_the_bottleneck_an_encoder_and_a_decoder_block():
    assert benchmark_layers(Explainer(default()), torch.zeros(3, 64, 64)) == ["downs.2", "downs.0", "ups.1"]


def test_one_row_per_case_method_and_layer(small_run):
    _, items, _, result, seen = small_run
    layers = result.layers
    per_case = 3 * len(layers) + 1  # grad-cam and two xres at every layer, RISE at the input
    assert len(result.rows) == len(items[0].cases) * per_case
    assert {r["layer"] for r in result.rows} == {*layers, "input"}
    assert all(r["ms"] > 0 and r["model"] == "unet" for r in result.rows)
    assert seen[-1][:2] == (2, 2) and seen[0][:2] == (0, 2)  # one image + its sanity checks


def test_rows_equal_the_functions_they_come_from(small_run):
    explainer, items, _, result, _ = small_run
    item = items[0]
    case = next(c for c in item.cases if c.kind == "object")
    exp = explainer.explain(item.image, case.target, method="seg-xres-cam", layer="downs.2", pool="mean")
    row = next(r for r in result.rows if r["kind"] == "object" and r["method"] == "seg-xres-cam (mean)"
               and r["layer"] == "downs.2")
    direct = masking_test(explainer.model, item.image, exp, threshold=0.2)
    assert row["mask_dice"] == pytest.approx(direct.dice) and row["mask_kept"] == pytest.approx(direct.kept)
    reference = explainer.explain(item.image, case.target, method="rise", n_masks=80, seed=1)
    assert row["rise_spearman"] == pytest.approx(spearman(exp.map[0], reference.map[0]))
    assert row["score"] == pytest.approx(float(exp.score[0]), rel=1e-5)
    assert 0 <= row["share_true"] <= 1 and 0 <= row["pointing"] <= 1


def test_curves_examples_and_sanity_rows(small_run):
    _, items, _, result, _ = small_run
    kinds = {c["curve"] for c in result.curves}
    assert kinds == {"sufficiency", "deletion", "insertion"}
    deletion = [c for c in result.curves if c["curve"] == "deletion" and c["method"] == "rise"
                and c["kind"] == "pixel"]
    assert [c["x"] for c in deletion] == pytest.approx([0, 0.5, 1])
    [(item, region, maps)] = result.examples
    assert item is items[0] and region.any() and set(maps) == {"seg-grad-cam", "seg-xres-cam (max)",
                                                                  "seg-xres-cam (mean)", "rise"}
    telling = [r for r in result.sanity_rows if r["telling"]]
    assert {(r["method"], r["layer"]) for r in telling} == {
        *((m, layer) for m in ("seg-grad-cam", "seg-xres-cam (max)", "seg-xres-cam (mean)") for layer in result.layers),
        ("rise", "input")}
    assert all(isinstance(r["passed"], bool) and r["verdict"] for r in telling)


def test_bad_configurations_are_refused():
    with pytest.raises(SegcamError, match="Candidate"):
        BenchmarkConfig(candidates=())
    with pytest.raises(SegcamError, match="include the masking threshold"):
        Scoring(thresholds=(0.5,))
    with pytest.raises(SegcamError, match="at least one image"):
        run_benchmark(Explainer(default()), [])


class Plain(nn.Module):
    """A network whose bottleneck sits inside one block: ``backbone.2`` (8×8; the block ends at 16×16)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                                      nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Upsample(scale_factor=2))
        self.up = nn.Upsample(scale_factor=2)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.up(self.backbone(x)))


def test_layers_when_the_bottleneck_is_not_a_block():
    layers = benchmark_layers(Explainer(Plain()), torch.zeros(3, 32, 32))
    assert layers == ["backbone.2", "backbone.0", "backbone"]
