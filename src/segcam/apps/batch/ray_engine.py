"""The Ray engine of ``segcam batch`` (``--engine ray``; ``pip install 'segcam[ray]'``): the local
engine's outputs, computed by a pool of Ray actors.

Ray Data holds the local engine's groups of items (the input as :func:`segcam.data.iter_items`
reads it, ``batch_size`` consecutive items per group, each item a plain dict of a few paths with
its ``index``) and ``map_batches`` hands them to ``actors`` actors.  Each actor loads the model
once (on a GPU when it has ``gpus_per_actor`` > 0), reads its items' files (:func:`.decode.read`)
and explains each group as the local engine does (:func:`.runner.explain_group`, skipping the
keys already done).  It returns every record as plain columns — the row and attributes as JSON,
each map as bytes of the store's dtype (float16 by default: what the store keeps, at half the
transport) with its shape — then one closing row per item (no ``key``) that says how many of its
explanations were already done, the group's last one marked ``end`` (an actor that cannot load
the model returns its error instead, which the driver raises as a
:class:`~segcam.errors.SegcamError`).  The driver streams these rows back (never all at once)
and writes each group with :func:`.runner.write_all`, the local engine's one writer, into the
same ``maps.zarr`` and ``explanations.parquet``: both engines give the same outputs, and a killed
Ray run resumes like a local one.

``address`` joins a running cluster (``"auto"``, ``"ray://head:10001"``).  Without it, and when
this process has not started Ray itself, a local instance of ``num_cpus`` CPUs is started —
quiet and offline: no dashboard, no usage statistics, no worker logs on the console — and shut
down at the end; it must have the CPUs and GPUs one actor asks for.  A Ray already started in
this process is used as it is and left running.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ... import Explainer, SegcamError, load_model
from ...data import Item, iter_items
from .decode import read
from .explain import check_settings
from .ledger import check_run, settings_of
from .metrics import Overlay
from .runner import BatchConfig, Progress, Record, Result, Summary, explain_group, write_all
from .store import DTYPES, output_folder
from .table import done_keys

TENSORS = ("map", "layer_map", "overlay_image", "overlay_region")  # columns of bytes, each with its shape
QUIET = {"enable_progress_bars": False, "print_on_execution_start": False, "enable_auto_log_stats": False}


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide the Ray engine runs: ``actors`` (each holds one model and explains one
    item at a time), ``gpus_per_actor`` (fractions share a GPU), ``cpus_per_actor`` (also the
    actor's torch threads), ``address`` of a cluster to join, ``num_cpus`` of the local instance
    started when there is none (``None``: every CPU of this machine)."""

    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    address: str | None = None
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.actors, bool) or not isinstance(self.actors, int) or self.actors < 1:
            raise SegcamError(f"actors must be a positive integer (models held at once), got {self.actors!r}.")
        for name in ("gpus_per_actor", "cpus_per_actor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise SegcamError(f"{name} must be a number ≥ 0 (fractions share a device), got {value!r}.")
        if self.cpus_per_actor == 0 and self.gpus_per_actor == 0:
            raise SegcamError("an actor needs a CPU or a GPU; give cpus_per_actor > 0 or gpus_per_actor > 0.")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise SegcamError(f"address must be a Ray cluster's address ('auto', 'ray://head:10001') or None for a "
                              f"local instance, got {self.address!r}.")
        if self.num_cpus is not None and (isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, int)
                                          or self.num_cpus < 1):
            raise SegcamError(f"num_cpus must be a positive integer or None (all CPUs), got {self.num_cpus!r}.")
        if self.num_cpus is not None and self.address is not None:
            raise SegcamError("num_cpus sizes a local Ray instance; a joined cluster has its own: drop one of "
                              "num_cpus and address.")


def run_batch_ray(inputs: str | Path, out: str | Path, *, model: str = "default", weights: str | None = None,
                  num_classes: int | None = None, config: BatchConfig | None = None, ray: RayConfig | None = None,
                  progress: Progress | None = None) -> Summary:
    """:func:`.runner.run_batch` on Ray (see the module docstring): the same outputs in ``out``,
    explained by ``ray.actors`` actors, each loading ``model`` (a spec, as for ``segcam explain``)."""
    config = config or BatchConfig()
    ray = ray or RayConfig()
    if not isinstance(config, BatchConfig) or not isinstance(ray, RayConfig):
        raise SegcamError(f"config must be a BatchConfig and ray a RayConfig, got {type(config).__name__} and "
                          f"{type(ray).__name__}; build them, e.g. RayConfig(actors=2).")
    if not isinstance(model, str):
        raise SegcamError(f"the Ray engine loads the model in each actor, so it needs the model's spec (a str such "
                          f"as 'default' or a file path), got {type(model).__name__}; run_batch takes loaded models.")
    config.spec()  # a bad target spec fails before Ray starts
    found = list(iter_items(inputs))
    grouped: dict[int, list[dict[str, Any]]] = {}
    for item in found:
        grouped.setdefault(item.index // config.batch_size, []).append(_item_row(item))
    out = output_folder(out)
    check_run(out, settings_of(config, model, weights, num_classes), found)
    done = done_keys(out)
    module = _ray()
    with _session(module, ray):
        actor = {"model": model, "weights": weights, "num_classes": num_classes, "config": config, "done": done,
                 "threads": max(1, int(ray.cpus_per_actor)), "gpu": ray.gpus_per_actor > 0}
        data = module.data.from_items([{"group": json.dumps(g)} for g in grouped.values()]).map_batches(
            _Actor, batch_size=1, batch_format="pyarrow", compute=module.data.ActorPoolStrategy(size=ray.actors),
            num_cpus=ray.cpus_per_actor, num_gpus=ray.gpus_per_actor, fn_constructor_kwargs=actor)
        return write_all(_results(data), out, config, done, len(found), progress)


class _Actor:
    """One model in one Ray actor: items in, records out as plain columns (see :func:`_columns`)."""

    def __init__(self, model: str, weights: str | None, num_classes: int | None, config: BatchConfig,
                 done: set[str], threads: int, gpu: bool) -> None:
        torch.set_num_threads(threads)
        self.config, self.done, self.failure = config, done, None
        try:
            self.loaded = load_model(model, weights=weights, num_classes=num_classes)
        except SegcamError as e:  # sent to the driver, which raises it: Ray would keep only a traceback's text
            self.failure = f"a Ray actor could not load the model: {e}"
            return
        if gpu and not torch.cuda.is_available():
            self.failure = ("a Ray actor was given a GPU but torch sees no CUDA device there; install a CUDA build "
                            "of torch on the cluster's GPU nodes, or run without --gpus-per-actor.")
            return
        if gpu:
            self.loaded.model.to("cuda")  # Ray has made this actor's GPUs the visible ones
        self.explainer = Explainer.from_loaded(self.loaded)
        try:
            check_settings(self.explainer, config)
        except SegcamError as e:
            self.failure = str(e)

    def __call__(self, batch: Any) -> Any:
        if self.failure is not None:
            return _table([{"failure": self.failure}])
        rows = []
        dtype = DTYPES[self.config.dtype]
        for cells in batch.to_pylist():
            items = [_item(c) for c in json.loads(cells["group"])]
            results = explain_group([read(item, self.config.max_pixels) for item in items], self.loaded,
                                    self.explainer, self.config, self.done)
            for item, (records, _, _) in zip(items, results):
                rows += [_columns(r, item, dtype) for r in records]
            rows += [{"index": item.index, "name": name, "skipped": skipped, "end": False}
                     for item, (_, skipped, name) in zip(items, results)]
            rows[-1]["end"] = True
        return _table(rows)


def _item_row(item: Item) -> dict[str, Any]:
    """``item`` as a plain dict (paths as str, targets as JSON) for Ray Data."""
    return {"index": item.index, "image": str(item.image), "mask": None if item.mask is None else str(item.mask),
            "targets": None if item.targets is None else json.dumps(list(item.targets))}


def _item(cells: Mapping[str, Any]) -> Item:
    """The item that :func:`_item_row` wrote as ``cells``."""
    mask, targets = cells["mask"], cells["targets"]
    return Item(cells["index"], Path(cells["image"]), None if mask is None else Path(mask),
                None if targets is None else tuple(json.loads(targets)))


def _columns(record: Record, item: Item, dtype: torch.dtype) -> dict[str, Any]:
    """``record`` as plain values: JSON text, maps as bytes of ``dtype`` (the store's), the
    overlay's image as float32 and its region as bool bytes, each with its shape; the maps of
    NIfTI inputs and of overlays travel as float32, as the local engine writes them."""
    overlay = record.overlay
    if record.affine is not None or overlay is not None:  # NIfTI maps and overlays get the exact map
        dtype = torch.float32
    return {"index": item.index, "name": item.name, "key": record.key, "row": json.dumps(record.row),
            "dtype": str(dtype).removeprefix("torch."),
            **_cells("map", record.map, dtype), **_cells("layer_map", record.layer_map, dtype),
            "affine": None if record.affine is None else json.dumps(np.asarray(record.affine).tolist()),
            "grid": None if record.grid is None else list(record.grid),
            **_cells("overlay_image", None if overlay is None else overlay.image, torch.float32),
            **_cells("overlay_region", None if overlay is None else overlay.region, torch.bool),
            "overlay_title": None if overlay is None else overlay.title}


def _cells(name: str, values: Tensor | None, dtype: torch.dtype) -> dict[str, Any]:
    if values is None:
        return {name: None, f"{name}_shape": None}
    values = values.detach().to("cpu", dtype).contiguous()
    return {name: values.numpy().tobytes(), f"{name}_shape": list(values.shape)}


def _table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa  # Ray Data's own dependency

    tensors = [(f"{name}{suffix}", kind) for name in TENSORS
               for suffix, kind in (("", pa.large_binary()), ("_shape", pa.list_(pa.int64())))]
    schema = pa.schema([("index", pa.int64()), ("name", pa.string()), ("skipped", pa.int64()), ("end", pa.bool_()),
                        ("key", pa.string()), ("dtype", pa.string()), ("grid", pa.list_(pa.int64())),
                        ("row", pa.large_string()), ("affine", pa.string()),
                        ("overlay_title", pa.string()), ("failure", pa.string()), *tensors])
    return pa.Table.from_pylist(rows, schema=schema)


def _results(data: Any) -> Iterator[list[Result]]:
    """The actors' rows, streamed back, as the writer's groups of results: a record each, then
    per item its name and how many explanations were already done, until the group's end."""
    group: list[Result] = []
    for batch in data.iter_batches(batch_size=None, batch_format="pyarrow"):
        for cells in batch.to_pylist():
            if cells["failure"] is not None:
                raise SegcamError(cells["failure"])
            group.append(([_record(cells)], 0, None) if cells["key"] is not None else
                         ([], cells["skipped"], cells["name"]))
            if cells["end"]:
                yield group
                group = []


def _record(cells: Mapping[str, Any]) -> Record:
    """The record that :func:`_columns` wrote as ``cells``."""
    affine, image = cells["affine"], _tensor(cells, "overlay_image", np.float32)
    overlay = None if image is None else Overlay(image, _tensor(cells, "overlay_region", np.bool_),
                                                 cells["overlay_title"])
    dtype = np.dtype(cells["dtype"])
    heatmap, layer = _tensor(cells, "map", dtype), _tensor(cells, "layer_map", dtype)
    return Record(cells["key"], json.loads(cells["row"]), None if heatmap is None else heatmap.float(),
                  None if layer is None else layer.float(),
                  None if affine is None else np.asarray(json.loads(affine)), overlay,
                  None if cells["grid"] is None else tuple(cells["grid"]))


def _tensor(cells: Mapping[str, Any], name: str, dtype: type) -> Tensor | None:
    if cells[name] is None:
        return None
    return torch.from_numpy(np.frombuffer(cells[name], dtype).copy()).reshape(cells[f"{name}_shape"])


@contextmanager
def _session(ray: ModuleType, config: RayConfig) -> Iterator[None]:
    """Ray for one run: the one already started here, the cluster at ``address``, or a quiet
    local instance; shut down at the end if this run started or joined it.  Ray Data's own
    progress bars and logs are off while it runs (the run has its own progress)."""
    context, logger = ray.data.DataContext.get_current(), logging.getLogger("ray.data")
    saved = {name: getattr(context, name) for name in QUIET if hasattr(context, name)}  # older Rays lack some
    level = logger.level
    started = not ray.is_initialized()
    if started and config.address is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=config.num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    elif started:
        ray.init(address=config.address, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if started and config.address is None:
            _check_room(ray, config)
        for name in saved:
            setattr(context, name, QUIET[name])
        logger.setLevel(logging.ERROR)
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        logger.setLevel(level)
        if started:
            ray.shutdown()


def _check_room(ray: ModuleType, config: RayConfig) -> None:
    """A local instance cannot grow: refuse an actor larger than it (Ray would wait for ever)."""
    have = ray.cluster_resources()
    for kind, asked, flag in (("CPU", config.cpus_per_actor, "cpus"), ("GPU", config.gpus_per_actor, "gpus")):
        if asked > have.get(kind, 0):
            raise SegcamError(f"an actor asks for {asked:g} {kind}s but this machine's Ray instance has "
                              f"{have.get(kind, 0):g}; lower --{flag}-per-actor (RayConfig.{flag}_per_actor) or join "
                              "a cluster that has them with --address.")


def _ray() -> ModuleType:
    try:
        import ray
        import ray.data
    except ImportError:
        raise SegcamError("the Ray engine needs Ray Data; install it with pip install 'segcam[ray]'.") from None
    return ray
