"""Computing a batch's records: a group of decoded items → one forward pass per image shape →
every target × method × layer explained (see :mod:`.runner` for the groups and target slots).
Writes nothing: the records go to :func:`.runner.write`, here or from a Ray actor."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ... import Explainer, Explanation, LoadedModel, SegcamError, Target, regions
from ...core import INPUT, Forward, Logits, resolve_targets
from ...methods import METHODS
from .config import BatchConfig
from .decode import Decoded
from .metrics import Overlay, measure, reference_labels
from .targets import targets_for


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


Result = tuple[Sequence[Record], int, str | None]  # records, explanations skipped as done, the item's name at its end


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
    truths = [None if d.truth is None else d.truth.to(fwd.predicted.device) for d, _ in members]
    found = [targets_for(config.spec(), fwd.predicted[b], truths[b], d.item.targets, explainer.class_names)
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
           **measure(config.metrics, explainer.model, x, exp, reference=reference,
                     truth=None if d.truth is None else d.truth.to(exp.map.device), scoring=config.scoring)}
    region = exp.region[0].cpu()
    overlay = Overlay(x, region, f"{exp.method} · layer {exp.layer} · {name}") if config.overlays else None
    return Record(key, row, exp.map[0].cpu(), exp.layer_map[0].cpu(), attrs, d.affine, overlay)
