"""Files read ahead of the model: in order, by worker processes, bounded, errors as values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcam.apps.batch import decode as decode_module
from segcam.apps.batch.decode import decoded, read
from segcam.data import SAMPLES, Item, load_image, save_nifti
from segcam.errors import SegcamError


@pytest.fixture()
def items(tmp_path):
    out = []
    for i in range(5):
        array = np.full((1, 8, 8), float(i), dtype=np.float32)
        np.save(tmp_path / f"{i}.npy", array)
        out.append(Item(i, tmp_path / f"{i}.npy"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out.insert(2, Item(99, tmp_path / "broken.png"))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_items_come_back_in_order_with_errors_as_values(items, workers):
    got = list(decoded(items, workers=workers, ahead=3))
    assert [d.item.index for d in got] == [0, 1, 99, 2, 3, 4]
    assert got[2].image is None and "broken.png" in got[2].error
    for d in got[:2] + got[3:]:
        assert d.error is None and torch.equal(d.image, torch.full((1, 8, 8), float(d.item.index)))


def test_a_mask_and_a_nifti_affine_are_read_with_the_image(tmp_path):
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    save_nifti(tmp_path / "ct.nii.gz", np.random.default_rng(0).random((4, 6, 6)).astype(np.float32), affine)
    labels = np.zeros((4, 6, 6), dtype=np.int64)
    labels[1, 2:4, 2:4] = 2
    save_nifti(tmp_path / "gt.nii.gz", labels, affine)
    d = read(Item(0, tmp_path / "ct.nii.gz", tmp_path / "gt.nii.gz"))
    assert d.error is None and d.image.shape == (1, 4, 6, 6) and int(d.truth.sum()) == 8
    np.testing.assert_allclose(d.affine, affine)


def test_a_mask_of_another_size_is_an_error_of_that_item(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((3, 3), dtype=np.int64))
    d = read(Item(0, SAMPLES / "scene-1.png", tmp_path / "m.npy"))
    assert d.image is None and "give a mask of the image's size" in d.error


def test_a_png_reads_as_load_image_does():
    d = read(Item(0, SAMPLES / "scene-2.png"))
    assert torch.equal(d.image, load_image(SAMPLES / "scene-2.png"))


def test_auto_reads_small_files_here_and_slow_ones_in_workers(items, monkeypatch):
    fast = decoded(items, ahead=3)
    got = list(fast)
    assert fast.workers == 0 and [d.item.index for d in got] == [0, 1, 99, 2, 3, 4]
    monkeypatch.setattr(decode_module, "AUTO_READ_S", -1.0)  # every read is "slow"
    with decoded(items, ahead=3) as slow:
        got = list(slow)
    assert slow.workers == 2 and [d.item.index for d in got] == [0, 1, 99, 2, 3, 4]
    assert all(torch.equal(d.image, torch.full((1, 8, 8), float(d.item.index))) for d in got if d.error is None)


@pytest.mark.parametrize(("kwargs", "match"), [({"workers": -1}, "workers"), ({"workers": 1.5}, "workers"),
                                               ({"ahead": 0}, "ahead")])
def test_bad_settings_name_the_fix(kwargs, match):
    with pytest.raises(SegcamError, match=match):
        list(decoded([], **kwargs))


def test_a_readers_own_failure_is_that_items_error(items, monkeypatch):
    def crash(path, **kwargs):
        raise ValueError("decoder bug")

    monkeypatch.setattr(decode_module, "load_image", crash)
    d = read(items[0])
    assert d.image is None and d.error == "cannot read 0.npy: ValueError: decoder bug"


def test_auto_decides_on_the_second_read_not_the_first(items, monkeypatch):
    times = iter([0.0, 1.0, 1.001, 1.002, 1.003, 1.004, 1.005, 1.006])  # the first read "took" 1 s, the next 1 ms
    monkeypatch.setattr(decode_module.time, "perf_counter", lambda: next(times))
    reader = decoded(items, ahead=3)
    got = [d.item.index for d in reader]
    assert reader.workers == 0 and got == [0, 1, 99, 2, 3, 4]
