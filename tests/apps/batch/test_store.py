"""The batch map store: maps and metadata round trip, whole explanations only, NIfTI maps on the input's grid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import nibabel
import numpy as np
import pytest
import torch
import zarr

from segcam.apps.batch import store as store_module
from segcam.apps.batch.store import GROWTH, KEY_CHUNK, MAPS, Entry, MapStore, save_nifti_map
from segcam.data import load_image, load_nifti_affine, save_nifti
from segcam.errors import SegcamError

KEY = "000012/c3-i0/seg-xres-cam/downs.2"
ATTRS = {"image": "scans/ct-1.nii.gz", "index": 12, "target": {"cls": 3, "region": {"kind": "instance", "at": [1, 2]}},
         "class": 3, "class_name": "car", "method": "seg-xres-cam", "options": {"pool": "max", "window": 2},
         "layer": "downs.2", "score": -1.25, "shape": [17, 23], "empty": False, "note": None}


@pytest.mark.parametrize("shape", [(17, 23), (3, 5, 7)])
def test_float16_maps_come_back_as_their_float16_rounding(tmp_path, shape):
    values = torch.randn(shape) * 100
    store = MapStore(tmp_path)
    store.put(KEY, values)
    got, _ = store.get(KEY)
    assert got.dtype == torch.float32 and torch.equal(got, values.half().float())
    torch.testing.assert_close(got, values, rtol=2**-11, atol=2**-24)
    assert zarr.open_group(tmp_path / MAPS)[f"map-{'x'.join(map(str, shape))}/map"].dtype == np.float16


def test_maps_of_one_shape_stack_one_chunk_per_explanation_with_named_axes(tmp_path):
    values = [torch.randn(4, 6, 8, dtype=torch.float64) for _ in range(3)]
    store = MapStore(tmp_path, dtype="float32")
    store.put_many([Entry(f"00000{i}/c1/m/l", v, attrs={"i": i}) for i, v in enumerate(values)])
    store.close()
    reopened = MapStore(tmp_path)  # what is on disk, in any store's dtype
    assert all(torch.equal(reopened.get(f"00000{i}/c1/m/l")[0], v.float()) for i, v in enumerate(values))
    group = zarr.open_group(tmp_path / MAPS)["map-4x6x8"]
    array = group["map"]
    assert array.dtype == np.float32 and array.shape == (3, 4, 6, 8) and array.chunks == (1, 4, 6, 8)
    assert array.metadata.dimension_names == ("explanation", "z", "y", "x")
    assert list(group["key"][...]) == [f"00000{i}/c1/m/l" for i in range(3)]
    assert [json.loads(a) for a in group["attrs"][...]] == [{"i": i} for i in range(3)]
    np.testing.assert_array_equal(array[1], values[1].float().numpy())


def test_maps_of_other_shapes_get_their_own_stacks(tmp_path):
    store = MapStore(tmp_path)
    store.put_many([Entry("000000/c1/m/l", torch.rand(8, 8)), Entry("000001/c1/m/l", torch.rand(4, 5)),
                    Entry("000002/c1/m/l", torch.rand(8, 8))])
    store.close()
    assert sorted(name for name, _ in zarr.open_group(tmp_path / MAPS).groups()) == ["map-4x5", "map-8x8"]
    assert zarr.open_group(tmp_path / MAPS)["map-8x8/map"].shape == (2, 8, 8)


def test_attributes_round_trip_as_json_beside_the_map(tmp_path):
    MapStore(tmp_path).put(KEY, torch.rand(17, 23), attrs=ATTRS)
    _, attrs = MapStore(tmp_path).get(KEY)
    assert attrs == ATTRS
    assert json.loads(str(zarr.open_group(tmp_path / MAPS)["map-17x23/attrs"][0])) == ATTRS


def test_layer_maps_are_kept_only_when_asked_for(tmp_path):
    layer = torch.rand(4, 6)
    kept = MapStore(tmp_path / "kept", layer_maps=True)
    kept.put(KEY, torch.rand(16, 24), layer_map=layer)
    kept.put("000012/c3-i0/rise/input", torch.rand(16, 24))  # a method without a layer
    assert torch.equal(kept.layer_map(KEY), layer.half().float())
    assert kept.layer_map("000012/c3-i0/rise/input") is None
    names = zarr.open_group(kept.path)["layer-4x6/layer_map"].metadata.dimension_names
    assert names == ("explanation", "layer_y", "layer_x")
    dropped = MapStore(tmp_path / "dropped")
    dropped.put(KEY, torch.rand(16, 24), layer_map=layer)
    assert dropped.layer_map(KEY) is None and "layer-4x6" not in zarr.open_group(dropped.path)


def test_keys_lists_the_whole_explanations_sorted(tmp_path):
    store = MapStore(tmp_path)
    for key in ("000002/c1/m/l", "000000/c1/m/l", "000000/c0/m/l"):
        store.put(key, torch.rand(4, 4))
    assert store.keys() == list(store) == ["000000/c0/m/l", "000000/c1/m/l", "000002/c1/m/l"] and len(store) == 3
    assert store.has("000002/c1/m/l") and not store.has("000001/c1/m/l") and not store.has("000002/c1")
    assert "000002/c1/m/l" in store and "000001/c1/m/l" not in store and 3 not in store


def test_an_open_store_grows_in_steps_and_close_trims_it(tmp_path):
    store = MapStore(tmp_path)
    for i in range(3):
        store.put(f"00000{i}/c0/m/l", torch.full((4, 4), float(i)))
    array = zarr.open_group(tmp_path / MAPS)["map-4x4/map"]
    assert array.shape[0] == GROWTH and np.isnan(array[GROWTH - 1]).all()  # unused slots: NaN, key ""
    assert MapStore(tmp_path).keys() == [f"00000{i}/c0/m/l" for i in range(3)]  # reopened before closing
    store.close()
    assert zarr.open_group(tmp_path / MAPS)["map-4x4/map"].shape == (3, 4, 4)


def _dying_at_the_first_key(monkeypatch):
    """Make put_many die when it starts writing keys: after every map's data."""
    write_runs = store_module._write_runs

    def write_until_a_key(array, items):
        if array.basename == "key":
            raise KeyboardInterrupt
        write_runs(array, items)

    monkeypatch.setattr(store_module, "_write_runs", write_until_a_key)


def test_a_half_written_explanation_never_looks_whole(tmp_path, monkeypatch):
    store = MapStore(tmp_path)
    with monkeypatch.context() as patch:
        _dying_at_the_first_key(patch)
        with pytest.raises(KeyboardInterrupt):
            store.put(KEY, torch.rand(8, 8), attrs=ATTRS)
    assert not np.isnan(zarr.open_group(tmp_path / MAPS)["map-8x8/map"][0]).any()  # the data is there …
    resumed = MapStore(tmp_path)
    assert not resumed.has(KEY) and resumed.keys() == []  # … but not the explanation
    with pytest.raises(SegcamError, match="no whole explanation"):
        resumed.get(KEY)
    resumed.put(KEY, torch.ones(8, 8), attrs=ATTRS)  # a resumed run writes it again, in the same slot
    assert resumed.has(KEY) and torch.equal(resumed.get(KEY)[0], torch.ones(8, 8))
    assert resumed._stacks["map-8x8"].slots[KEY] == 0


def test_a_map_replaced_by_one_of_another_shape_is_hidden_before_the_new_one_is_written(tmp_path, monkeypatch):
    store = MapStore(tmp_path)
    store.put(KEY, torch.zeros(8, 8))
    store.put(KEY, torch.ones(8, 8))  # same shape: the same slot, rewritten whole
    assert torch.equal(store.get(KEY)[0], torch.ones(8, 8)) and store._stacks["map-8x8"].size == 1
    with monkeypatch.context() as patch:
        _dying_at_the_first_key(patch)
        with pytest.raises(KeyboardInterrupt):
            store.put(KEY, torch.ones(4, 4))
    assert not MapStore(tmp_path).has(KEY)
    store = MapStore(tmp_path)
    store.put(KEY, torch.ones(4, 4))
    assert store.keys() == [KEY] and store.get(KEY)[0].shape == (4, 4)


def test_a_store_killed_mid_run_holds_whole_explanations_only(tmp_path):
    script = textwrap.dedent(f"""
        import torch
        from segcam.apps.batch.store import MapStore
        store = MapStore({str(tmp_path)!r})
        for i in range(10_000):
            store.put(f"{{i:06d}}/c0/m/l", torch.full((64, 64), float(i)), attrs={{"index": i}})
            print(i, flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if int(line) >= 20:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    store = MapStore(tmp_path)
    keys = store.keys()
    assert len(keys) >= 21 and keys == [f"{i:06d}/c0/m/l" for i in range(len(keys))]
    for i, key in enumerate(keys):
        values, attrs = store.get(key)
        assert attrs == {"index": i} and torch.equal(values, torch.full((64, 64), float(i)))
    store.put(f"{len(keys):06d}/c0/m/l", torch.zeros(64, 64))  # the item in flight, redone
    assert store.has(f"{len(keys):06d}/c0/m/l")


def test_put_many_refuses_a_key_twice_and_what_is_not_an_entry(tmp_path):
    store = MapStore(tmp_path)
    with pytest.raises(SegcamError, match="same key twice"):
        store.put_many([Entry(KEY, torch.rand(4, 4)), Entry(KEY, torch.rand(4, 4))])
    with pytest.raises(SegcamError, match="list of segcam.apps.batch.store.Entry"):
        store.put_many([(KEY, torch.rand(4, 4))])
    assert store.keys() == []


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dtype": "float64"}, "dtype must be 'float16'"),
    ({"dtype": ["float16"]}, "dtype must be 'float16'"),
    ({"layer_maps": 1}, "layer_maps must be True or False"),
])
def test_bad_settings_name_the_fix(tmp_path, kwargs, match):
    with pytest.raises(SegcamError, match=match):
        MapStore(tmp_path, **kwargs)


def test_a_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(SegcamError, match="is a file; give a folder"):
        MapStore(tmp_path / "out")
    with pytest.raises(SegcamError, match="path must be the output folder"):
        MapStore(None)


@pytest.mark.parametrize("key", ["", "a//b", "../x", ".hidden/x", "a/__x", "a b", "a/b\n", 3, None])
def test_bad_keys_name_the_fix(tmp_path, key):
    with pytest.raises(SegcamError, match="key must be names of letters, digits"):
        MapStore(tmp_path).put(key, torch.rand(4, 4))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"map": np.zeros((4, 4), np.float32)}, "map must be a floating-point torch.Tensor"),
    ({"map": torch.zeros(4, 4, dtype=torch.int64)}, "convert it with"),
    ({"map": torch.zeros(1, 2, 4, 4)}, r"got shape \(1, 2, 4, 4\); for a batch store each map, map\[b\]"),
    ({"map": torch.zeros(0, 4)}, "one explanation's map"),
    ({"map": torch.full((4, 4), float("nan"))}, "NaN or inf"),
    ({"map": torch.full((4, 4), 7e4)}, "beyond float16's ±65504; open the store with dtype='float32'"),
    ({"layer_map": torch.zeros(2, 2, 2)}, "layer_map has 3 axes and map 2"),
    ({"attrs": {"score": torch.tensor(1.0)}}, r"JSON-ready .*\.item\(\)"),
    ({"attrs": {"score": float("nan")}}, "NaN with None"),
    ({"attrs": [("a", 1)]}, "attrs must be a dict"),
])
def test_bad_puts_name_the_fix_and_write_nothing(tmp_path, kwargs, match):
    store = MapStore(tmp_path, layer_maps=True)
    with pytest.raises(SegcamError, match=match):
        store.put(KEY, **{"map": torch.zeros(4, 4), **kwargs})
    assert store.keys() == [] and not list(zarr.open_group(tmp_path / MAPS).groups())


def test_a_float32_store_takes_large_values(tmp_path):
    store = MapStore(tmp_path, dtype="float32")
    store.put(KEY, torch.full((4, 4), 7e4))
    assert torch.equal(store.get(KEY)[0], torch.full((4, 4), 7e4))


def test_a_nifti_map_lies_on_the_inputs_grid(tmp_path):
    affine = np.array([[0, 0, 2.5, -30], [0, 0.8, 0, 12], [-0.8, 0, 0, 40], [0, 0, 0, 1]])
    save_nifti(tmp_path / "ct.nii.gz", np.zeros((5, 6, 7), np.float32), affine)
    heatmap = torch.rand(5, 6, 7)
    save_nifti_map(tmp_path / "map.nii.gz", heatmap, load_nifti_affine(tmp_path / "ct.nii.gz"))
    written = nibabel.load(tmp_path / "map.nii.gz")
    np.testing.assert_array_equal(written.affine, nibabel.load(tmp_path / "ct.nii.gz").affine)
    np.testing.assert_allclose(written.affine, affine, rtol=1e-7)  # NIfTI-1 keeps the sform as float32
    assert written.shape == (7, 6, 5) and written.get_data_dtype() == np.float32
    assert torch.equal(load_image(tmp_path / "map.nii.gz")[0], heatmap)


@pytest.mark.parametrize(("heatmap", "match"), [
    (torch.rand(1, 5, 6, 7), r"for a batch save each map, map\[b\]"),
    (np.zeros((5, 6, 7)), "floating-point map"),
])
def test_a_nifti_map_must_be_one_map(tmp_path, heatmap, match):
    with pytest.raises(SegcamError, match=match):
        save_nifti_map(tmp_path / "map.nii.gz", heatmap, np.eye(4))


def test_a_kill_between_the_resizes_of_a_growing_stack_loses_nothing(tmp_path):
    store = MapStore(tmp_path)
    store.put("000000/c0/m/l", torch.zeros(8, 8))
    zarr.open_group(tmp_path / MAPS)["map-8x8/map"].resize((2 * GROWTH, 8, 8))  # killed after the first resize
    resumed = MapStore(tmp_path)
    lengths = {name: a.shape[0] for name, a in zarr.open_group(tmp_path / MAPS)["map-8x8"].arrays()}
    assert lengths == {"map": 2 * GROWTH, "key": 2 * GROWTH, "attrs": 2 * GROWTH}  # made equal on opening
    resumed.put_many([Entry(f"{i:06d}/c0/m/l", torch.full((8, 8), float(i))) for i in range(1, 3 * GROWTH)])
    again = MapStore(tmp_path)
    assert len(again) == 3 * GROWTH and torch.equal(again.get(f"{3 * GROWTH - 1:06d}/c0/m/l")[0],
                                                    torch.full((8, 8), float(3 * GROWTH - 1)))


def test_a_kill_while_a_stack_is_made_leaves_a_store_that_opens(tmp_path):
    MapStore(tmp_path).put("000000/c0/m/l", torch.zeros(4, 4))
    group = zarr.open_group(tmp_path / MAPS).create_group("map-8x8")
    group.create_array("key", shape=(0,), chunks=(KEY_CHUNK,), dtype=zarr.dtype.VariableLengthUTF8(), fill_value="")
    store = MapStore(tmp_path)  # killed before 'attrs' and 'map': completed, holding no explanation
    assert store.keys() == ["000000/c0/m/l"]
    store.put("000001/c0/m/l", torch.ones(8, 8), attrs={"i": 1})
    heatmap, attrs = MapStore(tmp_path).get("000001/c0/m/l")
    assert torch.equal(heatmap, torch.ones(8, 8)) and attrs == {"i": 1}


def test_method_names_with_a_plus_make_keys(tmp_path):
    store = MapStore(tmp_path)
    store.put("000000/c1/grad-cam++/downs.2", torch.rand(4, 4))
    assert store.has("000000/c1/grad-cam++/downs.2")
