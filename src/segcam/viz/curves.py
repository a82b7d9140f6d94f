"""Plots of the evaluation suite: mean sufficiency, deletion and insertion curves per method,
and the cascading-randomisation curves of the sanity check.

``curves`` and ``steps`` are the long tables the benchmark writes (one dict per point), so the
plots can be redrawn from ``curves.csv`` / ``sanity.csv`` alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..checks import check_str, shown
from ..errors import SegcamError
from .figures import _output, _save

_PANELS = (("sufficiency", "share of the image kept", "Dice of the region's prediction", "sufficiency (masking sweep)"),
           ("deletion", "share of pixels removed", "mean class probability in the region", "deletion"),
           ("insertion", "share of pixels inserted", "mean class probability in the region", "insertion"))


def mean_curves(curves: Sequence[Mapping[str, Any]], layer: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``{curve: {method: (x, y)}}`` averaged point by point over the cases at ``layer``
    (input methods, layer ``"input"``, are always included)."""
    points: dict[tuple[str, str, int], list[tuple[float, float]]] = defaultdict(list)
    for p in curves:
        if p["layer"] in (layer, "input"):
            points[(p["curve"], p["method"], int(p["step"]))].append((float(p["x"]), float(p["y"])))
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for curve, method in sorted({(c, m) for c, m, _ in points}):
        steps = sorted(s for c, m, s in points if (c, m) == (curve, method))
        xy = np.array([np.mean(points[(curve, method, s)], axis=0) for s in steps])
        order = np.argsort(xy[:, 0], kind="stable")
        out[curve][method] = (xy[order, 0], xy[order, 1])
    return dict(out)


def save_curves(path: str | Path, curves: Sequence[Mapping[str, Any]], layer: str, title: str = "") -> None:
    """Three panels (sufficiency, deletion, insertion), one line per method, at ``layer``."""
    path, layer = _output(path), check_str(layer, "layer")
    if isinstance(curves, (str, bytes)) or not isinstance(curves, Sequence):
        raise SegcamError(f"curves must be a list of curve points, got {shown(curves)}.")
    means = mean_curves(curves, layer)
    if not means or not any(p.get("layer") == layer for p in curves):
        raise SegcamError(f"no curve points at layer {layer!r}; pass a layer the benchmark explained "
                          "(\"input\" for methods on the input only).")
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, len(_PANELS))
    for ax, (curve, xlabel, ylabel, name) in zip(axes, _PANELS):
        for method, (x, y) in means.get(curve, {}).items():
            ax.plot(x, y, marker="o", markersize=3, label=method)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=name, xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    if axes[-1].get_lines():
        axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or f"mean curves at layer {layer} (input methods at the input)")
    _save(fig, path, dpi=100)


def save_sanity(path: str | Path, steps: Sequence[Mapping[str, Any]], title: str = "") -> None:
    """Spearman of the randomised map with the trained one against the randomisation step, one
    line per method and layer (the mean over the images checked), the telling step (all layers
    above the explained one random) marked with a dot."""
    path = _output(path)
    values: dict[tuple[str, int], list[float]] = defaultdict(list)
    telling: dict[tuple[str, int], bool] = {}
    for s in steps:
        if s.get("test", "cascading") == "cascading":
            key = (f"{s['method']} @ {s['layer']}", int(s["step"]))
            values[key].append(float(s["spearman"]))
            telling[key] = telling.get(key, False) or bool(s["telling"])
    if not values:
        raise SegcamError("no cascading-randomisation steps to plot; run the sanity check first.")
    lines: dict[str, list[tuple[int, float, bool]]] = defaultdict(list)
    for (label, step), rhos in sorted(values.items()):
        lines[label].append((step, float(np.mean(rhos)), telling[(label, step)]))
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    for label, points in sorted(lines.items()):
        x, y = [p[0] for p in points], [p[1] for p in points]
        line = ax.plot(x, y, alpha=0.8, label=label)[0]
        ax.plot([p[0] for p in points if p[2]], [p[1] for p in points if p[2]], "o", color=line.get_color())
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="randomisation step (from the logits down)", ylabel="Spearman with the trained model's map",
           ylim=(-1, 1.02), title=title or "cascading randomisation (dot: every layer above the explained one random)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    _save(fig, path, dpi=100)
