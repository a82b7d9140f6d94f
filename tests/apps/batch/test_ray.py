"""The Ray engine on a local Ray instance of 2 CPUs: the same table and maps as the local engine
(a corrupt file included), a resumed run that skips what either engine did, the command line,
and a model that cannot be loaded or bad options as a SegcamError."""

from __future__ import annotations

import logging
import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import torch
import zarr

import segcam
from segcam import SegcamError
from segcam.apps.batch.ray_engine import RayConfig, run_batch_ray
from segcam.apps.batch.runner import BatchConfig, run_batch
from segcam.apps.batch.store import MapStore
from segcam.data import SAMPLES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own, inside Ray
CONFIG = BatchConfig(methods=("seg-grad-cam", "seg-xres-cam"), dtype="float32", layer_maps=True, workers=0,
                     metrics=("masking",), overlays=True, batch_size=2)  # two groups of two: both actors work


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (run_batch_ray uses it and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def images(folder, names):
    folder.mkdir()
    for name in names:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    found = images(tmp_path_factory.mktemp("in") / "images", ["scene-1.png", "scene-2.png", "scene-3.png"])
    (found / "scene-0-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return found


@pytest.fixture(scope="module")
def local_out(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_batch(folder, out, config=CONFIG)
    return out


def rows(out):
    """The table's rows by key, without the timings (the only columns that differ run to run)."""
    table = pq.read_table(out / "explanations.parquet").to_pylist()
    return {r["key"]: {k: v for k, v in r.items() if not k.endswith("seconds")} for r in table}


def same_value(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6, abs=1e-6)
    return a == b


def test_the_ray_engine_writes_what_the_local_engine_writes(local_ray, folder, local_out, tmp_path):
    out = tmp_path / "ray"
    seen = []
    summary = run_batch_ray(folder, out, config=CONFIG, ray=RayConfig(actors=2),
                            progress=lambda n, total, name: seen.append((n, total, name)))
    local, remote = rows(local_out), rows(out)
    assert sorted(remote) == sorted(local) and "000000/error" in remote and len(remote) > 8
    for key, row in local.items():
        assert set(remote[key]) == set(row), key
        assert all(same_value(remote[key][c], v) for c, v in row.items()), (key, row, remote[key])
    assert "broken" in remote["000000/error"]["error"] and summary.failed == 1
    assert summary.written == len(remote) - 1 and [n for n, _, _ in seen] == [1, 2, 3, 4] and seen[0][1] == 4
    ours, theirs = MapStore(out, dtype="float32"), MapStore(local_out, dtype="float32")
    keys = ours.keys()
    assert keys == theirs.keys() == sorted(k for k in local if k != "000000/error")
    for key in keys:
        (got, attrs), (want, want_attrs) = ours.get(key), theirs.get(key)
        assert got.dtype == torch.float32 and torch.allclose(got, want, rtol=0, atol=1e-6)
        assert attrs.keys() == want_attrs.keys() and all(same_value(attrs[k], v) for k, v in want_attrs.items())
        assert torch.allclose(ours.layer_map(key), theirs.layer_map(key), rtol=0, atol=1e-6)
    assert {a.dtype for _, a in zarr.open_group(ours.path).arrays()} == set()  # every array lies in a group …
    assert {g["map"].dtype for name, g in zarr.open_group(ours.path).groups() if name.startswith("map-")} == {
        np.dtype("float32")}  # … and the maps are float32 as asked
    overlays = sorted(p.relative_to(out) for p in (out / "overlays").rglob("*.png"))
    assert overlays == sorted(p.relative_to(local_out) for p in (local_out / "overlays").rglob("*.png"))
    assert len(overlays) == len(remote) - 1


def test_a_resumed_ray_run_skips_what_is_done(local_ray, folder, tmp_path, capsys):
    from segcam.apps.cli import main

    light = BatchConfig(workers=0, batch_size=2)  # float16 maps: sent from the actors as float16
    part = tmp_path / "part"
    shutil.copytree(folder, part, ignore=shutil.ignore_patterns("scene-3.png"))
    out, clean = tmp_path / "out", tmp_path / "clean"
    first = run_batch(part, out, config=light)  # items 0 (broken), 1 and 2 by the local engine
    shutil.copy(folder / "scene-3.png", part)  # item 3 is new
    resumed = run_batch_ray(part, out, config=light)
    assert resumed.skipped == first.written > 0 and resumed.written > 0 and resumed.failed == 1
    run_batch(part, clean, config=light)
    got, want = rows(out), rows(clean)
    assert sorted(got) == sorted(want) and all(same_value(got[k]["score"], want[k]["score"]) for k in want)
    resumed_maps, clean_maps = MapStore(out), MapStore(clean)
    stored = clean_maps.keys()
    assert resumed_maps.keys() == stored and len(stored) == len(want) - 1
    for key in stored:  # float16 both ways: the same rounding of the same values …
        got_map, want_map = resumed_maps.get(key)[0], clean_maps.get(key)[0]
        if key.startswith("000003/"):  # … for the item Ray explained, in the group [2, 3] as the clean run did
            assert torch.equal(got_map, want_map), key
        else:  # item 2 was explained alone before item 3 came: its batch differs, so may its rounding
            assert torch.allclose(got_map, want_map, rtol=2**-10, atol=2**-14), key
    groups = dict(zarr.open_group(resumed_maps.path).groups())
    assert {g["map"].dtype for n, g in groups.items() if n.startswith("map-")} == {np.dtype("float16")}
    assert main(["batch", str(part), "--out", str(out), "--engine", "ray", "--workers", "0"]) == 0
    assert f"0 explanations written, {len(want) - 1} already done, 1 items failed" in capsys.readouterr().out


def test_a_model_the_actors_cannot_load_is_a_segcam_error(local_ray, folder, tmp_path):
    with pytest.raises(SegcamError, match="a Ray actor could not load the model: unknown model spec 'no-such-net'"):
        run_batch_ray(folder, tmp_path / "out", model="no-such-net", config=CONFIG)


def test_an_actor_larger_than_the_local_instance_is_refused(local_ray):
    from segcam.apps.batch.ray_engine import _check_room

    _check_room(ray, RayConfig(cpus_per_actor=2))
    with pytest.raises(SegcamError, match="asks for 1 GPUs but this machine's Ray instance has 0; lower --gpus-per"):
        _check_room(ray, RayConfig(gpus_per_actor=1))
    with pytest.raises(SegcamError, match="asks for 3 CPUs .* has 2; lower --cpus-per-actor"):
        _check_room(ray, RayConfig(cpus_per_actor=3))


def test_bad_options_name_the_fix(tmp_path, folder):
    with pytest.raises(SegcamError, match="actors must be a positive integer"):
        RayConfig(actors=0)
    with pytest.raises(SegcamError, match="gpus_per_actor must be a number ≥ 0"):
        RayConfig(gpus_per_actor=-1)
    with pytest.raises(SegcamError, match="needs a CPU or a GPU"):
        RayConfig(cpus_per_actor=0)
    with pytest.raises(SegcamError, match="drop one of num_cpus and address"):
        RayConfig(num_cpus=2, address="auto")
    with pytest.raises(SegcamError, match="needs the model's spec"):
        run_batch_ray(folder, tmp_path / "out", model=segcam.load_model("default"))
    with pytest.raises(SegcamError, match="unknown target kind"):
        run_batch_ray(folder, tmp_path / "out", config=BatchConfig(targets="everything"))


def test_items_travel_to_the_actors_whole(tmp_path):
    from segcam.apps.batch.ray_engine import _item, _item_row
    from segcam.data import iter_items

    (tmp_path / "list.csv").write_text('image,mask,targets\na.png,a-mask.png,"[{""cls"": 2}]"\nb.png,,\n')
    items = list(iter_items(tmp_path / "list.csv"))
    assert items[0].mask is not None and items[0].targets and items[1].mask is None and items[1].targets is None
    assert [_item(_item_row(item)) for item in items] == items
