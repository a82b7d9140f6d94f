"""Computing a batch's records: a group of decoded items → one forward pass per image shape →
every target × method × layer explained (see :mod:`.runner` for the groups and target slots).
Writes nothing: the records go to :func:`.runner.write`, here or from a Ray actor."""

from __future__ import annotations

import json
import re
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
from .metrics import Overlay, at_size, measure, reference_labels
from .targets import check_classes, targets_for

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass
class Record:
    """One finished explanation (``map`` set), one failed item (``row["error"]`` set) or one item
    without targets (neither), as computed by :func:`explain_group` wherever the model lives (here,
    or a Ray actor) and written by :func:`.runner.write` in the run's one writing process."""

    key: str
    row: dict[str, Any]
    map: Tensor | None = None
    layer_map: Tensor | None = None
    affine: Any = None
    overlay: Overlay | None = None
    grid: tuple[int, ...] | None = None  # a NIfTI input's own spatial shape (its map is written at it)


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
    return METHODS[method].gradients and not METHODS[method].on_input


def _failed(d: Decoded, error: SegcamError) -> tuple[list[Record], int]:
    key = f"{_prefix(d)}/error"
    return [Record(key, {"index": d.item.index, "image": str(d.item.image), "key": key, "error": str(error)})], 0


def _nothing(d: Decoded) -> Record:
    """The row of an item without targets (e.g. nothing but background predicted): it is done."""
    key = f"{_prefix(d)}/none"
    return Record(key, {"index": d.item.index, "image": str(d.item.image), "key": key, "error": None})


def check_settings(explainer: Explainer, config: BatchConfig) -> None:
    """What can be checked against the model before any item: the layers and the target classes."""
    for layer in config.layers or ():
        explainer.resolve_layer(layer)
    check_classes(config.spec(), explainer.class_names)


def _explain(members: Sequence[tuple[Decoded, Tensor]], explainer: Explainer, config: BatchConfig,
             done: set[str]) -> list[tuple[list[Record], int]]:
    """Records and skipped counts of ``members`` (items with images of one shape) from one forward pass."""
    x = torch.stack([x for _, x in members])
    names = [explainer.resolve_layer(n) for n in config.layers] if config.layers else [explainer.default_layer(x)]
    fwd = explainer.forward(x, layer=names)  # one kept forward: targets, layer methods, metrics
    shape = tuple(fwd.predicted.shape[1:])  # the model's grid: a resizing preprocess changed the image's
    truths = [None if d.truth is None else at_size(d.truth, shape).to(fwd.predicted.device) for d, _ in members]
    found = [targets_for(config.spec(), fwd.predicted[b], truths[b], d.item.targets, explainer.class_names,
                         n_classes=fwd.logits.n_classes) for b, (d, _) in enumerate(members)]
    records: list[list[Record]] = [[] if pairs else [_nothing(d)] for (d, _), pairs in zip(members, found)]
    skipped = [0] * len(members)
    for method in config.methods:
        source, layers, layer_names = (x, None, [INPUT]) if METHODS[method].on_input else (fwd, names, names)
        todo = []
        for b, ((d, _), pairs) in enumerate(zip(members, found)):
            done_here = [sum(key_of(d, k, method, n) in done for n in layer_names) for k, _ in pairs]
            skipped[b] += sum(done_here)
            todo.append([pair for pair, n in zip(pairs, done_here) if n < len(layer_names)])
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
                    if key_of(d, tkey, method, layer) in done:
                        continue  # explained at this layer by an earlier run (counted in skipped)
                    exp = _one(exps[where[b, j], layer], b, target, len(members) > 1)
                    records[b].append(_record(d, x[b], truths[b], exp, tkey, target, seconds, reference, explainer,
                                              config))
    return list(zip(records, skipped))


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


def key_of(d: Decoded, target_key: str, method: str, layer: str) -> str:
    """``item/target/method/layer``: names made key-safe (a character other than a letter, digit,
    '.', '_', '+' or '-' becomes '_'), ``input`` for the input's pixels (``<input>``)."""
    parts = (method, "input" if layer == INPUT else layer)
    return "/".join((_prefix(d), target_key, *(_UNSAFE.sub("_", p).lstrip(".") or "_" for p in parts)))


def _prefix(d: Decoded) -> str:
    return f"{d.item.index:06d}"


def _record(d: Decoded, x: Tensor, truth: Tensor | None, exp: Explanation, tkey: str, target: Target,
            seconds: float, reference: Tensor | None, explainer: Explainer, config: BatchConfig) -> Record:
    """The record of one explanation of item ``d`` (its preprocessed image ``x`` ``(C, *S)``, its
    ground truth at the model's grid and device)."""
    key = key_of(d, tkey, exp.method, exp.layer)
    name = exp.class_name or str(exp.cls)
    row = {"index": d.item.index, "image": str(d.item.image), "key": key, "target": tkey,
           "target_json": json.dumps(target.to_dict()), "class": exp.cls, "class_name": name, "method": exp.method,
           "options": json.dumps(exp.options, sort_keys=True), "layer": exp.layer, "score": float(exp.score[0]),
           "region_pixels": int(exp.region[0].sum()), "seconds": seconds, "error": None,
           **measure(config.metrics, explainer.model, x, exp, reference=reference, truth=truth,
                     scoring=config.scoring, known=d.evidence)}
    region = exp.region[0].cpu()
    overlay = Overlay(x, region, f"{exp.method} · layer {exp.layer} · {name}") if config.overlays else None
    grid = None if d.affine is None else tuple(d.image.shape[1:])
    return Record(key, row, exp.map[0].cpu(), exp.layer_map[0].cpu(), d.affine, overlay, grid)
