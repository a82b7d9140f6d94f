"""The maps of a batch run in ``DIR/maps.zarr`` (Zarr v3), written so that a kill never leaves
half an explanation looking whole; and NIfTI copies of the maps of NIfTI inputs.

One group per explanation, at its key (``"000012/c3/seg-xres-cam/downs.2"``), holds the array
``map`` ``(*S)`` — float16 unless float32 is asked for, one chunk — and, when the store keeps
them and the method has one, ``layer_map`` (the map at the layer's resolution); the
explanation's metadata (image, target, method, layer, score …) are the group's attributes.
Each group opens in xarray as a Dataset (dimensions ``z, y, x`` and ``layer_z, layer_y,
layer_x``, the metadata as its ``attrs``); with zarr, ``zarr.open_group(DIR / "maps.zarr")[key]``.

Kill safety: zarr's local store writes each file under a temporary name and renames it, and a
group says ``complete: true`` only after its arrays are written — that rename is the last
step — so :meth:`MapStore.has` (and :meth:`~MapStore.keys`) see whole explanations only.
Writes are not fsynced: they survive a killed process, not a power cut.  One process writes a
store at a time (there is no locking).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from ...data import save_nifti
from ...errors import SegcamError

MAPS = "maps.zarr"
COMPLETE = "complete"  # the group attribute written last
DTYPES = {"float16": torch.float16, "float32": torch.float32}
FLOAT16_MAX = 65504.0
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class MapStore:
    """The maps of a run in ``path/maps.zarr``: :meth:`put`, :meth:`has`, :meth:`get`, :meth:`keys`.

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
        except Exception as error:  # zarr raises ContainsArrayError, FileExistsError, ValueError … here
            raise SegcamError(f"cannot open {str(self.path)!r} as a Zarr v3 store ({error}); give a new output "
                              "folder or remove that path.") from error

    def put(self, key: str, map: Tensor, *, layer_map: Tensor | None = None, attrs: Mapping[str, Any] | None = None,
            ) -> None:
        """Store ``map`` ``(*S)`` (and ``layer_map`` when the store keeps layer maps) with ``attrs``
        (JSON-ready) under ``key``, replacing what was there; complete only when this returns."""
        key = _key(key)
        values = self._values(map, "map")
        layer = None if layer_map is None else self._values(layer_map, "layer_map")
        if layer is not None and layer.ndim != values.ndim:
            raise SegcamError(f"layer_map has {layer.ndim} axes and map {values.ndim}; give both maps of one "
                              "explanation, without the batch axis.")
        meta = _attrs(attrs)
        self._make_room(key)
        group = self._root.create_group(key, overwrite=True, attributes={**meta, COMPLETE: False})
        _write(group, "map", values, "")
        if self.layer_maps and layer is not None:
            _write(group, "layer_map", layer, "layer_")
        group.attrs[COMPLETE] = True  # one atomic rewrite of the group's metadata: now it is whole

    def has(self, key: str) -> bool:
        """Whether a complete explanation is stored under ``key``."""
        node = self._root.get(_key(key))
        return _is_explanation(node) and node.attrs[COMPLETE] is True

    def get(self, key: str) -> tuple[Tensor, dict[str, Any]]:
        """The map under ``key`` as a float32 tensor ``(*S)``, and its attributes."""
        group = self._complete(key)
        meta = {k: v for k, v in group.attrs.items() if k != COMPLETE}
        return torch.from_numpy(group["map"][...]).float(), meta

    def layer_map(self, key: str) -> Tensor | None:
        """The layer-resolution map under ``key`` (float32), or ``None`` when none was stored."""
        group = self._complete(key)
        return torch.from_numpy(group["layer_map"][...]).float() if "layer_map" in group else None

    def keys(self) -> list[str]:
        """The keys of the complete explanations, sorted."""
        return sorted(path for path, node in self._root.members(max_depth=None)
                      if _is_explanation(node) and node.attrs[COMPLETE] is True)

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

    def _make_room(self, key: str) -> None:
        """Refuse nested keys; mark an explanation about to be replaced incomplete first, so a kill
        while zarr deletes its old arrays never leaves it looking whole."""
        parts = key.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if _is_explanation(self._root.get(above)):
                raise SegcamError(f"key {key!r} lies inside the explanation {above!r}; keys must not nest: give "
                                  "every explanation a key of the same depth, e.g. item/target/method/layer.")
        node = self._root.get(key)
        if node is None:
            return
        if not _is_explanation(node):
            raise SegcamError(f"key {key!r} holds other explanations (it is a folder of keys); pick a key that "
                              "is not a prefix of another one.")
        node.attrs[COMPLETE] = False

    def _complete(self, key: str) -> Any:
        if not self.has(key):
            raise SegcamError(f"no complete explanation {key!r} in {str(self.path)!r}; MapStore.keys() lists "
                              "the stored ones.")
        return self._root[key]


def _write(group: Any, name: str, values: Tensor, prefix: str) -> None:
    """``values`` as the one-chunk array ``name`` of ``group``, with named dimensions."""
    axes = ("z", "y", "x")[-values.ndim:]
    array = group.create_array(name, shape=tuple(values.shape), chunks=tuple(values.shape),
                               dtype=str(values.dtype).removeprefix("torch."),
                               dimension_names=tuple(prefix + a for a in axes))
    array[...] = values.numpy()


def _is_explanation(node: Any) -> bool:
    """Whether ``node`` is an explanation's group (whole or not), not an array or a folder of keys."""
    return isinstance(node, _zarr().Group) and COMPLETE in node.attrs


def save_nifti_map(path: str | Path, map: Tensor, affine: Tensor | Any) -> None:
    """Write one explanation's ``map`` ``(D, H, W)`` (or ``(H, W)``) as a float32 NIfTI file with the
    input's ``affine`` (``segcam.data.load_nifti_affine(input)``), so it overlays the input in
    3D Slicer or ITK-SNAP; ``path`` ends in ``.nii`` or ``.nii.gz``."""
    if not isinstance(map, Tensor) or not map.is_floating_point() or map.ndim not in (2, 3):
        raise SegcamError(f"map must be one explanation's floating-point map (D, H, W) or (H, W), got "
                          f"{shown(map)}; for a batch save each map, map[b].")
    save_nifti(path, map, affine)


def _attrs(attrs: Any) -> dict[str, Any]:
    """``attrs`` checked to be a JSON-ready dict (no NaN: JSON has none)."""
    if attrs is None:
        return {}
    if not isinstance(attrs, Mapping) or not all(isinstance(k, str) for k in attrs):
        raise SegcamError(f"attrs must be a dict with str keys, got {shown(attrs)}.")
    if COMPLETE in attrs:
        raise SegcamError(f"attrs must not have the key {COMPLETE!r}: the store writes it; rename yours.")
    try:
        json.dumps(attrs, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SegcamError(f"attrs must be JSON-ready ({error}); convert tensors with .item() or .tolist(), "
                          "paths with str() and NaN with None.") from None
    return dict(attrs)


def _key(key: Any) -> str:
    """A key of '/'-separated names of letters, digits, '.', '_' and '-' (none starting with '.',
    nor with '__' as Zarr v3 reserves, nor 'zarr.json')."""
    names = key.split("/") if isinstance(key, str) else [""]
    if not all(_SEGMENT.fullmatch(n) and n != "zarr.json" and not n.startswith("__") for n in names):
        raise SegcamError(f"key must be names of letters, digits, '.', '_', '-' joined by '/' (e.g. "
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
