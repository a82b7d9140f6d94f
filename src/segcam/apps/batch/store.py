"""The maps of a batch run in ``DIR/maps.zarr`` (Zarr v3), written so that a kill never leaves
half an explanation looking whole; and NIfTI copies of the maps of NIfTI inputs.

Maps of one shape are stacked: the group ``map-64x64`` (``map-8x64x64`` for volumes) holds

* ``map`` ``(N, *S)`` — float16 unless float32 is asked for, one chunk per explanation, NaN in
  unused slots;
* ``key`` ``(N,)`` — each explanation's key (``"000012/c3/seg-xres-cam/downs.2"``, the
  ``key`` column of the run's table), ``""`` for an unused slot;
* ``attrs`` ``(N,)`` — its metadata (image, target, method, layer, score …) as JSON text;

and, when the store keeps them, layer-resolution maps are stacked the same way in
``layer-16x16`` groups (``layer_map`` and ``key``).  A group opens in xarray as a Dataset
(``xr.open_zarr(DIR / "maps.zarr", group="map-64x64")``, dimensions ``explanation, y, x``);
with zarr, ``zarr.open_group(DIR / "maps.zarr")["map-64x64/map"][i]``.

Kill safety: zarr's local store writes each file under a temporary name and renames it, and
:meth:`MapStore.put_many` writes every map before any key, so a key in ``key`` always names a
whole map — :meth:`MapStore.has` and :meth:`~MapStore.keys` see whole explanations only.  Arrays
grow in steps and :meth:`MapStore.close` trims the unused slots; a killed run leaves them
(``key == ""``), and the next run fills them.  Writes are not fsynced: they survive a killed
process, not a power cut.  One process writes a store at a time (there is no locking).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...data import save_nifti
from ...errors import SegcamError

MAPS = "maps.zarr"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
FLOAT16_MAX = 65504.0
GROWTH = 64  # slots added at least when a stack grows (then it doubles)
KEY_CHUNK = 256  # keys (and attrs) per chunk
_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")
_STACK = re.compile(r"(map|layer)-(\d+(?:x\d+){1,2})")
_AXES = ("z", "y", "x")


@dataclass(frozen=True)
class Entry:
    """One explanation to store: its ``key``, ``map`` ``(*S)``, optional ``layer_map`` and ``attrs``."""

    key: str
    map: Tensor
    layer_map: Tensor | None = None
    attrs: Mapping[str, Any] | None = None


class _Stack:
    """One group of maps of one shape: the data array, ``key`` (and ``attrs``), the slot of each
    key.  Opening one completes what a kill may have left: arrays not yet made (the key arrays are
    made first, so such a group holds no keys) and arrays of unequal length (a kill between the
    resizes of :meth:`reserve`) — neither loses a whole explanation."""

    def __init__(self, root: Any, name: str, dtype: torch.dtype) -> None:
        kind, shape = _STACK.fullmatch(name).groups()
        spatial = tuple(int(n) for n in shape.split("x"))
        self.name = "map" if kind == "map" else "layer_map"
        group = root[name] if name in root else root.create_group(name)
        texts = ("key", "attrs") if kind == "map" else ("key",)
        length = max((group[a].shape[0] for a in (*texts, self.name) if a in group), default=0)
        for text in texts:
            if text not in group:
                group.create_array(text, shape=(length,), chunks=(KEY_CHUNK,), fill_value="",
                                   dtype=_zarr().dtype.VariableLengthUTF8(), dimension_names=("explanation",))
        if self.name not in group:
            axes = tuple(("" if kind == "map" else "layer_") + a for a in _AXES[-len(spatial):])
            group.create_array(self.name, shape=(length, *spatial), chunks=(1, *spatial), fill_value=float("nan"),
                               dtype=str(dtype).removeprefix("torch."), dimension_names=("explanation", *axes))
        self.group, self.data, self.key = group, group[self.name], group["key"]
        self.attrs = group.get("attrs", None)
        self._resize(length)
        keys = self.key[...] if length else np.array([], dtype=object)
        self.slots = {str(k): i for i, k in enumerate(keys) if k}
        self.size = 1 + max(self.slots.values(), default=-1)

    def arrays(self) -> list[Any]:
        return [a for a in (self.data, self.key, self.attrs) if a is not None]

    def reserve(self, size: int) -> None:
        """Room for ``size`` slots in every array (they grow to at least twice their length)."""
        if size > min(a.shape[0] for a in self.arrays()):
            self._resize(max(size, 2 * max(a.shape[0] for a in self.arrays()), GROWTH))

    def _resize(self, length: int) -> None:
        for array in self.arrays():
            if array.shape[0] != length:
                array.resize((length, *array.shape[1:]))

    def trim(self) -> None:
        self._resize(self.size)


class MapStore:
    """The maps of a run in ``path/maps.zarr``: :meth:`put_many`, :meth:`put`, :meth:`has`,
    :meth:`get`, :meth:`layer_map`, :meth:`keys` (also ``for key in store``, ``key in store``,
    ``len(store)``), :meth:`close`.

    >>> store = MapStore(out)                                           # doctest: +SKIP
    >>> store.put("000003/c2/seg-grad-cam/bottleneck", explanation.map[0], attrs={"score": 1.5})
    """

    def __init__(self, path: str | Path, *, dtype: str = "float16", layer_maps: bool = False) -> None:
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SegcamError(f"dtype must be 'float16' (half the disk) or 'float32' (exact), got {dtype!r}.")
        self.path = output_folder(path) / MAPS
        self.dtype = DTYPES[dtype]
        self.layer_maps = flag(layer_maps, "layer_maps")
        try:
            self._root = _zarr().open_group(self.path, mode="a", zarr_format=3)
            self._stacks = {name: _Stack(self._root, name, self.dtype)
                            for name, _ in self._root.groups() if _STACK.fullmatch(name)}
        except Exception as error:  # zarr raises ContainsArrayError, FileExistsError, ValueError … here
            raise SegcamError(f"cannot open {str(self.path)!r} as a segcam map store ({error}); give a new output "
                              "folder or remove that path.") from error

    def put(self, key: str, map: Tensor, *, layer_map: Tensor | None = None, attrs: Mapping[str, Any] | None = None,
            ) -> None:
        """Store one explanation: ``put_many([Entry(key, map, layer_map, attrs)])``."""
        self.put_many([Entry(key, map, layer_map, attrs)])

    def put_many(self, entries: Sequence[Entry]) -> None:
        """Store ``entries`` (maps ``(*S)``, layer maps when the store keeps them, JSON-ready
        attrs), replacing explanations of the same keys; all checked before anything is
        written, every map written before any key, a few zarr writes per stack."""
        checked = [self._checked(e) for e in entries]
        keys = [c[0] for c in checked]
        if len(set(keys)) != len(keys):
            raise SegcamError("put_many got the same key twice; give each explanation its own key.")
        writes: dict[str, list[tuple[str, Tensor, str | None]]] = {}
        for key, values, layer, attrs in checked:
            self._forget_elsewhere(key, _stack_name("map", values))
            writes.setdefault(_stack_name("map", values), []).append((key, values, attrs))
            if layer is not None:
                self._forget_elsewhere(key, _stack_name("layer", layer))
                writes.setdefault(_stack_name("layer", layer), []).append((key, layer, None))
        plans = {name: self._slots(name, rows) for name, rows in writes.items()}
        for name, rows in plans.items():  # the data first …
            _write_runs(self._stacks[name].data, [(s, v.numpy()) for s, _, v, _ in rows])
        for name in sorted(plans, key=lambda n: n.startswith("map")):  # … then the layer maps' keys, the maps' last
            stack, rows = self._stacks[name], plans[name]
            if stack.attrs is not None:
                _write_runs(stack.attrs, [(s, a) for s, _, _, a in rows])
            _write_runs(stack.key, [(s, k) for s, k, _, _ in rows])
            stack.slots.update((k, s) for s, k, _, _ in rows)

    def has(self, key: str) -> bool:
        """Whether a whole explanation is stored under ``key``."""
        return self._find(_key(key), "map") is not None

    def get(self, key: str) -> tuple[Tensor, dict[str, Any]]:
        """The map under ``key`` as a float32 tensor ``(*S)``, and its attributes."""
        stack, slot = self._where(key)
        return torch.from_numpy(np.asarray(stack.data[slot])).float(), json.loads(str(stack.attrs[slot:slot + 1][0]) or "{}")

    def layer_map(self, key: str) -> Tensor | None:
        """The layer-resolution map under ``key`` (float32), or ``None`` when none was stored."""
        self._where(key)
        found = self._find(key, "layer")
        return None if found is None else torch.from_numpy(np.asarray(found[0].data[found[1]])).float()

    def keys(self) -> list[str]:
        """The keys of the whole explanations, sorted."""
        return sorted(k for name, s in self._stacks.items() if name.startswith("map-") for k in s.slots)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return sum(len(s.slots) for name, s in self._stacks.items() if name.startswith("map-"))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key, "map") is not None

    def close(self) -> None:
        """Trim every stack to its used slots (a store left open keeps NaN slots with key ``""``)."""
        for stack in self._stacks.values():
            stack.trim()

    # ------------------------------------------------------------------ helpers
    def _checked(self, entry: Any) -> tuple[str, Tensor, Tensor | None, str]:
        if not isinstance(entry, Entry):
            raise SegcamError(f"put_many takes a list of segcam.apps.batch.store.Entry, got {shown(entry)}.")
        values = self._values(entry.map, "map")
        layer = None if entry.layer_map is None else self._values(entry.layer_map, "layer_map")
        if layer is not None and layer.ndim != values.ndim:
            raise SegcamError(f"layer_map has {layer.ndim} axes and map {values.ndim}; give both maps of one "
                              "explanation, without the batch axis.")
        return _key(entry.key), values, layer if self.layer_maps else None, _attrs(entry.attrs)

    def _values(self, map: Any, name: str) -> Tensor:
        """``map`` checked and cast to the store's dtype on the CPU."""
        if not isinstance(map, Tensor) or not map.is_floating_point():
            raise SegcamError(f"{name} must be a floating-point torch.Tensor (*S), got {shown(map)}; convert "
                              "it with torch.as_tensor(...).float().")
        if map.ndim not in (2, 3) or map.numel() == 0:
            raise SegcamError(f"{name} must be one explanation's map, (H, W) or (D, H, W), got shape "
                              f"{tuple(map.shape)}; for a batch store each map, {name}[b].")
        values = map.detach().to("cpu", torch.float32)
        if not torch.isfinite(values).all():
            raise SegcamError(f"{name} has NaN or inf values; fix the explanation first (a NaN map is not stored).")
        if self.dtype == torch.float16 and values.abs().max() > FLOAT16_MAX:
            raise SegcamError(f"{name} has values beyond float16's ±{FLOAT16_MAX:g}; open the store with "
                              "dtype='float32' or normalise the map.")
        return values.to(self.dtype)

    def _slots(self, name: str, rows: list[tuple[str, Tensor, str | None]],
               ) -> list[tuple[int, str, Tensor, str | None]]:
        """``rows`` with their slots in stack ``name`` (made when new): a key's own, else the next free."""
        if name not in self._stacks:
            self._stacks[name] = _Stack(self._root, name, self.dtype)
        stack = self._stacks[name]
        placed = []
        for key, values, attrs in rows:
            slot = stack.slots.get(key)
            if slot is None:
                slot, stack.size = stack.size, stack.size + 1
            placed.append((slot, key, values, attrs))
        stack.reserve(stack.size)
        return placed

    def _forget_elsewhere(self, key: str, keep: str) -> None:
        """Drop ``key`` from the stacks of its kind other than ``keep`` (a map replaced by one of
        another shape): its key is blanked before the new map is written."""
        kind = keep.split("-")[0]
        for name, stack in self._stacks.items():
            if name != keep and name.startswith(kind + "-") and key in stack.slots:
                stack.key[stack.slots.pop(key)] = ""

    def _find(self, key: str, kind: str) -> tuple[_Stack, int] | None:
        for name, stack in self._stacks.items():
            if name.startswith(kind + "-") and key in stack.slots:
                return stack, stack.slots[key]
        return None

    def _where(self, key: str) -> tuple[_Stack, int]:
        found = self._find(_key(key), "map")
        if found is None:
            raise SegcamError(f"no whole explanation {key!r} in {str(self.path)!r}; MapStore.keys() lists "
                              "the stored ones.")
        return found


def _stack_name(kind: str, values: Tensor) -> str:
    return f"{kind}-{'x'.join(str(n) for n in values.shape)}"


def _write_runs(array: Any, items: list[tuple[int, Any]]) -> None:
    """``array[slot] = value`` for every item, one zarr write per run of consecutive slots."""
    items = sorted(items, key=lambda i: i[0])
    start = 0
    for end in range(1, len(items) + 1):
        if end == len(items) or items[end][0] != items[end - 1][0] + 1:
            run = [v for _, v in items[start:end]]
            block = np.stack(run) if isinstance(run[0], np.ndarray) else np.array(run, dtype=object)
            array[items[start][0]:items[end - 1][0] + 1] = block
            start = end


def save_nifti_map(path: str | Path, map: Tensor, affine: Tensor | Any, grid: Sequence[int] | None = None) -> None:
    """Write one explanation's ``map`` ``(D, H, W)`` (or ``(H, W)``) as a float32 NIfTI file with the
    input's ``affine`` (``segcam.data.load_nifti_affine(input)``), so it overlays the input in
    3D Slicer or ITK-SNAP; ``path`` ends in ``.nii`` or ``.nii.gz``.  A map made at another size
    than the input's ``grid`` (a model whose preprocessing resizes) is resized (linearly) to it first."""
    if not isinstance(map, Tensor) or not map.is_floating_point() or map.ndim not in (2, 3):
        raise SegcamError(f"map must be one explanation's floating-point map (D, H, W) or (H, W), got "
                          f"{shown(map)}; for a batch save each map, map[b].")
    if grid is not None and tuple(grid) != tuple(map.shape):
        if len(grid) != map.ndim:
            raise SegcamError(f"grid {tuple(grid)} and the map {tuple(map.shape)} differ in axes; give the input's "
                              "spatial shape.")
        mode = "trilinear" if map.ndim == 3 else "bilinear"
        map = torch.nn.functional.interpolate(map[None, None].float(), size=tuple(grid), mode=mode,
                                              align_corners=False)[0, 0]
    save_nifti(path, map, affine)


def _attrs(attrs: Any) -> str:
    """``attrs`` checked to be a JSON-ready dict (no NaN: JSON has none), as JSON text."""
    if attrs is None:
        return "{}"
    if not isinstance(attrs, Mapping) or not all(isinstance(k, str) for k in attrs):
        raise SegcamError(f"attrs must be a dict with str keys, got {shown(attrs)}.")
    try:
        return json.dumps(dict(attrs), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SegcamError(f"attrs must be JSON-ready ({error}); convert tensors with .item() or .tolist(), "
                          "paths with str() and NaN with None.") from None


def _key(key: Any) -> str:
    """A key of '/'-separated names of letters, digits, '.', '_', '+' and '-' (none starting with '.',
    nor with '__' as Zarr v3 reserves, nor 'zarr.json')."""
    names = key.split("/") if isinstance(key, str) else [""]
    if not all(_SEGMENT.fullmatch(n) and n != "zarr.json" and not n.startswith("__") for n in names):
        raise SegcamError(f"key must be names of letters, digits, '.', '_', '+', '-' joined by '/' (e.g. "
                          f"'000012/c3/seg-xres-cam/downs.2'), none empty or starting with '.' or '__', got "
                          f"{shown(key)}.")
    return key


def output_folder(path: Any, *, create: bool = True) -> Path:
    """``path`` as the output folder (made when ``create``); a file there is refused."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise SegcamError(f"path must be the output folder (str or pathlib.Path), got {shown(path)}.")
    folder = Path(os.fspath(path)).expanduser()
    if folder.exists() and not folder.is_dir():
        raise SegcamError(f"{str(folder)!r} is a file; give a folder for the batch outputs.")
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise SegcamError(f"{name} must be True or False, got {shown(value)}.")
    return value


def shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:57] + '...' if len(text) > 60 else text} ({type(value).__name__})"


def _zarr() -> ModuleType:
    try:
        import zarr
    except ImportError:
        raise SegcamError("the batch map store needs zarr 3; install it with pip install 'segcam[batch]'.") from None
    return zarr
