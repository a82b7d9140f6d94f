"""``DIR/run.json``: what a batch folder holds, so that a re-run resumes only the same run.

A run's *settings* are everything that decides its rows and maps — the model (spec, weights,
classes, and the SHA-256 of a weights file named by path), targets, methods and their options, layers, map dtype, layer maps, metrics and their
scoring, the size limit — and its *items* are summed up as their count and a SHA-256 digest of
``index, image, mask, targets`` of each, in order.  :func:`check_run` writes them at the start of
a run; a later run into a folder that already holds rows must have the same settings and begin
with the same items (more may follow: items added at the end of a manifest are explained, the others skipped).
Anything else would silently mix two runs — rows of one image under another's index, maps made
with other options marked done — so it is refused with the difference and the fix.  How the
work is done (workers, group size, engine, CSV, overlays) may change between runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ... import LoadedModel, SegcamError
from ...data import Item
from .config import BatchConfig
from .table import done_keys

RUN = "run.json"


def settings_of(config: BatchConfig, model: str | LoadedModel, weights: str | None,
                num_classes: int | None) -> dict[str, Any]:
    """The JSON-ready settings that decide a run's outputs."""
    spec = config.spec()
    shown = model if isinstance(model, str) else f"a loaded {type(model.model).__name__}"
    files = [f for f in (model if isinstance(model, str) else None, weights) if f is not None and Path(f).is_file()]
    return json.loads(json.dumps({
        "model": shown, "weights": weights, "num_classes": num_classes,
        "model_files": {str(f): _digest(Path(f)) for f in files},
        "targets": dataclasses.asdict(spec), "methods": list(config.methods),
        "options": {m: dict(config.options.get(m, {})) for m in config.methods},
        "layers": None if config.layers is None else list(config.layers), "dtype": config.dtype,
        "layer_maps": config.layer_maps, "metrics": list(config.metrics),
        "scoring": dataclasses.asdict(config.scoring) if config.metrics else None, "max_pixels": config.max_pixels,
    }, default=str))


def _digest(path: Path) -> str:
    """SHA-256 of a weights file: the same path with other weights is another run."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_run(out: Path, settings: dict[str, Any], items: Iterable[Item]) -> int:
    """Refuse a run into ``out`` whose settings or first items differ from the run already
    there; then record this one (module docstring) and return its number of items."""
    path = out / RUN
    before = _read(path) if done_keys(out) else None  # a run that wrote no row yet mixes nothing: replaced
    count, digest, prefix = 0, hashlib.sha256(), None
    for item in items:
        digest.update(json.dumps([item.index, str(item.image), None if item.mask is None else str(item.mask),
                                  item.targets], default=str).encode() + b"\n")
        count += 1
        if before is not None and count == before["items"]:
            prefix = digest.hexdigest()  # the digest of as many items as the earlier run had
    if before is not None:
        changed = [k for k in sorted(set(settings) | set(before["settings"]))
                   if settings.get(k) != before["settings"].get(k)]
        if changed:
            k = changed[0]
            raise SegcamError(f"{str(out)!r} holds a run with other settings ({k}: {before['settings'].get(k)!r} "
                              f"then, {settings.get(k)!r} now); re-run it with its own settings to resume, or "
                              "give a new --out (or remove that folder) to start another run.")
        if prefix != before["digest"]:
            raise SegcamError(f"{str(out)!r} holds a run over other items (its first {before['items']} items are "
                              "not this input's first ones: files added in the middle of a folder renumber the "
                              "rest); give a new --out, or add new items at the end of a CSV manifest.")
    tmp = path.with_name(f".{RUN}.tmp")
    tmp.write_text(json.dumps({"settings": settings, "items": count, "digest": digest.hexdigest()}, indent=1))
    os.replace(tmp, path)
    return count


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text())
        if isinstance(found, dict) and {"settings", "items", "digest"} <= set(found):
            return found
    except (OSError, ValueError):
        pass
    raise SegcamError(f"{str(path)!r} is not a segcam run record; give a new --out, or remove that file if the "
                      "folder's outputs are yours to keep.")
