"""Items explained together (one forward pass per group, one backward pass per target slot)
equal each item explained alone, for every target kind, and an item that fails fails alone."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from segcam.apps.batch.runner import BatchConfig, run_batch
from segcam.apps.batch.store import MapStore
from segcam.data import SAMPLES, sample_scenes


def table(out):
    return pq.read_table(out / "explanations.parquet").to_pylist()


@pytest.mark.parametrize("kind", ["predicted", "instances:1,2,3", "truth", "manifest"])
def test_items_explained_together_equal_each_item_alone(tmp_path, kind):
    lines = [["image", "mask", "targets"]]
    for i, scene in enumerate(sample_scenes()[:3]):
        np.save(tmp_path / f"labels{i}.npy", scene.labels.numpy())
        targets = [{"cls": 1, "region": {"kind": "box", "start": [0, 8 * i], "stop": [32, 40]}},
                   {"cls": 2, "reduce": "mean"}, {"cls": 1, "region": {"kind": "pixels", "points": [[10 + i, 20]]}}]
        lines.append([str(SAMPLES / f"scene-{i + 1}.png"), f"labels{i}.npy", json.dumps(targets[: i + 1])])
    with (tmp_path / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows(lines)
    outs = {}
    for size in (1, 3):
        outs[size] = tmp_path / f"by{size}"
        run_batch(tmp_path / "m.csv", outs[size], config=BatchConfig(
            workers=0, targets=kind, batch_size=size, dtype="float32", layer_maps=True,
            methods=("seg-grad-cam", "seg-xres-cam"), layers=("downs.1", "downs.2"), metrics=("evidence",)))
    alone, together = ({r["key"]: r for r in table(outs[n])} for n in (1, 3))
    assert sorted(alone) == sorted(together) and len({k.split("/")[0] for k in alone}) == 3
    for key, row in alone.items():
        assert not row["error"], row["error"]
        for column, value in row.items():
            if isinstance(value, float) and not column.endswith("seconds"):
                assert together[key][column] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, column)
            elif not column.endswith("seconds"):
                assert together[key][column] == value, (key, column)
    one, three = MapStore(outs[1], dtype="float32"), MapStore(outs[3], dtype="float32")
    for key in alone:  # maps in [0, 1]; a batch of three changes the convolutions' float rounding only
        assert torch.allclose(one.get(key)[0], three.get(key)[0], rtol=0, atol=1e-5), key
        assert torch.allclose(one.layer_map(key), three.layer_map(key), rtol=0, atol=1e-5), key


def test_an_item_that_fails_in_its_group_fails_alone(tmp_path):
    good = [{"cls": 1, "region": {"kind": "box", "start": [0, 0], "stop": [32, 32]}}]
    bad = [{"cls": 1, "region": {"kind": "box", "start": [100, 100], "stop": [120, 120]}}]  # outside 64²
    with (tmp_path / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["image", "targets"]] + [[str(SAMPLES / f"scene-{i + 1}.png"),
                                                           json.dumps(bad if i == 1 else good)] for i in range(3)])
    outs = {n: tmp_path / f"by{n}" for n in (1, 3)}
    for n, out in outs.items():
        summary = run_batch(tmp_path / "m.csv", out, config=BatchConfig(workers=0, targets="manifest", batch_size=n,
                                                                        dtype="float32"))
        assert summary.failed == 1 and summary.written == 2
    rows = {n: {r["key"]: r for r in table(out)} for n, out in outs.items()}
    assert sorted(rows[3]) == sorted(rows[1]) == ["000000/m0/seg-grad-cam/downs.2", "000001/error",
                                                  "000002/m0/seg-grad-cam/downs.2"]
    error = rows[3]["000001/error"]["error"]
    assert "box" in error and error == rows[1]["000001/error"]["error"]
    one, three = MapStore(outs[1], dtype="float32"), MapStore(outs[3], dtype="float32")
    assert len(one) == 2 and all(torch.equal(one.get(k)[0], three.get(k)[0]) for k in one)  # the others: alone too


def test_methods_on_modified_inputs_explain_each_item_alone(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"scene-{i}.png").write_bytes((SAMPLES / f"scene-{i + 1}.png").read_bytes())
    outs = {n: tmp_path / f"by{n}" for n in (1, 3)}
    for n, out in outs.items():
        run_batch(folder, out, config=BatchConfig(workers=0, batch_size=n, dtype="float32", targets="predicted:1",
                                                  methods=("seg-grad-cam", "rise", "saliency"),
                                                  options={"rise": {"n_masks": 16}}))
    keys = sorted(r["key"] for r in table(outs[3]))
    assert keys == sorted(r["key"] for r in table(outs[1])) and not any(r["error"] for r in table(outs[3]))
    keys = [k for k in keys if not k.endswith("/none")]  # an item without class 1 predicted: one row saying so
    assert {k.split("/", 2)[2] for k in keys} == {"seg-grad-cam/downs.2", "rise/input", "saliency/input"}
    one, three = MapStore(outs[1], dtype="float32"), MapStore(outs[3], dtype="float32")
    for key in keys:
        same = torch.equal if "/input" in key else lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-5)
        assert same(one.get(key)[0], three.get(key)[0]), key  # input methods: the very same computation


def test_a_binary_head_explained_together_equals_alone(tmp_path):
    from segcam.models import UNet, save_weights

    arch = {"num_classes": 1, "in_channels": 3, "width": 4, "depth": 2, "dims": 2}  # one sigmoid logit
    torch.manual_seed(3)
    save_weights(UNet(**arch).eval(), tmp_path / "binary.safetensors", {"arch": arch})
    targets = [{"cls": 1, "region": {"kind": "box", "start": [8, 8], "stop": [40, 48]}}, {"cls": 0}]
    with (tmp_path / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["image", "targets"]] + [[str(SAMPLES / f"scene-{i + 1}.png"),
                                                           json.dumps(targets[i % 2:])] for i in range(3)])
    outs = {n: tmp_path / f"by{n}" for n in (1, 3)}
    for n, out in outs.items():
        run_batch(tmp_path / "m.csv", out, model=str(tmp_path / "binary.safetensors"),
                  config=BatchConfig(workers=0, batch_size=n, dtype="float32", targets="manifest"))
    alone, together = ({r["key"]: r for r in table(outs[n])} for n in (1, 3))
    assert sorted(alone) == sorted(together) and {(r["target"], r["class"]) for r in alone.values()} == {
        ("m0", 1), ("m1", 0), ("m0", 0)}  # class 1 = the logit z, class 0 = -z
    one, three = MapStore(outs[1], dtype="float32"), MapStore(outs[3], dtype="float32")
    for key, row in alone.items():
        assert together[key]["score"] == pytest.approx(row["score"], rel=1e-5, abs=1e-6)
        assert torch.allclose(one.get(key)[0], three.get(key)[0], rtol=0, atol=1e-5), key
