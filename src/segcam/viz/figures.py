"""Figures written to files: an overlay with its region, rows of heatmaps, grids, a scene gallery.

Figures are built with matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`):
no pyplot, no backend switch, no global figure list, so calls from several threads at once
each write their own file.  3-D inputs are shown as the slice through the middle of the region
(:func:`~segcam.viz.overlay.centre_slice`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ..checks import check_int, check_names, check_path, check_str, shown
from ..data.scenes import Scene
from ..errors import SegcamError
from .overlay import HEATMAP_CMAP, as_numpy, class_colormap, display_image, overlay, to_2d

EVIDENCE_COLOURS = ("cyan", "yellow", "white", "lime")


@dataclass
class Row:
    """One row of a figure: an image, its labels, the region and heatmaps side by side.

    ``truth`` (optional) is drawn with the ``evidence`` masks outlined (cue, bias tile, ...);
    ``heatmaps`` maps a column title to a ``(map, caption)`` pair.
    """

    image: Tensor | np.ndarray
    predicted: Tensor | np.ndarray
    region: Tensor | np.ndarray
    heatmaps: Mapping[str, tuple[np.ndarray, str]]
    title: str = ""
    truth: Tensor | np.ndarray | None = None
    evidence: Mapping[str, Tensor | np.ndarray] = field(default_factory=dict)


def save_overlay(
    path: str | Path, image: Tensor | np.ndarray, heatmap: Tensor | np.ndarray, region: Tensor | np.ndarray,
    title: str = "",
) -> None:
    """The image with the region outlined, next to the heatmap :func:`overlay` with a colour bar."""
    path, title = _output(path), check_str(title, "title", empty=True)
    img, [heat], reg, z = to_2d(as_numpy(image, "image"), [as_numpy(heatmap, "heatmap")], _mask(region, "region"))
    fig, axes = _figure(1, 2, (9, 4.4))
    _show(axes[0, 0], img, reg, "image and region" + _slice(z))
    _show_overlay(axes[0, 1], img, heat, reg, "explanation")
    _colour_bar(fig, axes[0, 1], "relevance (1 = maximum)", fraction=0.046)
    if title:
        fig.suptitle(title)
    _save(fig, path, dpi=110)


def save_rows(path: str | Path, rows: Sequence[Row], n_classes: int, class_names: Sequence[str] | None = None) -> None:
    """A figure with one :class:`Row` per line — image, truth (if any rows have it) with the
    evidence outlined, prediction, region, heatmaps — and a legend of classes and colour scale."""
    path = _output(path)
    n_classes = check_int(n_classes, "n_classes", low=1)
    names = [f"class {i}" for i in range(n_classes)] if class_names is None else check_names(class_names, "class_names")
    if len(names) != n_classes:
        raise SegcamError(f"class_names has {len(names)} names but n_classes is {n_classes}; give one name per class.")
    if isinstance(rows, Row) or not isinstance(rows, Sequence) or not rows or not all(isinstance(r, Row) for r in rows):
        raise SegcamError(f"rows must be a non-empty list of Row, got {shown(rows)}.")
    has_truth = any(r.truth is not None for r in rows)
    n_cols = 3 + has_truth + max(len(r.heatmaps) for r in rows)
    fig, axes = _figure(len(rows), n_cols, (2.5 * n_cols, 2.75 * len(rows) + 0.6))
    cmap = class_colormap(n_classes)
    for ax_row, row in zip(axes, rows):
        _draw_row(iter(ax_row), row, cmap, has_truth)
    _class_legend(fig, cmap, names, ncol=min(n_classes, 6))
    _colour_bar(fig, axes[:, -1], "relevance")
    _save(fig, path, dpi=100)


def save_scene_gallery(path: str | Path, scenes: Sequence[Scene], class_names: Sequence[str]) -> None:
    """Synthetic scenes (top) and their labels with the evidence outlined (bottom): the cue in
    cyan, the bias tile in yellow, distractors in white.  3-D scenes are cut through their objects."""
    path, names = _output(path), check_names(class_names, "class_names")
    if isinstance(scenes, Scene) or not isinstance(scenes, Sequence) or not scenes \
            or not all(isinstance(s, Scene) for s in scenes):
        raise SegcamError(f"scenes must be a non-empty list of Scene (segcam.data.make_scene), got {shown(scenes)}.")
    fig, axes = _figure(2, len(scenes), (2.4 * len(scenes), 5.2))
    cmap = class_colormap(len(names))
    for col, scene in enumerate(scenes):
        masks = [scene.labels, scene.cue, scene.bias_tile, scene.distractors]
        img, [labels, *evidence], _, z = to_2d(as_numpy(scene.image), [as_numpy(m) for m in masks],
                                               _mask(scene.labels > 0, "labels"))
        _show(axes[0, col], img, None, f"scene {scene.index}" + _slice(z), fontsize=9)
        _show_labels(axes[1, col], labels, cmap, "")
        for mask, colour in zip(evidence, EVIDENCE_COLOURS):
            _outline(axes[1, col], mask.astype(bool), colour)
    _class_legend(fig, cmap, names, ncol=3)
    _save(fig, path, dpi=90)


def save_grid(
    path: str | Path, image: Tensor | np.ndarray, region: Tensor | np.ndarray,
    cells: Mapping[str, Mapping[str, np.ndarray]], title: str = "",
) -> None:
    """Heatmap overlays in a grid: ``cells[row][column]``; the first column is the image with the
    region.  Rows are layers; columns are checkpoints (or a single column).  Every row must have
    the same columns."""
    path, title = _output(path), check_str(title, "title", empty=True)
    if not isinstance(cells, Mapping) or not cells or not all(isinstance(c, Mapping) and c for c in cells.values()):
        raise SegcamError(f"cells must be a non-empty dict of non-empty dicts (row → column → map), "
                          f"got {shown(cells)}.")
    rows, cols = list(cells), list(next(iter(cells.values())))
    for row, line in cells.items():
        if list(line) != cols:
            raise SegcamError(f"row {row!r} has columns {list(line)} but the first row has {cols}; "
                              "give every row the same columns.")
    maps = [as_numpy(cells[r][c], f"cells[{r!r}][{c!r}]") for r in rows for c in cols]
    img, maps, reg, z = to_2d(as_numpy(image, "image"), maps, _mask(region, "region"))
    fig, axes = _figure(len(rows), len(cols) + 1, (2.3 * (len(cols) + 1), 2.3 * len(rows) + 0.5))
    for r, row in enumerate(rows):
        _show(axes[r, 0], img, reg, row, fontsize=8)
        for c, col in enumerate(cols, start=1):
            _show_overlay(axes[r, c], img, maps[r * len(cols) + c - 1], reg, col if r == 0 else "", fontsize=8)
    _colour_bar(fig, axes[:, -1], "relevance")
    if title or z is not None:
        fig.suptitle((title + _slice(z)).strip(), fontsize=9)
    _save(fig, path, dpi=90)


def _draw_row(axes: Any, row: Row, cmap: Colormap, has_truth: bool) -> None:
    """One :class:`Row` into the axes ``axes`` yields, left to right."""
    for name, value in (("heatmaps", row.heatmaps), ("evidence", row.evidence)):
        if not isinstance(value, Mapping):
            raise SegcamError(f"Row.{name} must be a dict keyed by column title or mask name, got {shown(value)}.")
    pairs = list(row.heatmaps.items())
    for label, pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[1], str)):
            raise SegcamError(f"Row.heatmaps[{label!r}] must be a (map, caption) pair, got {shown(pair)}.")
    masks = [as_numpy(row.predicted, "Row.predicted")]
    masks += [] if row.truth is None else [as_numpy(row.truth, "Row.truth")]
    masks += [as_numpy(m, f"Row.evidence[{k!r}]").astype(bool) for k, m in row.evidence.items()]
    maps = [as_numpy(m, f"Row.heatmaps[{k!r}]") for k, (m, _) in pairs]
    img, cut, reg, z = to_2d(as_numpy(row.image, "Row.image"), maps + masks, _mask(row.region, "Row.region"))
    maps, predicted, rest = cut[: len(maps)], cut[len(maps)], cut[len(maps) + 1:]
    _show(next(axes), img, None, row.title + _slice(z), fontsize=9)
    if has_truth:
        ax = next(axes)
        if row.truth is not None:
            names = ", ".join(f"{n} ({c})" for n, c in zip(row.evidence, EVIDENCE_COLOURS))
            _show_labels(ax, rest[0], cmap, "truth" + (f"\n{names}" if names else ""), fontsize=8)
            for mask, colour in zip(rest[1:], EVIDENCE_COLOURS):
                _outline(ax, mask, colour)
    _show_labels(next(axes), predicted, cmap, "prediction", fontsize=9)
    _show(next(axes), img, reg, "region", fontsize=9)
    for (label, (_, caption)), heat in zip(pairs, maps):
        _show_overlay(next(axes), img, heat, reg, label + (f"\n{caption}" if caption else ""), fontsize=8)


def _output(path: Any) -> Path:
    """A path to write a figure to: its folder exists, its suffix names a format matplotlib writes."""
    path = check_path(path, "path")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in formats:
        raise SegcamError(f"cannot write a figure as {path.suffix!r}; use one of "
                          f"{', '.join('.' + f for f in sorted(formats))} (e.g. .png).")
    if not path.parent.is_dir():
        raise SegcamError(f"the folder {str(path.parent)!r} does not exist; create it first.")
    return path


def _mask(region: Any, name: str) -> np.ndarray:
    return as_numpy(region, name).astype(bool)


def _slice(z: int | None) -> str:
    return "" if z is None else f" (slice {z})"


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure with constrained layout and a ``rows × cols`` array of axes, all without axis lines."""
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _show(ax: Axes, image: np.ndarray, region: np.ndarray | None, title: str, fontsize: float | None = None) -> None:
    """The :func:`display_image` of ``image`` with ``region`` (if any) outlined."""
    shown_image = display_image(image)
    ax.imshow(shown_image, cmap="gray" if shown_image.ndim == 2 else None)
    if region is not None:
        _outline(ax, region)
    ax.set_title(title, fontsize=fontsize)


def _show_overlay(ax: Axes, image: np.ndarray, heat: np.ndarray, region: np.ndarray, title: str,
                  fontsize: float | None = None) -> None:
    ax.imshow(overlay(image, heat))
    _outline(ax, region)
    ax.set_title(title, fontsize=fontsize)


def _show_labels(ax: Axes, labels: np.ndarray, cmap: Colormap, title: str, fontsize: float | None = None) -> None:
    """Class labels in ``cmap``'s colours, one colour per integer ``0 .. cmap.N - 1``."""
    ax.imshow(labels, cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize)


def _outline(ax: Axes, region: np.ndarray, color: str = "cyan") -> None:
    """The region's contour; a region of at most 4 pixels is ringed instead (a contour would vanish)."""
    if region.all() or not region.any():
        return
    if region.sum() <= 4:
        ys, xs = np.nonzero(region)
        ax.scatter(xs, ys, s=60, facecolors="none", edgecolors=color, linewidths=2)
    else:
        ax.contour(region.astype(float), levels=[0.5], colors=[color], linewidths=1.5)


def _colour_bar(fig: Figure, axes: Any, label: str, fraction: float = 0.05) -> None:
    """The heatmap colour scale, 0 to 1, beside ``axes``."""
    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=HEATMAP_CMAP)
    fig.colorbar(mappable, ax=axes, fraction=fraction, pad=0.02, label=label)


def _class_legend(fig: Figure, cmap: Colormap, names: Sequence[str], ncol: int) -> None:
    handles = [Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(names))]
    fig.legend(handles, names, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def _save(fig: Figure, path: Path, dpi: int) -> None:
    fig.savefig(path, dpi=dpi, format=path.suffix[1:].lower() or "png")
