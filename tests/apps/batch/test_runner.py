"""The local batch engine end to end: the maps and rows equal single explanations, bad files
become rows, NIfTI maps keep the input's affine, and a killed run resumes where it stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import segcam
from segcam.apps.batch.runner import BatchConfig, run_batch
from segcam.apps.batch.store import MapStore
from segcam.apps.batch.table import done_keys
from segcam.data import SAMPLES, load_image, save_nifti


@pytest.fixture()
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("scene-1.png", "scene-2.png"):
        shutil.copy(SAMPLES / name, images / name)
    (images / "scene-0-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return images


def table(out):
    return pq.read_table(out / "explanations.parquet").to_pylist()


def test_maps_and_rows_equal_single_explanations(folder, tmp_path):
    out = tmp_path / "out"
    config = BatchConfig(methods=("seg-grad-cam", "seg-xres-cam"), layers=("downs.1", "downs.2"), workers=0,
                         dtype="float32")
    summary = run_batch(folder, out, config=config)
    rows = table(out)
    errors = [r for r in rows if r["error"]]
    assert [r["key"] for r in errors] == ["000000/error"] and "broken" in errors[0]["error"]
    assert summary.failed == 1 and summary.written == len(rows) - 1 > 0
    loaded = segcam.load_model("default")
    explainer = segcam.Explainer.from_loaded(loaded)
    store = MapStore(out, dtype="float32")
    for row in rows:
        if row["error"]:
            continue
        image = loaded.preprocess(load_image(row["image"]))
        target = segcam.Target.from_dict(__import__("json").loads(row["target_json"]))
        exp = explainer.explain(image, target, method=row["method"], layer=row["layer"])
        stored, attrs = store.get(row["key"])
        assert torch.allclose(stored, exp.map[0], atol=1e-6) and attrs["score"] == pytest.approx(row["score"])
        assert row["score"] == pytest.approx(float(exp.score[0]), rel=1e-5)
    keys = {r["key"].split("/")[2] for r in rows if not r["error"]}
    assert keys == {"seg-grad-cam", "seg-xres-cam"}


def test_a_second_run_skips_what_is_done(folder, tmp_path):
    out = tmp_path / "out"
    first = run_batch(folder, out, config=BatchConfig(workers=0))
    again = run_batch(folder, out, config=BatchConfig(workers=0))
    assert again.written == 0 and again.skipped == first.written and len(table(out)) == first.written + 1


def test_nifti_inputs_get_nifti_maps_with_their_affine(tmp_path):
    import nibabel as nib

    from segcam.models import UNet, save_weights

    arch = {"num_classes": 3, "in_channels": 1, "width": 4, "depth": 2, "dims": 3}
    torch.manual_seed(0)
    save_weights(UNet(**arch).eval(), tmp_path / "u3.safetensors", {"arch": arch})
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    (tmp_path / "vols").mkdir()
    save_nifti(tmp_path / "vols" / "ct.nii.gz", np.random.default_rng(0).random((8, 16, 16)).astype(np.float32),
               affine)
    out = tmp_path / "out"
    run_batch(tmp_path / "vols", out, model=str(tmp_path / "u3.safetensors"),
              config=BatchConfig(workers=0, targets="predicted:0,1,2"))  # a random model: mostly class 0
    written = sorted((out / "nifti").glob("*.nii.gz"))
    assert written and all(np.allclose(nib.load(p).affine, affine) for p in written)
    assert nib.load(written[0]).shape == (16, 16, 8)  # (X, Y, Z) as the input


SCRIPT = """
import sys, time
from segcam.apps.batch.runner import BatchConfig, run_batch
def told(done, total, name):
    print(done, flush=True)
    time.sleep(0.3)
run_batch(sys.argv[1], sys.argv[2], config=BatchConfig(workers=0, batch_size=2), progress=told)
"""


def test_a_killed_run_loses_at_most_the_group_in_flight_and_resumes_as_a_clean_run(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        shutil.copy(SAMPLES / f"scene-{i % 3 + 1}.png", images / f"img{i}.png")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(images), str(killed)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        finished = 0
        for line in proc.stdout:  # the run says an item is finished only once its rows are committed
            finished = int(line)
            if finished >= 4:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = done_keys(killed)  # far fewer rows than a part file holds: all from the journal
    assert finished >= 4 and not (killed / "explanations.parquet").exists()
    assert {int(k.split("/")[0]) for k in partial} >= set(range(finished))  # nothing finished was lost
    resumed = run_batch(images, killed, config=BatchConfig(workers=0, batch_size=2))
    run_batch(images, clean, config=BatchConfig(workers=0, batch_size=2))
    assert resumed.skipped == len(partial) and resumed.written + resumed.skipped == len(table(clean))
    got = {(r["key"], round(r["score"], 4)) for r in table(killed)}
    assert got == {(r["key"], round(r["score"], 4)) for r in table(clean)}
    resumed_maps, clean_maps = MapStore(killed), MapStore(clean)
    stored = clean_maps.keys()
    assert resumed_maps.keys() == stored and all(torch.equal(resumed_maps.get(k)[0], clean_maps.get(k)[0])
                                                 for k in stored)  # the same groups: the same maps, bit for bit


def test_the_command_line_writes_the_outputs_and_a_summary(folder, tmp_path, capsys):
    from segcam.apps.cli import main

    assert main(["batch", str(folder), "--out", str(tmp_path / "o"), "--workers", "2", "--csv"]) == 0
    printed = capsys.readouterr().out
    assert "explanations written" in printed and "1 items failed" in printed
    assert (tmp_path / "o" / "explanations.csv").exists() and (tmp_path / "o" / "maps.zarr").is_dir()


@pytest.mark.parametrize("kind", ["predicted", "instances:1,3", "truth", "manifest"])
def test_every_target_kind_from_a_manifest_and_a_glob(tmp_path, kind):
    import csv
    import json

    from segcam.data import sample_scenes

    scene = sample_scenes()[0]
    np.save(tmp_path / "labels.npy", scene.labels.numpy())
    target = {"cls": 1, "region": {"kind": "box", "start": [0, 0], "stop": [32, 32]}}
    with (tmp_path / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["image", "mask", "targets"],
                                 [str(SAMPLES / "scene-1.png"), "labels.npy", json.dumps([target])]])
    out = tmp_path / kind.split(":")[0]
    run_batch(tmp_path / "m.csv", out, config=BatchConfig(workers=0, targets=kind))
    keys = [r["key"].split("/")[1] for r in table(out)]
    expected = {"predicted": lambda k: k.startswith("c") and "-" not in k,
                "instances": lambda k: k.startswith(("c1-i", "c3-i")),
                "truth": lambda k: k.startswith("t"), "manifest": lambda k: k == "m0"}[kind.split(":")[0]]
    assert keys and all(expected(k) for k in keys), keys
    if kind == "truth":
        classes = sorted(int(c) for c in scene.labels.unique() if c != 0)
        assert sorted(int(k[1:]) for k in keys) == classes
    glob_out = tmp_path / "glob"
    run_batch(str(SAMPLES / "scene-*.png"), glob_out, config=BatchConfig(workers=0))
    assert {r["image"] for r in table(glob_out)} == {str(p) for p in sorted(SAMPLES.glob("scene-*.png"))}


def test_memory_stays_bounded_over_many_items(tmp_path, monkeypatch):
    """At most ``ahead`` + one group of decoded items alive at once, and resident memory flat."""
    import gc
    import weakref

    from segcam.apps.batch import decode as decode_module

    n = 1200
    manifest = tmp_path / "many.csv"
    manifest.write_text("image\n" + "".join(f"{SAMPLES / f'scene-{i % 3 + 1}.png'}\n" for i in range(n)))
    alive, most = [0], [0]
    read = decode_module.read

    def counted(item, max_pixels):
        d = read(item, max_pixels)
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(d.image, lambda: alive.__setitem__(0, alive[0] - 1))
        return d

    monkeypatch.setattr(decode_module, "read", counted)
    rss = {}

    def progress(done, total, name):
        if done in (200, n):
            gc.collect()
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            rss[done] = pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    config = BatchConfig(workers=0, ahead=8, batch_size=8)
    summary = run_batch(manifest, tmp_path / "out", config=config, progress=progress)
    assert summary.written > n and summary.failed == 0
    assert most[0] <= config.ahead + config.batch_size + 1  # the items being read, the group being explained
    assert rss[n] - rss[200] < 40, rss  # MB: 1000 more items (thousands of maps) add nothing that stays


def test_a_resumed_run_redoes_only_the_missing_layers_and_counts_each_explanation(folder, tmp_path):
    out = tmp_path / "out"
    first = run_batch(folder, out, config=BatchConfig(workers=0, layers=("downs.2",)))
    with pytest.raises(segcam.SegcamError, match="other settings .layers"):  # another run's settings: refused
        run_batch(folder, out, config=BatchConfig(workers=0, layers=("downs.1", "downs.2")))
    again = run_batch(folder, out, config=BatchConfig(workers=0, layers=("downs.2",)))
    assert again.written == 0 and again.skipped == first.written  # per explanation
    rows = table(out)
    assert len([r for r in rows if not r["error"]]) == first.written


def test_a_folder_of_another_run_is_refused_with_the_fix(folder, tmp_path):
    out = tmp_path / "out"
    run_batch(folder, out, config=BatchConfig(workers=0, methods=("seg-xres-cam",),
                                              options={"seg-xres-cam": {"window": 2}}))
    with pytest.raises(segcam.SegcamError, match=r"other settings \(options: .* give a new --out"):
        run_batch(folder, out, config=BatchConfig(workers=0, methods=("seg-xres-cam",),
                                                  options={"seg-xres-cam": {"window": 4}}))
    shutil.copy(SAMPLES / "scene-3.png", folder / "a-first.png")  # sorts first: renumbers every item
    with pytest.raises(segcam.SegcamError, match="over other items"):
        run_batch(folder, out, config=BatchConfig(workers=0, methods=("seg-xres-cam",),
                                                  options={"seg-xres-cam": {"window": 2}}))


def test_items_added_at_the_end_of_a_manifest_are_explained_and_the_rest_skipped(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image\n{SAMPLES / 'scene-1.png'}\n")
    first = run_batch(manifest, tmp_path / "out", config=BatchConfig(workers=0))
    manifest.write_text(f"image\n{SAMPLES / 'scene-1.png'}\n{SAMPLES / 'scene-2.png'}\n")
    second = run_batch(manifest, tmp_path / "out", config=BatchConfig(workers=0))
    assert second.skipped == first.written and second.written > 0
    assert {r["index"] for r in table(tmp_path / "out")} == {0, 1}


def test_settings_wrong_for_the_model_fail_before_any_item(folder, tmp_path):
    for config, match in ((BatchConfig(workers=0, layers=("downs.9",)), "downs.9"),
                          (BatchConfig(workers=0, targets="predicted:skyy"), "unknown class name 'skyy'")):
        with pytest.raises(segcam.SegcamError, match=match):
            run_batch(folder, tmp_path / "out", config=config)
        assert done_keys(tmp_path / "out") == set()
    run_batch(folder, tmp_path / "out", config=BatchConfig(workers=0))  # the folder is not spoiled
    assert done_keys(tmp_path / "out")


def test_every_registered_method_runs_in_a_batch(folder, tmp_path):
    from segcam.methods import METHODS

    options = {"rise": {"n_masks": 8}, "score-cam": {"batch_size": 8}}
    config = BatchConfig(workers=0, targets="predicted:1", methods=tuple(METHODS),
                         options={m: o for m, o in options.items() if m in METHODS})
    summary = run_batch(folder, tmp_path / "out", config=config)
    methods = {r["key"].split("/")[2] for r in table(tmp_path / "out") if r["key"].count("/") == 3}
    assert summary.failed == 1 and methods == set(METHODS) and "000000/error" in done_keys(tmp_path / "out")
    assert "grad-cam++" in methods


def test_an_item_without_targets_gets_one_row_and_is_done(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    np.save(images / "blank.npy", np.zeros((3, 64, 64), np.float32))  # predicts no class 5 object
    shutil.copy(SAMPLES / "scene-1.png", images / "scene-1.png")
    config = BatchConfig(workers=0, targets="predicted:5")
    first = run_batch(images, tmp_path / "out", config=config)
    rows = {r["key"]: r for r in table(tmp_path / "out")}
    assert first.empty >= 1 and "000000/none" in rows and rows["000000/none"]["error"] is None
    again = run_batch(images, tmp_path / "out", config=config)
    assert again.written == 0 and again.empty == first.empty and "items without targets" in again.lines()[0]


def test_truth_labels_the_model_lacks_are_not_targets(tmp_path):
    from segcam.data import sample_scenes

    labels = sample_scenes()[0].labels.clone()
    labels[:4] = 255  # an "ignore" band, as VOC and Cityscapes masks have
    np.save(tmp_path / "truth.npy", labels.numpy())
    (tmp_path / "m.csv").write_text(f"image,mask\n{SAMPLES / 'scene-1.png'},truth.npy\n")
    summary = run_batch(tmp_path / "m.csv", tmp_path / "out", config=BatchConfig(workers=0, targets="truth"))
    keys = {r["key"].split("/")[1] for r in table(tmp_path / "out")}
    assert summary.failed == 0 and "t255" not in keys and keys == {f"t{c}" for c in labels.unique().tolist()
                                                                    if 0 < c < 255}


def test_a_model_that_resizes_gets_nifti_maps_and_truth_on_the_inputs_grid(tmp_path):
    import dataclasses

    import nibabel as nib

    from segcam.models import Preprocess, UNet, save_weights

    arch = {"num_classes": 3, "in_channels": 1, "width": 4, "depth": 2, "dims": 3}
    torch.manual_seed(0)
    save_weights(UNet(**arch).eval(), tmp_path / "u3.safetensors", {"arch": arch})
    loaded = segcam.load_model(str(tmp_path / "u3.safetensors"))
    loaded = dataclasses.replace(loaded, preprocess=Preprocess(size=(8, 8, 8)))  # the model sees 8³
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    save_nifti(tmp_path / "ct.nii.gz", np.random.default_rng(0).random((8, 16, 16)).astype(np.float32), affine)
    truth = np.zeros((8, 16, 16), np.int64)
    truth[2:6, 4:12, 4:12] = 2
    save_nifti(tmp_path / "gt.nii.gz", truth, affine)
    (tmp_path / "m.csv").write_text("image,mask\nct.nii.gz,gt.nii.gz\n")
    summary = run_batch(tmp_path / "m.csv", tmp_path / "out", model=loaded,
                        config=BatchConfig(workers=0, targets="truth"))
    assert summary.failed == 0 and summary.written == 1
    (written,) = (tmp_path / "out" / "nifti").glob("*.nii.gz")
    assert nib.load(written).shape == (16, 16, 8) and np.allclose(nib.load(written).affine, affine)


def test_every_file_kind_is_read(tmp_path):
    from PIL import Image

    from segcam.models import UNet, save_weights

    images = tmp_path / "images"
    images.mkdir()
    picture = Image.open(SAMPLES / "scene-1.png").convert("RGB")
    picture.save(images / "a.png")
    picture.save(images / "b.jpg", quality=95)
    picture.save(images / "c.tif")
    np.save(images / "d.npy", np.asarray(picture, np.float32).transpose(2, 0, 1) / 255)
    shutil.copy(SAMPLES / "scene-2.npz", images / "e.npz")
    summary = run_batch(images, tmp_path / "out", config=BatchConfig(workers=0))
    rows = table(tmp_path / "out")
    assert summary.failed == 0 and {r["image"].rsplit(".", 1)[1] for r in rows} == {"png", "jpg", "tif", "npy", "npz"}
    arch = {"num_classes": 3, "in_channels": 1, "width": 4, "depth": 2, "dims": 3}
    torch.manual_seed(0)
    save_weights(UNet(**arch).eval(), tmp_path / "u3.safetensors", {"arch": arch})
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    np.save(volumes / "v.npy", np.random.default_rng(0).random((1, 8, 16, 16)).astype(np.float32))
    save_nifti(volumes / "w.nii.gz", np.random.default_rng(1).random((8, 16, 16)).astype(np.float32), np.eye(4))
    summary = run_batch(volumes, tmp_path / "vol", model=str(tmp_path / "u3.safetensors"),
                        config=BatchConfig(workers=0, targets="predicted:0,1,2"))
    store = MapStore(tmp_path / "vol")
    assert summary.failed == 0 and summary.written > 0 and all(store.get(k)[0].shape == (8, 16, 16) for k in store)
    assert {r["image"].rsplit("/", 1)[1] for r in table(tmp_path / "vol")} == {"v.npy", "w.nii.gz"}


def test_other_weights_under_the_same_path_are_another_run(tmp_path):
    from segcam.models import UNet, save_weights

    arch = {"num_classes": 6, "in_channels": 3, "width": 4, "depth": 2, "dims": 2}
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_weights(UNet(**arch).eval(), tmp_path / "net.safetensors", {"arch": arch})
        if seed == 0:
            run_batch(str(SAMPLES / "scene-1.png").replace("scene-1", "scene-[1]"), tmp_path / "out",
                      model=str(tmp_path / "net.safetensors"), config=BatchConfig(workers=0, targets="predicted:0"))
    with pytest.raises(segcam.SegcamError, match="other settings .model_files"):
        run_batch(str(SAMPLES / "scene-1.png").replace("scene-1", "scene-[1]"), tmp_path / "out",
                  model=str(tmp_path / "net.safetensors"), config=BatchConfig(workers=0, targets="predicted:0"))


def test_a_bad_file_is_reported_in_the_log_too(folder, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="segcam.batch"):
        run_batch(folder, tmp_path / "out", config=BatchConfig(workers=0))
    log = (tmp_path / "out" / "batch.log").read_text().splitlines()
    assert "run started: 3 items" in log[0] and "1 items failed" in log[-1]
    failed = [line for line in log if "failed:" in line]
    assert len(failed) == 1 and "item 0 (" in failed[0] and "scene-0-broken.png" in failed[0]
    assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [failed[0].split(" ", 1)[1]]
