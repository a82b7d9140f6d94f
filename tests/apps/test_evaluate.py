"""``segcam evaluate``: the benchmark end to end, on the synthetic scenes and on a user's folder."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch import nn

from segcam import SegcamError, load_model
from segcam.apps import cli
from segcam.apps.evaluate import Settings, evaluate, fresh_copy, shuffled_label_model
from segcam.data import make_scene, save_image
from segcam.models import default


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    captured = []

    class Tee:
        def write(self, text):
            captured.append(text)

        def flush(self):
            pass

    import sys

    stderr, sys.stderr = sys.stderr, Tee()
    try:
        status = cli.main(["evaluate", "--quick", "--out", str(out)])
    finally:
        sys.stderr = stderr
    return out, status, "".join(captured)


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_run_writes_every_table(quick):
    out, status, progress = quick
    assert status == 0
    rows = _csv(out / "results.csv")
    methods = {r["method"] for r in rows}
    assert {"seg-grad-cam", "seg-xres-cam (max)", "seg-xres-cam (mean)", "rise", "score-cam"} <= methods
    assert {r["kind"] for r in rows} == {"pixel", "object", "class"}
    assert {r["layer"] for r in rows} == {"downs.2", "downs.0", "ups.1", "input"}
    table = pq.read_table(out / "results.parquet").to_pylist()
    assert len(table) == len(rows) and table[0]["method"] == rows[0]["method"]
    assert float(table[0]["mask_kept"]) == pytest.approx(float(rows[0]["mask_kept"]))
    sanity = _csv(out / "sanity.csv")
    assert {r["test"] for r in sanity} == {"cascading", "labels"}  # the default model is retrained on shuffled labels
    curves = _csv(out / "curves.csv")
    assert {r["curve"] for r in curves} == {"sufficiency", "deletion", "insertion"}
    assert re.search(r"\] 4/4 .* s left", progress)  # a progress bar with the time left


def test_quick_run_writes_a_report_to_read(quick):
    out, _, _ = quick
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in ("**Headline**", "The papers' claims", "Sanity checks", "By region kind", "By layer",
                 "segcam evaluate --quick --out", "torch: ", "Spearman"):
        assert text in md or text in page
    for image in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (out / image).stat().st_size > 10_000
    assert page.count("<table>") >= 5 and "<img src='figures/curves-0.png'" in page
    assert "<strong>Headline</strong>" in page and "**" not in page  # Markdown emphasis rendered
    summary = json.loads((out / "summary.json").read_text())
    [model] = summary["models"]
    assert model["layers"][0] == "downs.2" and len(model["claims"]) == 6
    assert all(c["verdict"] in ("holds", "reversed", "not shown") for c in model["claims"])
    assert summary["settings"]["scenes"] == 3 and summary["command"].startswith("segcam evaluate --quick")


def test_a_users_folder_with_ground_truth(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(2):
        scene = make_scene(k, 5)
        save_image(images / f"img{k}.png", scene.image)
        if k == 0:
            Image.fromarray(scene.labels.numpy().astype(np.uint8), mode="L").save(masks / "img0.png")
    out = tmp_path / "out"
    assert cli.main(["evaluate", "--quick", "--images", str(images), "--masks", str(masks), "--out", str(out),
                     "--methods", "seg-grad-cam", "seg-xres-cam"]) == 0
    rows = _csv(out / "results.csv")
    assert {r["image"] for r in rows} == {"img0.png", "img1.png"}
    with_truth = [r for r in rows if r["image"] == "img0.png"]
    assert all(0 <= float(r["share_object"]) <= 1 for r in with_truth)
    assert all(not r.get("share_object") or math.isnan(float(r["share_object"]))
               for r in rows if r["image"] == "img1.png")  # no ground truth: no evidence scores
    assert "Label randomisation: skipped" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--masks", "x"], "--masks goes with --images"),
    (["--images", "/nonexistent"], "is not a folder"),
    (["--model", "zoo:unet", "--num-classes", "3"], "--images DIR"),
    (["--model", "default", "--weights", "a", "--weights", "b"], "one --weights per --model"),
    (["--scenes", "0"], "positive integer"),
    (["--methods", "nope"], "unknown method"),
])
def test_bad_arguments_give_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) if message == "positive integer" else _no_raise():
        assert cli.main(["evaluate", "--out", str(tmp_path / "o"), *argv]) == 2
    assert message in capsys.readouterr().err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fresh_copy_redraws_the_architecture_and_leaves_the_model():
    model = default()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = fresh_copy(model)
    assert copy is not None and type(copy) is type(model)
    assert not torch.equal(copy.head.weight, model.head.weight)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1))

    assert fresh_copy(Odd()) is None  # no reset_parameters: cannot be retrained from scratch


TINY = Settings(scenes=1, rise_masks=10, reference_masks=20, thresholds=(0.2,), steps=2, sanity_images=0,
                label_steps=1, label_scenes=2, examples=1)


def test_input_methods_only_and_images_without_ground_truth(tmp_path):
    image = make_scene(0, 5).image
    runs = evaluate(tmp_path, [("default", load_model("default"))], settings=TINY, methods=["rise"],
                    images=[("a.png", image, None)], log=lambda line: None)
    assert {r["layer"] for r in runs[0].result.rows} == {"input"}
    assert all("share_true" not in r for r in runs[0].result.rows)  # no evidence known
    md = (tmp_path / "report.md").read_text()
    assert "curves at input" in md and "| rise |" in md


def test_evaluate_checks_its_arguments(tmp_path):
    with pytest.raises(SegcamError, match="load_model"):
        evaluate(tmp_path, [default()], settings=TINY)
    with pytest.raises(SegcamError, match="Settings"):
        evaluate(tmp_path, settings="quick")
    with pytest.raises(SegcamError, match="label_steps must be a positive integer"):
        Settings(label_steps=0)
    with pytest.raises(SegcamError, match="methods must be a non-empty list"):
        evaluate(tmp_path, settings=TINY, methods="rise")


def test_the_shuffled_label_model_leaves_the_callers_random_state():
    trained = default()  # building it draws random numbers: before the seed
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model = shuffled_label_model(trained, steps=1, scenes=2)
    assert model is not None and torch.equal(torch.rand(3), expected)
