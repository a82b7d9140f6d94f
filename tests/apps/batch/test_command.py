"""``segcam batch`` takes the methods' options as the flags ``segcam explain`` has: each reaches the
selected methods that take it (their rows' ``options`` and their maps), and a flag no selected
method takes, or a bad value, stops the run before anything is written."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import torch

import segcam
from segcam.apps.batch.store import MapStore
from segcam.apps.cli import main
from segcam.data import SAMPLES, load_image
from segcam.methods import CamMethod, unregister


@pytest.fixture()
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("scene-1.png", "scene-2.png"):
        shutil.copy(SAMPLES / name, images / name)
    return images


def rows(out):
    return pq.read_table(out / "explanations.parquet").to_pylist()


def test_method_flags_reach_the_rows_and_the_maps(folder, tmp_path):
    out = tmp_path / "out"
    argv = ["batch", str(folder), "--out", str(out), "--workers", "0", "--float32",
            "--methods", "seg-xres-cam", "--window", "4", "--pool", "mean"]
    assert main(argv) == 0
    table = rows(out)
    assert len(table) >= 2 and {r["image"] for r in table} == {str(folder / "scene-1.png"), str(folder / "scene-2.png")}
    loaded = segcam.load_model("default")
    explainer = segcam.Explainer.from_loaded(loaded)
    store = MapStore(out, dtype="float32")
    for row in table:
        assert row["error"] is None and row["method"] == "seg-xres-cam"
        assert json.loads(row["options"]) == {"window": 4, "pool": "mean"}
        image = loaded.preprocess(load_image(row["image"]))
        target = segcam.Target.from_dict(json.loads(row["target_json"]))
        exp = explainer.explain(image, target, method="seg-xres-cam", layer=row["layer"], window=4, pool="mean")
        default = explainer.explain(image, target, method="seg-xres-cam", layer=row["layer"])
        stored, _ = store.get(row["key"])
        assert torch.allclose(stored, exp.map[0], atol=1e-6)
        assert not torch.allclose(stored, default.map[0], atol=1e-3)  # the flags changed the maps


def test_a_flag_goes_to_the_selected_methods_that_take_it(folder, tmp_path):
    out = tmp_path / "out"
    argv = ["batch", str(folder), "--out", str(out), "--workers", "0",  # --batch-size: rise and score-cam
            "--methods", "seg-grad-cam", "seg-xres-cam", "score-cam", "--window", "3", "--batch-size", "5"]
    assert main(argv) == 0
    table = rows(out)
    assert len(table) >= 6 and sum(r["method"] == "score-cam" for r in table) * 3 == len(table)
    options = {r["method"]: json.loads(r["options"]) for r in table}
    assert options == {"seg-grad-cam": {}, "seg-xres-cam": {"window": 3, "pool": "max"},
                       "score-cam": {"batch_size": 5}}


@pytest.mark.parametrize("argv, message", [
    (["--window", "2"], "--window applies to seg-xres-cam, not to seg-grad-cam; select one of the methods"),
    (["--methods", "seg-grad-cam", "layer-cam", "--n-masks", "8"],
     "--n-masks applies to rise, not to seg-grad-cam or layer-cam"),
    (["--methods", "seg-xres-cam", "--window", "2.5"], "--window takes N, HxW"),
    (["--methods", "rise", "--n-masks", "0"], "--n-masks must be positive, got 0"),
    (["--methods", "seg-xres-cam", "--pool", "median"], "pool must be one of 'max', 'mean'"),
])
def test_a_bad_method_flag_stops_the_run_with_a_one_line_error(folder, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["batch", str(folder), "--out", str(out), "--workers", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing was read or written


def test_options_named_like_batch_flags_get_the_methods_prefix(capsys):
    @segcam.register("clash-batch-cam")
    class Clash(CamMethod):
        """Clash: options named like `segcam batch` flags."""

        workers: int = 1
        max_pixels: int = 1

        def weights(self, activation, gradient):
            return gradient * self.workers * self.max_pixels

    try:
        with pytest.raises(SystemExit):
            main(["batch", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--clash-batch-cam-workers" in text and "--clash-batch-cam-max-pixels" in text
        assert "--window WINDOW window size" in text and "[seg-xres-cam]" in text
    finally:
        unregister("clash-batch-cam")


def test_device_cpu_runs_there_and_a_device_this_machine_lacks_is_refused(folder, tmp_path, capsys):
    from segcam.apps.batch.runner import run_batch

    loaded = segcam.load_model("default")
    summary = run_batch(folder, tmp_path / "py", model=loaded, device="cpu")
    assert summary.written > 0 and next(loaded.model.parameters()).device.type == "cpu"
    assert main(["batch", str(folder), "--out", str(tmp_path / "cli"), "--device", "cpu", "--workers", "0"]) == 0
    capsys.readouterr()
    for device, message in (("cuda:99", "CUDA device"), ("toaster", "unknown device 'toaster'")):
        assert main(["batch", str(folder), "--out", str(tmp_path / device), "--device", device]) == 2
        err = capsys.readouterr().err
        assert message in err and "--device cpu" in err or "give 'cpu'" in err
        assert not (tmp_path / device).exists()
    assert main(["batch", str(folder), "--out", str(tmp_path / "ray"), "--engine", "ray", "--device", "cpu"]) == 2
    assert "--gpus-per-actor 1 instead of --device" in capsys.readouterr().err


def test_an_unknown_method_names_the_near_ones(folder, tmp_path, capsys):
    assert main(["batch", str(folder), "--out", str(tmp_path / "o"), "--methods", "seg-xres-cum"]) == 2
    assert "unknown method 'seg-xres-cum' (did you mean seg-xres-cam" in capsys.readouterr().err
