"""The local batch engine: items → read ahead → one forward pass per item and method → every
target's map → ``maps.zarr`` and ``explanations.parquet``, resumable.

For each item (in the input's order) the image is preprocessed for the model, its targets are
made from the prediction (see :mod:`.targets`), and each method explains all of them at every
layer with :meth:`segcam.Explainer.explain_many` (one forward pass, a backward pass per target).
Each explanation's map goes to the :class:`~.store.MapStore` first and its row to the
:class:`~.table.TableWriter` after, so a row means a whole map; a re-run skips the keys the
table already holds and a killed run loses at most the rows not yet flushed.  A file that cannot
be read, or an item whose explanation fails, becomes one row with its ``error``, and the run
goes on.  Maps of NIfTI inputs are also written as NIfTI with the input's affine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ... import Explainer, LoadedModel, SegcamError, load_model
from ...core import INPUT, Forward
from ...data import DEFAULT_MAX_PIXELS, count_items, iter_items
from ...evaluation import Scoring
from ...methods import METHODS
from .decode import Decoded, decoded
from .metrics import Overlay, check_metrics, measure, reference_labels, save_batch_overlay
from .store import MapStore, save_nifti_map
from .table import TableWriter, done_keys
from .targets import TargetSpec, parse_targets, targets_for

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BatchConfig:
    """What a batch run explains and how: ``targets`` (a :class:`~.targets.TargetSpec` or its
    text, e.g. ``"instances:1,3"``), ``methods`` with their ``options`` by method name,
    ``layers`` (``None``: the default layer), map ``dtype``, ``layer_maps`` kept or not,
    ``workers`` reading files ahead (0: in this process), ``csv`` next to the Parquet table;
    ``metrics`` (see :mod:`.metrics`: masking, deletion, insertion, evidence) measured as
    ``scoring`` says, and an overlay PNG per explanation in ``DIR/overlays`` with ``overlays``."""

    targets: TargetSpec | str = "predicted"
    methods: tuple[str, ...] = ("seg-grad-cam",)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layers: tuple[str, ...] | None = None
    dtype: str = "float16"
    layer_maps: bool = False
    workers: int = 2
    ahead: int = 8
    csv: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    flush_every: int = 256
    metrics: tuple[str, ...] = ()
    scoring: Scoring = Scoring()
    overlays: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", check_metrics(self.metrics))
        if not isinstance(self.scoring, Scoring):
            raise SegcamError(f"scoring must be a segcam.evaluation.Scoring, got {type(self.scoring).__name__}.")
        if not isinstance(self.overlays, bool):
            raise SegcamError(f"overlays must be True or False, got {self.overlays!r}.")

    def spec(self) -> TargetSpec:
        return self.targets if isinstance(self.targets, TargetSpec) else parse_targets(self.targets)


@dataclass
class Summary:
    """What a run did: explanations written and skipped (already done), items that failed."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    by_class_method: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{self.written} explanations written, {self.skipped} already done, {self.failed} items failed "
               f"({self.seconds:.1f} s)"]
        for (cls, method), scores in sorted(self.by_class_method.items()):
            out.append(f"  {cls:<24} {method:<16} {len(scores):>6} maps, mean score {sum(scores) / len(scores):.4g}")
        return out


@dataclass
class Record:
    """One finished explanation (``map`` set) or one failed item (``row["error"]`` set), as
    computed by :func:`explain_item` wherever the model lives (here, or a Ray actor) and written
    by :func:`write` in the run's one writing process."""

    key: str
    row: dict[str, Any]
    map: Tensor | None = None
    layer_map: Tensor | None = None
    attrs: dict[str, Any] | None = None
    affine: Any = None
    overlay: Overlay | None = None


def run_batch(inputs: str | Path, out: str | Path, *, model: str | LoadedModel = "default",
              weights: str | None = None, num_classes: int | None = None, config: BatchConfig | None = None,
              progress: Progress | None = None) -> Summary:
    """Explain every item of ``inputs`` (folder, glob or CSV manifest) into ``out``; see the
    module docstring.  ``model`` is a spec as for ``segcam explain`` or a loaded model."""
    config = config or BatchConfig()
    config.spec()  # a bad target spec fails before anything is read
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights=weights,
                                                                      num_classes=num_classes)
    explainer = Explainer.from_loaded(loaded)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = done_keys(out)
    items = decoded(iter_items(inputs), workers=config.workers, ahead=config.ahead, max_pixels=config.max_pixels)
    results = ((*explain_item(d, loaded, explainer, config, done), d.item.name) for d in items)
    return write_all(results, out, config, done, count_items(inputs), progress)


Result = tuple[Sequence[Record], int, str | None]  # records, explanations skipped as done, the item's name at its end


def write_all(results: Iterable[Result], out: Path, config: BatchConfig, done: set[str], total: int,
              progress: Progress | None) -> Summary:
    """Write ``results`` as they come (from this process or from Ray actors) with :func:`write`;
    an item is finished, and ``progress`` told, when a result carries its name."""
    store = MapStore(out, dtype=config.dtype, layer_maps=config.layer_maps)
    summary, start, finished = Summary(), time.perf_counter(), 0
    with TableWriter(out, flush_every=config.flush_every, csv=config.csv) as table:
        for records, skipped, name in results:
            summary.skipped += skipped
            write(records, store, table, done, summary, out)
            if name is not None:
                finished += 1
                if progress is not None:
                    progress(finished, total, name)
    summary.seconds = time.perf_counter() - start
    return summary


def write(records: Sequence[Record], store: MapStore, table: TableWriter, done: set[str], summary: Summary,
          out: Path) -> None:
    """Maps first, then rows (a row means a whole map); a failed item's row once."""
    for r in records:
        if r.map is None:
            summary.failed += 1
            if r.key not in done:
                table.append(r.row)
            continue
        store.put(r.key, r.map, layer_map=r.layer_map, attrs=r.attrs)
        if r.affine is not None:
            (out / "nifti").mkdir(exist_ok=True)
            save_nifti_map(out / "nifti" / f"{r.key.replace('/', '__')}.nii.gz", r.map, r.affine)
        if r.overlay is not None:
            save_batch_overlay(out, r.key, r.map, r.overlay)
        table.append(r.row)
        summary.written += 1
        summary.by_class_method.setdefault((r.row["class_name"], r.row["method"]), []).append(r.row["score"])


def explain_item(d: Decoded, loaded: LoadedModel, explainer: Explainer, config: BatchConfig,
                 done: set[str]) -> tuple[list[Record], int]:
    """The records of one decoded item (every target × method × layer not in ``done``), and how
    many targets × methods were skipped as done.  Writes nothing."""
    prefix = f"{d.item.index:06d}"
    base = {"index": d.item.index, "image": str(d.item.image)}
    try:
        if d.error is not None:
            raise SegcamError(d.error)
        x = loaded.preprocess(d.image)
        names = [explainer.resolve_layer(n) for n in config.layers] if config.layers else \
            [explainer.default_layer(x)]
        fwd = explainer.forward(x, layer=names)  # one kept forward: targets, layer methods, metrics
        targets = targets_for(config.spec(), fwd.predicted[0], d.truth, d.item.targets, explainer.class_names)
        records: list[Record] = []
        skipped = 0
        for method in config.methods:
            found, skip = _method(d, x, fwd, names, targets, method, explainer, config, done, prefix, base)
            records += found
            skipped += skip
        return records, skipped
    except SegcamError as e:
        return [Record(f"{prefix}/error", {**base, "key": f"{prefix}/error", "error": str(e)})], 0


def _method(d: Decoded, x: Tensor, fwd: Forward, layer_names: list[str], targets: Sequence[tuple[str, Any]],
            method: str, explainer: Explainer, config: BatchConfig, done: set[str], prefix: str,
            base: dict[str, Any]) -> tuple[list[Record], int]:
    on_input = METHODS[method].on_input if method in METHODS else False
    source, layers, names = (x, None, [INPUT]) if on_input else (fwd, layer_names, layer_names)
    todo = [(k, t) for k, t in targets if not all(f"{prefix}/{k}/{method}/{n}" in done for n in names)]
    if not todo:
        return [], len(targets)
    start = time.perf_counter()
    exps = explainer.explain_many(source, [t for _, t in todo], method=method, layer=layers,
                                  **dict(config.options.get(method, {})))
    seconds = (time.perf_counter() - start) / max(1, len(todo) * len(exps.layers))
    reference = reference_labels(fwd.predicted[0], config.metrics)
    records = []
    for k, (tkey, target) in enumerate(todo):
        for layer in exps.layers:
            exp = exps[k, layer]
            key = f"{prefix}/{tkey}/{method}/{layer}"
            name = exp.class_name or str(exp.cls)
            score = float(exp.score[0])
            attrs = {**base, "target": target.to_dict(), "class": exp.cls, "class_name": name, "method": method,
                     "options": exp.options, "layer": layer, "score": score}
            row = {**base, "key": key, "target": tkey, "target_json": json.dumps(target.to_dict()),
                   "class": exp.cls, "class_name": name, "method": method,
                   "options": json.dumps(exp.options, sort_keys=True), "layer": layer, "score": score,
                   "region_pixels": int(exp.region[0].sum()), "seconds": seconds, "error": None,
                   **measure(config.metrics, explainer.model, x, exp, reference=reference, truth=d.truth,
                             scoring=config.scoring)}
            overlay = Overlay(x, exp.region[0], f"{method} · layer {layer} · {name}") if config.overlays else None
            records.append(Record(key, row, exp.map[0], exp.layer_map[0], attrs, d.affine, overlay))
    return records, len(targets) - len(todo)
