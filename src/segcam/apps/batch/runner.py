"""The local batch engine: items → read ahead → one forward pass per group of items → every
target's map → ``maps.zarr`` and ``explanations.parquet``, resumable.

Items are explained in groups of ``batch_size`` consecutive items (item ``i`` is in group
``i // batch_size``, so a group never depends on how the run was split or resumed).  The items
of a group whose preprocessed images have one shape go through the model together: one forward
pass, then for each method one backward pass per *slot* — the ``j``-th target of class ``c`` of
every item, its own region in each image (an item without such a target lends its whole image,
whose map is dropped).  Each image's score depends only on that image's logits, so each map
equals the item's single explanation (to float rounding); the saving is the per-call cost of
small models.  Methods that read modified inputs or the input itself (RISE, Score-CAM,
saliency …) explain each item alone, as does an item whose group fails together.

For each group, every map goes to the :class:`~.store.MapStore` first and the rows to the
:class:`~.table.TableWriter` after (made durable with :meth:`~.table.TableWriter.commit`), so a
row means a whole map, a re-run skips the keys the table holds and a killed run loses at most
the group in flight.  A file that cannot be read, or an item whose explanation fails, becomes
one row with its ``error``, and the run goes on.  Maps of NIfTI inputs are also written as
NIfTI with the input's affine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ... import Explainer, LoadedModel, SegcamError, load_model
from ...data import iter_items
from .config import BatchConfig
from .decode import Decoded, decoded
from .explain import Record, Result, check_settings, explain_group
from .ledger import check_run, settings_of
from .metrics import save_batch_overlay
from .store import Entry, MapStore, output_folder, save_nifti_map
from .table import TableWriter, done_keys

__all__ = ["BatchConfig", "Progress", "Record", "Result", "Summary", "explain_group", "groups", "run_batch",
           "write", "write_all"]

Progress = Callable[[int, int, str], None]
LOG = "batch.log"
LOGGER = logging.getLogger("segcam.batch")


@dataclass
class Summary:
    """What a run did: explanations written and skipped (already done), items that failed, items
    without targets."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    empty: int = 0
    seconds: float = 0.0
    by_class_method: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{self.written} explanations written, {self.skipped} already done, {self.failed} items failed"
               + (f", {self.empty} items without targets" if self.empty else "") + f" ({self.seconds:.1f} s)"]
        for (cls, method), scores in sorted(self.by_class_method.items()):
            out.append(f"  {cls:<24} {method:<16} {len(scores):>6} maps, mean score {sum(scores) / len(scores):.4g}")
        return out


def run_batch(inputs: str | Path, out: str | Path, *, model: str | LoadedModel = "default",
              weights: str | None = None, num_classes: int | None = None, config: BatchConfig | None = None,
              device: str | None = None, progress: Progress | None = None) -> Summary:
    """Explain every item of ``inputs`` (folder, glob or CSV manifest) into ``out``; see the
    module docstring.  ``model`` is a spec as for ``segcam explain`` or a loaded model;
    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` …) runs it there — a loaded model is moved
    back where it was at the end."""
    config = config or BatchConfig()
    config.spec()  # a bad target spec fails before anything is read
    target = check_device(device)
    out = output_folder(out)
    total = check_run(out, settings_of(config, model, weights, num_classes), iter_items(inputs))
    with decoded(iter_items(inputs), workers=config.workers, ahead=config.ahead,
                 max_pixels=config.max_pixels) as items:  # the readers start while the model loads
        loaded = model if isinstance(model, LoadedModel) else load_model(model, weights=weights,
                                                                          num_classes=num_classes)
        with on_device(loaded.model, target):
            explainer = Explainer.from_loaded(loaded)
            check_settings(explainer, config)  # a bad layer or class fails now, not as an error row per item
            done = done_keys(out)
            results = (explain_group(g, loaded, explainer, config, done) for g in groups(items, config.batch_size))
            return write_all(results, out, config, done, total, progress)


def check_device(device: object) -> torch.device | None:
    """``device`` as a torch device that this machine has, or ``None`` (leave the model where it is)."""
    if device is None:
        return None
    if not isinstance(device, str):
        raise SegcamError(f"device must be a str such as 'cpu', 'cuda' or 'cuda:1', got {type(device).__name__}.")
    try:
        found = torch.device(device)
    except RuntimeError:
        raise SegcamError(f"unknown device {device!r}; give 'cpu', 'cuda' or 'cuda:1'.") from None
    if found.type == "cuda" and (not torch.cuda.is_available() or (found.index or 0) >= torch.cuda.device_count()):
        raise SegcamError(f"this machine has {torch.cuda.device_count()} CUDA device(s), so {device!r} cannot run "
                          "the model; use --device cpu (or leave it out) or a CUDA device it has.")
    if found.type not in ("cpu", "cuda"):
        raise SegcamError(f"device {device!r} is not supported by segcam batch; give 'cpu' or 'cuda[:N]'.")
    return found


@contextmanager
def on_device(model: torch.nn.Module, device: torch.device | None) -> Iterator[None]:
    """``model`` on ``device`` inside the block, back on its own device after (also on errors)."""
    first = next(iter(model.parameters()), None)
    if device is None or first is None or first.device == device:
        yield
        return
    home = first.device
    model.to(device)
    try:
        yield
    finally:
        model.to(home)


def groups(items: Iterable[Decoded], size: int) -> Iterator[list[Decoded]]:
    """``items`` (in index order) in groups of the items whose ``index // size`` is equal."""
    group: list[Decoded] = []
    for d in items:
        if group and group[0].item.index // size != d.item.index // size:
            yield group
            group = []
        group.append(d)
    if group:
        yield group


def write_all(results: Iterable[Sequence[Result]], out: Path, config: BatchConfig, done: set[str], total: int,
              progress: Progress | None) -> Summary:
    """Write each group of ``results`` as it comes (from this process or from Ray actors) with
    :func:`write`; an item is finished, and ``progress`` told, when its group is written.  The
    run's start, every failed item and its end go to ``DIR/batch.log`` (appended) and to the
    ``segcam.batch`` logger (failures as warnings).
    (A writer thread overlapping the writes with the next group's compute measured no faster.)"""
    store = MapStore(out, dtype=config.dtype, layer_maps=config.layer_maps)
    summary, start, finished = Summary(), time.perf_counter(), 0
    with TableWriter(out, flush_every=config.flush_every, csv=config.csv) as table, \
            (out / LOG).open("a", encoding="utf-8") as log:
        _log(log, f"run started: {total} items, methods {', '.join(config.methods)}, targets {config.targets}")
        for group in results:
            summary.skipped += sum(skipped for _, skipped, _ in group)
            write([r for records, _, _ in group for r in records], store, table, done, summary, out, log)
            for _, _, name in group:
                if name is not None:
                    finished += 1
                    if progress is not None:
                        progress(finished, total, name)
        store.close()
        summary.seconds = time.perf_counter() - start
        _log(log, "run ended: " + summary.lines()[0])
    return summary


def _attrs(row: dict[str, Any]) -> dict[str, Any]:
    """A row as its map's attributes in the store, without the timings (they differ run to run)."""
    return {k: v for k, v in row.items() if not k.endswith("seconds")}


def _log(log: Any, line: str) -> None:
    log.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")
    log.flush()


def write(records: Sequence[Record], store: MapStore, table: TableWriter, done: set[str], summary: Summary,
          out: Path, log: Any) -> None:
    """Maps first (one :meth:`~.store.MapStore.put_many`, each with its row as attributes), then
    rows, committed (a row means a whole map); the row of a failed item, or of one without
    targets, once; failures logged to ``log`` and the ``segcam.batch`` logger."""
    maps = [r for r in records if r.map is not None]
    store.put_many([Entry(r.key, r.map, r.layer_map, _attrs(r.row)) for r in maps])
    for r in maps:
        if r.affine is not None:
            (out / "nifti").mkdir(exist_ok=True)
            save_nifti_map(out / "nifti" / f"{r.key.replace('/', '__')}.nii.gz", r.map, r.affine, r.grid)
        if r.overlay is not None:
            save_batch_overlay(out, r.key, r.map, r.overlay)
    for r in records:
        if r.map is None:  # a failed item, or one without targets
            if r.row.get("error"):
                summary.failed += 1
                failure = f"item {r.row['index']} ({r.row['image']}) failed: {r.row['error']}"
                LOGGER.warning(failure)
                _log(log, failure)
            else:
                summary.empty += 1
            if r.key not in done:
                table.append(r.row)
            continue
        table.append(r.row)
        summary.written += 1
        summary.by_class_method.setdefault((r.row["class_name"], r.row["method"]), []).append(r.row["score"])
    table.commit()
