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

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ... import Explainer, Explanation, LoadedModel, SegcamError, Target, load_model, regions
from ...core import INPUT, Forward, Logits, resolve_targets
from ...data import DEFAULT_MAX_PIXELS, count_items, iter_items
from ...errors import closest
from ...evaluation import Scoring
from ...methods import METHODS
from .decode import Decoded, check_workers, decoded
from .metrics import Overlay, check_metrics, measure, reference_labels, save_batch_overlay
from .store import Entry, MapStore, save_nifti_map
from .table import TableWriter, done_keys
from .targets import TargetSpec, parse_targets, targets_for

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BatchConfig:
    """What a batch run explains and how: ``targets`` (a :class:`~.targets.TargetSpec` or its
    text, e.g. ``"instances:1,3"``), ``methods`` with their ``options`` by method name,
    ``layers`` (``None``: the default layer), map ``dtype``, ``layer_maps`` kept or not,
    ``workers`` reading files ahead (0: in this process; ``None``: decided from the first file,
    see :mod:`.decode`), ``batch_size`` items through the model
    together (module docstring), ``csv`` next to the Parquet table;
    ``metrics`` (see :mod:`.metrics`: masking, deletion, insertion, evidence) measured as
    ``scoring`` says, and an overlay PNG per explanation in ``DIR/overlays`` with ``overlays``."""

    targets: TargetSpec | str = "predicted"
    methods: tuple[str, ...] = ("seg-grad-cam",)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layers: tuple[str, ...] | None = None
    dtype: str = "float16"
    layer_maps: bool = False
    workers: int | None = None
    ahead: int = 8
    batch_size: int = 8
    csv: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    flush_every: int = 256
    metrics: tuple[str, ...] = ()
    scoring: Scoring = Scoring()
    overlays: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", check_metrics(self.metrics))
        if isinstance(self.methods, str) or not isinstance(self.methods, Sequence) or not self.methods:
            raise SegcamError(f"methods must be a non-empty tuple of method names, got {self.methods!r}.")
        for method in self.methods:
            if method not in METHODS:
                near = closest(str(method), list(METHODS), n=3)
                raise SegcamError(f"unknown method {method!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")
                                  + f"; the methods are {', '.join(sorted(METHODS))}.")
        check_workers(self.workers)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SegcamError(f"batch_size must be a positive integer (items through the model together; 1: one "
                              f"at a time), got {self.batch_size!r}.")
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
    total = count_items(inputs)
    with decoded(iter_items(inputs), workers=config.workers, ahead=config.ahead,
                 max_pixels=config.max_pixels) as items:  # the readers start while the model loads
        loaded = model if isinstance(model, LoadedModel) else load_model(model, weights=weights,
                                                                          num_classes=num_classes)
        explainer = Explainer.from_loaded(loaded)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        done = done_keys(out)
        results = (explain_group(g, loaded, explainer, config, done) for g in groups(items, config.batch_size))
        return write_all(results, out, config, done, total, progress)


Result = tuple[Sequence[Record], int, str | None]  # records, explanations skipped as done, the item's name at its end


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
    :func:`write`; an item is finished, and ``progress`` told, when a result carries its name."""
    store = MapStore(out, dtype=config.dtype, layer_maps=config.layer_maps)
    summary, start, finished = Summary(), time.perf_counter(), 0
    with TableWriter(out, flush_every=config.flush_every, csv=config.csv) as table:
        for group in results:
            summary.skipped += sum(skipped for _, skipped, _ in group)
            write([r for records, _, _ in group for r in records], store, table, done, summary, out)
            for _, _, name in group:
                if name is not None:
                    finished += 1
                    if progress is not None:
                        progress(finished, total, name)
        store.close()
    summary.seconds = time.perf_counter() - start
    return summary


def write(records: Sequence[Record], store: MapStore, table: TableWriter, done: set[str], summary: Summary,
          out: Path) -> None:
    """Maps first (one :meth:`~.store.MapStore.put_many`), then rows, committed (a row means a
    whole map); a failed item's row once."""
    maps = [r for r in records if r.map is not None]
    store.put_many([Entry(r.key, r.map, r.layer_map, r.attrs) for r in maps])
    for r in maps:
        if r.affine is not None:
            (out / "nifti").mkdir(exist_ok=True)
            save_nifti_map(out / "nifti" / f"{r.key.replace('/', '__')}.nii.gz", r.map, r.affine)
        if r.overlay is not None:
            save_batch_overlay(out, r.key, r.map, r.overlay)
    for r in records:
        if r.map is None:
            summary.failed += 1
            if r.key not in done:
                table.append(r.row)
            continue
        table.append(r.row)
        summary.written += 1
        summary.by_class_method.setdefault((r.row["class_name"], r.row["method"]), []).append(r.row["score"])
    table.commit()


def explain_group(ds: Sequence[Decoded], loaded: LoadedModel, explainer: Explainer, config: BatchConfig,
                  done: set[str]) -> list[Result]:
    """The results of one group of decoded items, in their order (module docstring): records of
    every target × method × layer not in ``done``, explanations skipped as done, the item's name.
    Writes nothing."""
    found: dict[int, tuple[list[Record], int]] = {}
    shapes: dict[tuple[int, ...], list[tuple[Decoded, Tensor]]] = {}
    for d in ds:
        try:
            if d.error is not None:
                raise SegcamError(d.error)
            x = loaded.preprocess(d.image)
            shapes.setdefault(tuple(x.shape), []).append((d, x))
        except SegcamError as e:
            found[d.item.index] = _failed(d, e)
    together = all(_batchable(m) for m in config.methods)
    for members in shapes.values():
        if together and len(members) > 1:
            try:
                found.update(zip((d.item.index for d, _ in members), _explain(members, explainer, config, done)))
                continue
            except SegcamError:
                pass  # each item alone below, so that one bad item fails alone
        for d, x in members:
            try:
                found[d.item.index] = _explain([(d, x)], explainer, config, done)[0]
            except SegcamError as e:
                found[d.item.index] = _failed(d, e)
    return [(*found[d.item.index], d.item.name) for d in ds]


def _batchable(method: str) -> bool:
    """Whether ``method`` explains the images of a batch independently from one backward pass:
    a gradient method on a layer (not RISE, Score-CAM, nor a method on the input)."""
    spec = METHODS.get(method)
    return spec is not None and spec.gradients and not spec.on_input


def _failed(d: Decoded, error: SegcamError) -> tuple[list[Record], int]:
    key = f"{d.item.index:06d}/error"
    return [Record(key, {"index": d.item.index, "image": str(d.item.image), "key": key, "error": str(error)})], 0


def _explain(members: Sequence[tuple[Decoded, Tensor]], explainer: Explainer, config: BatchConfig,
             done: set[str]) -> list[tuple[list[Record], int]]:
    """Records and skipped counts of ``members`` (items with images of one shape) from one forward pass."""
    x = torch.stack([x for _, x in members])
    names = [explainer.resolve_layer(n) for n in config.layers] if config.layers else [explainer.default_layer(x)]
    fwd = explainer.forward(x, layer=names)  # one kept forward: targets, layer methods, metrics
    found = [targets_for(config.spec(), fwd.predicted[b], d.truth, d.item.targets, explainer.class_names)
             for b, (d, _) in enumerate(members)]
    out: list[tuple[list[Record], int]] = [([], 0) for _ in members]
    for method in config.methods:
        on_input = METHODS[method].on_input if method in METHODS else False
        source, layers, layer_names = (x, None, [INPUT]) if on_input else (fwd, names, names)
        todo = [[(k, t) for k, t in pairs
                 if not all(f"{_prefix(d)}/{k}/{method}/{_layer_key(n)}" in done for n in layer_names)]
                for (d, _), pairs in zip(members, found)]
        out = [(records, skipped + len(pairs) - len(mine)) for (records, skipped), pairs, mine in zip(out, found, todo)]
        if not any(todo):
            continue
        asked, where = ([t for _, t in todo[0]], {(0, j): j for j in range(len(todo[0]))}) if len(members) == 1 \
            else _slots(todo, fwd, explainer)
        start = time.perf_counter()
        exps = explainer.explain_many(source, asked, method=method, layer=layers, **dict(config.options.get(method, {})))
        seconds = (time.perf_counter() - start) / max(1, sum(map(len, todo)) * len(exps.layers))
        for b, ((d, _), mine) in enumerate(zip(members, todo)):
            reference = reference_labels(fwd.predicted[b], config.metrics)
            for j, (tkey, target) in enumerate(mine):
                for layer in exps.layers:
                    exp = _one(exps[where[b, j], layer], b, target, len(members) > 1)
                    out[b][0].append(_record(d, x[b], exp, tkey, target, seconds, reference, explainer, config))
    return out


def _slots(todo: Sequence[Sequence[tuple[str, Target]]], fwd: Forward, explainer: Explainer,
           ) -> tuple[list[Target], dict[tuple[int, int], int]]:
    """The targets of several images as one list of batch targets, and where each went.

    Slot ``(c, reduce, j)`` holds the ``j``-th target of class ``c`` of each image: class ``c``
    over a mask ``(B, *S)`` made of each image's own region (resolved on that image alone), the
    whole image where an image has no such target (its map is not used).  ``where[b, i]`` is the
    slot of image ``b``'s ``i``-th target."""
    masks: dict[tuple[int, str, int], list[Tensor | None]] = {}
    where: dict[tuple[int, int], tuple[int, str, int]] = {}
    for b, pairs in enumerate(todo):
        if not pairs:
            continue
        logits = Logits(fwd.logits.values[b:b + 1].detach())
        resolved = resolve_targets([t for _, t in pairs], logits, lambda b=b: fwd.predicted[b:b + 1],
                                   explainer.class_names)
        seen: dict[tuple[int, str], int] = {}
        for i, r in enumerate(resolved):
            j = seen[r.cls, r.target.reduce] = seen.get((r.cls, r.target.reduce), -1) + 1
            slot = (r.cls, r.target.reduce, j)
            masks.setdefault(slot, [None] * len(todo))[b] = r.region[0]
            where[b, i] = slot
    whole = torch.ones(fwd.predicted.shape[1:], dtype=torch.bool, device=fwd.predicted.device)
    order = {slot: k for k, slot in enumerate(masks)}
    targets = [Target(cls, regions.mask(torch.stack([whole if m is None else m for m in ms])), reduce=reduce)
               for (cls, reduce, _), ms in masks.items()]
    return targets, {bi: order[slot] for bi, slot in where.items()}


def _one(exp: Explanation, b: int, target: Target, batched: bool) -> Explanation:
    """Image ``b``'s explanation from a batch one, told as the item's own ``target``."""
    if not batched:
        return exp
    keep = slice(b, b + 1)
    return replace(exp, map=exp.map[keep], layer_map=exp.layer_map[keep], raw=exp.raw[keep],
                   region=exp.region[keep], score=exp.score[keep], target=target)


def _layer_key(layer: str) -> str:
    """The layer's part of a key: its name, or ``input`` for the input's pixels (``<input>``)."""
    return "input" if layer == INPUT else layer


def _prefix(d: Decoded) -> str:
    return f"{d.item.index:06d}"


def _record(d: Decoded, x: Tensor, exp: Explanation, tkey: str, target: Target, seconds: float,
            reference: Tensor | None, explainer: Explainer, config: BatchConfig) -> Record:
    """The record of one explanation of item ``d`` (its preprocessed image ``x`` ``(C, *S)``)."""
    base = {"index": d.item.index, "image": str(d.item.image)}
    key = f"{_prefix(d)}/{tkey}/{exp.method}/{_layer_key(exp.layer)}"
    name = exp.class_name or str(exp.cls)
    score = float(exp.score[0])
    attrs = {**base, "target": target.to_dict(), "class": exp.cls, "class_name": name, "method": exp.method,
             "options": exp.options, "layer": exp.layer, "score": score}
    row = {**base, "key": key, "target": tkey, "target_json": json.dumps(target.to_dict()),
           "class": exp.cls, "class_name": name, "method": exp.method,
           "options": json.dumps(exp.options, sort_keys=True), "layer": exp.layer, "score": score,
           "region_pixels": int(exp.region[0].sum()), "seconds": seconds, "error": None,
           **measure(config.metrics, explainer.model, x, exp, reference=reference, truth=d.truth,
                     scoring=config.scoring)}
    overlay = Overlay(x, exp.region[0], f"{exp.method} · layer {exp.layer} · {name}") if config.overlays else None
    return Record(key, row, exp.map[0], exp.layer_map[0], attrs, d.affine, overlay)
