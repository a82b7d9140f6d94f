"""The batch's metric columns are the evaluation suite's values for the same explanation; no
metrics asked, no columns; evidence needs a ground truth; overlays come one per explanation."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import segcam
from segcam import SegcamError
from segcam.apps.batch.metrics import (
    METRICS,
    SCENE_COLUMNS,
    Overlay,
    at_size,
    check_metrics,
    evidence,
    overlay_path,
    reference_labels,
    save_batch_overlay,
)
from segcam.apps.batch.runner import BatchConfig, run_batch
from segcam.apps.cli import main
from segcam.data import SAMPLES, load_image, load_scene
from segcam.evaluation import (
    EVIDENCE_KEYS,
    deletion_curve,
    evidence_score,
    insertion_curve,
    masking_test,
    pointing_game,
)

METRIC_COLUMNS = {"mask_dice", "mask_kept", "deletion_prob_area", "deletion_dice_area", "deletion_score_area",
                  "insertion_prob_area", "insertion_dice_area", "insertion_score_area", "share_true", "lift_true",
                  "pointing", "metric_seconds"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """scene-1 with its ground truth, scene-2 without."""
    folder = tmp_path_factory.mktemp("data")
    for name in ("scene-1", "scene-2"):
        shutil.copy(SAMPLES / f"{name}.png", folder / f"{name}.png")
    np.save(folder / "scene-1-truth.npy", load_scene(SAMPLES / "scene-1.npz").labels.numpy())
    (folder / "items.csv").write_text("image,mask\nscene-1.png,scene-1-truth.npy\nscene-2.png,\n")
    return folder / "items.csv"


@pytest.fixture(scope="module")
def measured(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    # one item per forward pass: the very computation item_explanations repeats, so metrics compare exactly
    # (items batched together equal it to float rounding: test_runner)
    run_batch(manifest, out, config=BatchConfig(workers=0, metrics=METRICS, overlays=True, dtype="float32",
                                                batch_size=1))
    return out, pq.read_table(out / "explanations.parquet").to_pylist()


def item_explanations(rows, index):
    """The item's explanations computed as the runner does: one explain_many over its targets."""
    loaded = segcam.load_model("default")
    explainer = segcam.Explainer.from_loaded(loaded)
    mine = [r for r in rows if r["index"] == index]
    image = loaded.preprocess(load_image(mine[0]["image"]))
    targets = [segcam.Target.from_dict(json.loads(r["target_json"])) for r in mine]
    exps = explainer.explain_many(image, targets, method=mine[0]["method"], layer=[mine[0]["layer"]])
    return explainer.model, image, mine, [exps[k, mine[0]["layer"]] for k in range(len(mine))]


def test_metric_columns_equal_the_evaluation_functions(measured):
    _, rows = measured
    model, image, mine, exps = item_explanations(rows, 0)
    truth = load_scene(SAMPLES / "scene-1.npz").labels
    assert len(mine) >= 2 and not any(r["error"] for r in rows)
    for row, exp in zip(mine, exps):
        masked = masking_test(model, image, exp, threshold=0.2, baseline="mean")
        assert (row["mask_dice"], row["mask_kept"]) == (masked.dice, masked.kept)
        for kind, curve_of in (("deletion", deletion_curve), ("insertion", insertion_curve)):
            curve = curve_of(model, image, exp, steps=10, baseline="mean")
            assert row[f"{kind}_prob_area"] == curve.prob_area and row[f"{kind}_dice_area"] == curve.dice_area
            assert row[f"{kind}_score_area"] == curve.score_area
        region = truth == exp.cls
        h = exp.map[0].double()
        assert row["share_true"] == pytest.approx(float((h * region).sum() / h.sum()), rel=1e-12)
        assert row["lift_true"] == pytest.approx(row["share_true"] * region.numel() / float(region.sum()), rel=1e-12)
        nothing = torch.zeros_like(region)
        scores = evidence_score(exp.map[0], {k: region if k == "object" else nothing for k in EVIDENCE_KEYS})
        assert (row["share_true"], row["lift_true"]) == (scores["share_true"], scores["lift_true"])
        assert row["pointing"] == pointing_game(exp.map[0], region)
        assert row["metric_seconds"] > 0


def test_evidence_is_none_without_a_ground_truth(measured):
    _, rows = measured
    without = [r for r in rows if r["index"] == 1]
    assert without and all(r[c] is None for r in without for c in ("share_true", "lift_true", "pointing"))
    assert all(r["mask_dice"] is not None and r["deletion_prob_area"] is not None for r in without)


def test_overlays_are_written_one_per_explanation(measured):
    out, rows = measured
    written = sorted(p.name for p in (out / "overlays").iterdir())
    assert written == sorted(overlay_path(out, r["key"]).name for r in rows)
    assert all(Image.open(out / "overlays" / name).size[0] > 100 for name in written)


def test_no_metrics_asked_no_columns_and_no_overlays(manifest, tmp_path):
    run_batch(manifest, tmp_path, config=BatchConfig(workers=0))
    columns = set(pq.read_schema(tmp_path / "explanations.parquet").names)
    assert "score" in columns and not columns & (METRIC_COLUMNS | set(SCENE_COLUMNS))
    assert not (tmp_path / "overlays").exists()


def test_evidence_by_hand():
    heat = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    truth = torch.tensor([[0, 2], [2, 1]])
    blank = dict.fromkeys(SCENE_COLUMNS)  # the columns of a scene's known evidence: none here
    assert evidence(heat, 2, truth) == {"share_true": 0.75, "lift_true": 1.5, "pointing": 1.0, **blank}
    assert evidence(heat, 1, truth) == {"share_true": 0.25, "lift_true": 1.0, "pointing": 0.0, **blank}
    assert evidence(heat, 2, None) == {"share_true": None, "lift_true": None, "pointing": None, **blank}


def test_undefined_evidence_is_none_not_nan():
    heat = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    truth = torch.tensor([[0, 2], [2, 1]])
    blank = dict.fromkeys(SCENE_COLUMNS)
    assert evidence(heat, 3, truth) == {"share_true": 0.0, "lift_true": None, "pointing": 0.0, **blank}  # no pixel of 3
    assert evidence(torch.zeros(2, 2), 2, truth) == {"share_true": None, "lift_true": None, "pointing": 0.0, **blank}


def test_a_mask_of_another_size_is_taken_to_the_maps_size_by_nearest_neighbour():
    labels = torch.tensor([[0, 1], [2, 3]])
    assert torch.equal(at_size(labels, (4, 4)), labels.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert at_size(labels, (2, 2)) is labels


def test_metric_names_are_checked():
    assert check_metrics(["evidence", "masking", "evidence"]) == ("evidence", "masking")
    with pytest.raises(SegcamError, match="unknown metric.*'dice'.*masking, deletion, insertion, evidence"):
        BatchConfig(metrics=("masking", "dice"))
    with pytest.raises(SegcamError, match="list of metric names"):
        BatchConfig(metrics="masking")
    with pytest.raises(SegcamError, match="overlays must be True or False"):
        BatchConfig(overlays="yes")


def test_the_reference_is_given_only_to_perturbing_metrics():
    predicted = torch.randint(0, 6, (16, 16))
    assert reference_labels(predicted, ("evidence",)) is None
    labels = reference_labels(predicted, ("masking", "evidence"))
    assert labels.shape == (16, 16) and not labels.is_floating_point() and torch.equal(labels, predicted)


def test_a_volume_is_drawn_at_its_regions_centre_slice(tmp_path):
    region = torch.zeros(5, 8, 8, dtype=torch.bool)
    region[1:4, 2:5, 2:5] = True
    save_batch_overlay(tmp_path, "000003/c1/m/l", torch.rand(5, 8, 8), Overlay(torch.rand(1, 5, 8, 8), region, "t"))
    assert (tmp_path / "overlays" / "000003__c1__m__l.png").is_file()


def test_the_command_line_takes_comma_separated_metrics(manifest, tmp_path, capsys):
    assert main(["batch", str(manifest), "--out", str(tmp_path), "--workers", "0", "--metrics", "evidence, masking",
                 "--overlays"]) == 0
    rows = pq.read_table(tmp_path / "explanations.parquet").to_pylist()
    assert {"share_true", "mask_dice"} <= set(rows[0]) and "deletion_prob_area" not in rows[0]
    assert len(list((tmp_path / "overlays").iterdir())) == len(rows)
    assert main(["batch", str(manifest), "--out", str(tmp_path / "x"), "--metrics", "masking,bogus"]) == 2
    assert "unknown metric(s) 'bogus'" in capsys.readouterr().err


def test_synthetic_scenes_give_the_evidence_they_really_have(tmp_path):
    from segcam.apps.batch.store import MapStore

    folder = tmp_path / "scenes"
    folder.mkdir()
    for k in (1, 2):
        shutil.copy(SAMPLES / f"scene-{k}.npz", folder / f"scene-{k}.npz")
    out = tmp_path / "out"
    run_batch(folder, out, config=BatchConfig(workers=0, metrics=("evidence",), dtype="float32", targets="truth"))
    rows = [r for r in pq.read_table(out / "explanations.parquet").to_pylist() if not r["error"]]
    store = MapStore(out, dtype="float32")
    scenes = {f"scene-{k}.npz": load_scene(SAMPLES / f"scene-{k}.npz") for k in (1, 2)}
    with_scene = 0
    for row in rows:
        scene = scenes[row["image"].rsplit("/", 1)[-1]]
        assert row["key"].split("/")[1] == f"t{row['class']}"  # truth targets: the scene's labels
        heatmap = store.get(row["key"])[0]
        if row["class"] in scene.classes:
            with_scene += 1
            known = scene.class_evidence(row["class"])
            scores = evidence_score(heatmap, known)
            for c in ("share_true", "lift_true", *SCENE_COLUMNS):  # NaN (e.g. no bias tile) is a None cell
                assert row[c] == (None if math.isnan(scores[c]) else pytest.approx(scores[c], rel=1e-9)), c
            assert row["pointing"] == pointing_game(heatmap, known["object"])
        else:  # a labelled class the scene keeps no evidence for: the mask's own region, no scene columns
            assert all(row[c] is None for c in SCENE_COLUMNS)
    assert with_scene >= 4
