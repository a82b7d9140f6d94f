"""What a batch run explains: a folder, a glob or a CSV manifest → items, in a fixed order.

``iter_items(spec)`` reads ``spec`` lazily (a manifest of a million rows is never held at once):

* a **folder**: its image and volume files (PNG, JPEG, TIFF, BMP, ``.npy``, NIfTI), sorted by
  name — add ``**`` as a glob to go into sub-folders;
* a **glob** (``data/*.png``, ``scans/**/*.nii.gz``): the matching files of those kinds, sorted;
* a **CSV manifest** (``.csv``): one row per item with an ``image`` column and, optionally,
  ``mask`` (a ground-truth label map) and ``targets`` (a JSON list of targets as
  :meth:`segcam.Target.to_dict` writes them, e.g. ``[{"cls": 2, "region": {"kind": "box",
  "start": [0, 0], "stop": [8, 8]}}]``); relative paths are read from the manifest's folder.

Every item gets its position in that order as ``index``, so a run is deterministic and can be
resumed by index.  Files are not opened here: a missing or broken file is the batch's to report
for its item, and the run goes on.  Problems with the spec itself (nothing matches, a manifest
without an ``image`` column, a ``targets`` cell that is not a JSON list) raise a
:class:`~segcam.errors.SegcamError` naming the fix.
"""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SegcamError

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy", ".nii", ".nii.gz",
            ".npz")  # .npz: a scene of segcam.data.save_scene, with its labels and its known evidence
COLUMNS = ("image", "mask", "targets")


@dataclass(frozen=True)
class Item:
    """One thing to explain: ``image`` (a path), an optional ground-truth ``mask`` path and
    optional explicit ``targets`` (JSON-ready dicts, see :meth:`segcam.Target.from_dict`)."""

    index: int
    image: Path
    mask: Path | None = None
    targets: tuple[dict[str, Any], ...] | None = field(default=None, compare=True)

    @property
    def name(self) -> str:
        return self.image.name


def readable(path: Path) -> bool:
    """Whether ``path``'s name is of a kind segcam reads (case-insensitive)."""
    return path.name.lower().endswith(SUFFIXES)


def iter_items(spec: str | Path) -> Iterator[Item]:
    """The items of a folder, glob or CSV manifest, in order (see the module docstring)."""
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise SegcamError(f"the input must be a folder, a glob or a .csv manifest, got {spec!r}.")
    text = str(spec)
    path = Path(text).expanduser()
    if any(c in text for c in "*?["):
        return _files(sorted(Path(p) for p in glob.glob(str(path), recursive=True)), text)
    if path.is_dir():
        return _files(sorted(path.iterdir()), text)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise SegcamError(f"the manifest {text!r} does not exist; check the path.")
        return _manifest(path)
    raise SegcamError(f"the input {text!r} is not a folder, a glob (with * or ?) or a .csv manifest; "
                      "give one of those.")


def count_items(spec: str | Path) -> int:
    """How many items ``spec`` holds (reads it once more, lazily)."""
    return sum(1 for _ in iter_items(spec))


def _files(paths: list[Path], text: str) -> Iterator[Item]:
    found = [p for p in paths if p.is_file() and readable(p)]
    if not found:
        raise SegcamError(f"no image or volume files in {text!r}; segcam reads {', '.join(SUFFIXES)}.")
    return (Item(i, p) for i, p in enumerate(found))


def _manifest(path: Path) -> Iterator[Item]:
    handle = path.open(newline="", encoding="utf-8")
    reader = csv.DictReader(handle)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "image" not in columns:
        handle.close()
        raise SegcamError(f"the manifest {path.name} has no 'image' column (columns: {columns}); its first line "
                          f"must name the columns, e.g. 'image,mask,targets'.")
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        handle.close()
        raise SegcamError(f"the manifest {path.name} has unknown columns {unknown}; use {', '.join(COLUMNS)}.")
    return _rows(handle, reader, path)


def _rows(handle: Any, reader: csv.DictReader, path: Path) -> Iterator[Item]:
    with handle:
        for i, raw in enumerate(reader):
            line = reader.line_num
            if None in raw:
                raise SegcamError(f"{path.name}, line {line}: more cells than columns; quote a cell that holds "
                                  'commas (a targets list: "[{""cls"": 2}]").')
            row = {k.strip(): (v or "").strip() for k, v in raw.items()}
            if not row.get("image"):
                raise SegcamError(f"{path.name}, line {line}: the 'image' cell is empty; give a path to each row.")
            mask = _resolve(row["mask"], path) if row.get("mask") else None
            yield Item(i, _resolve(row["image"], path), mask, _targets(row.get("targets", ""), path, line))


def _resolve(cell: str, manifest: Path) -> Path:
    p = Path(cell).expanduser()
    return p if p.is_absolute() else manifest.parent / p


def _targets(cell: str, manifest: Path, line: int) -> tuple[dict[str, Any], ...] | None:
    if not cell:
        return None
    try:
        value = json.loads(cell)
    except ValueError as e:
        raise SegcamError(f"{manifest.name}, line {line}: the 'targets' cell is not JSON ({e.msg}); write a list "
                          'such as [{"cls": 2}] (quote the cell in the CSV).') from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(t, dict) for t in value):
        raise SegcamError(f"{manifest.name}, line {line}: 'targets' must be a non-empty JSON list of objects "
                          '(each like {"cls": 2, "region": {...}}), got ' f"{cell[:60]!r}.")
    return tuple(value)
