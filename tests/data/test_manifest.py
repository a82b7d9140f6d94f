"""Batch inputs: folders, globs and CSV manifests become items in a fixed order; a bad spec says
how to fix it, while missing files are left for the batch to report item by item."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from segcam.data.manifest import Item, count_items, iter_items, readable
from segcam.errors import SegcamError


@pytest.fixture()
def folder(tmp_path):
    for name in ("b.png", "a.npy", "C.NII.GZ", "notes.txt", "d.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.tif").write_bytes(b"x")
    return tmp_path


def test_a_folder_gives_its_readable_files_sorted_and_numbered(folder):
    items = list(iter_items(folder))
    assert [i.name for i in items] == ["C.NII.GZ", "a.npy", "b.png", "d.jpeg"]
    assert [i.index for i in items] == [0, 1, 2, 3] and all(i.mask is None and i.targets is None for i in items)
    assert count_items(folder) == 4


def test_a_glob_matches_files_and_may_go_into_sub_folders(folder):
    assert [i.name for i in iter_items(folder / "*.png")] == ["b.png"]
    assert [i.name for i in iter_items(str(folder / "**" / "*.tif"))] == ["e.tif"]


def test_a_manifest_reads_paths_relative_to_itself_with_masks_and_targets(tmp_path):
    targets = [{"cls": 2, "region": {"kind": "box", "start": [0, 0], "stop": [4, 4]}}]
    with (tmp_path / "m.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["image", "mask", "targets"], ["scans/one.png", "masks/one.png", json.dumps(targets)],
                          ["/abs/two.npy", "", ""], ["three.png", "", '{"cls": 1}']])
    items = list(iter_items(tmp_path / "m.csv"))
    assert items[0] == Item(0, tmp_path / "scans/one.png", tmp_path / "masks/one.png", tuple(targets))
    assert items[1] == Item(1, Path("/abs/two.npy"))
    assert items[2].targets == ({"cls": 1},)  # one object is a list of one


@pytest.mark.parametrize(("content", "match"), [
    ("path,mask\na.png,\n", "no 'image' column"),
    ("image,weights\na.png,1\n", "unknown columns"),
    ("image\n\n", None),  # an empty line is no row at all
    ("image,targets\na.png,[1\n", "line 2: the 'targets' cell is not JSON"),
    ("image,targets\na.png,[]\n", "non-empty JSON list of objects"),
    ('image,mask\n"",m.png\n', "'image' cell is empty"),
    ('image,targets\na.png,[{"cls": 1}, {"cls": 2}]\n', "line 2: more cells than columns; quote"),
])
def test_bad_manifests_name_the_line_and_the_fix(tmp_path, content, match):
    (tmp_path / "m.csv").write_text(content)
    if match is None:
        assert list(iter_items(tmp_path / "m.csv")) == []
        return
    with pytest.raises(SegcamError, match=match):
        list(iter_items(tmp_path / "m.csv"))


@pytest.mark.parametrize(("spec", "match"), [
    ("nothing/*.png", "no image or volume files"),
    ("missing.csv", "does not exist"),
    ("a_file.txt", "not a folder, a glob"),
    ("", "folder, a glob or a .csv"),
    (3, "folder, a glob or a .csv"),
])
def test_bad_inputs_say_what_is_accepted(tmp_path, monkeypatch, spec, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file.txt").write_text("x")
    with pytest.raises(SegcamError, match=match):
        list(iter_items(spec))


def test_a_large_manifest_is_read_lazily(tmp_path):
    with (tmp_path / "m.csv").open("w") as f:
        f.write("image\n")
        for i in range(100_000):
            f.write(f"img{i}.png\n")
    items = iter_items(tmp_path / "m.csv")
    first = next(items)
    assert first.index == 0 and first.image == tmp_path / "img0.png"
    assert count_items(tmp_path / "m.csv") == 100_000


def test_readable_kinds():
    assert readable(Path("x.Nii.Gz")) and readable(Path("y.TIFF")) and not readable(Path("z.gz"))
