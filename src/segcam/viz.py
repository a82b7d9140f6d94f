"""Pictures of explanations: overlays with a perceptually uniform colormap and a legend.

3-D inputs are shown as the axial slice through the centre of the explained region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors  # noqa: E402
from torch import Tensor  # noqa: E402

HEATMAP_CMAP = "inferno"  # perceptually uniform, readable in grey


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def display_image(image: Tensor | np.ndarray) -> np.ndarray:
    """``(C, H, W)`` image → ``(H, W)`` grey or ``(H, W, 3)`` RGB in [0, 1], min-max stretched."""
    a = _numpy(image)
    a = a[0] if a.shape[0] != 3 else a.transpose(1, 2, 0)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def centre_slice(region: Tensor | np.ndarray) -> int:
    """Index of the first axis through the centre of mass of a 3-D boolean region."""
    r = _numpy(region)
    idx = np.nonzero(r.reshape(r.shape[0], -1).any(1))[0]
    return int(idx[len(idx) // 2]) if len(idx) else r.shape[0] // 2


def to_2d(image: np.ndarray, maps: Sequence[np.ndarray], region: np.ndarray):
    """Cut a 3-D case to its centre slice so everything can be drawn in 2-D."""
    if region.ndim == 2:
        return image, maps, region, None
    z = centre_slice(region)
    return image[:, z], [m[z] for m in maps], region[z], z


def overlay(image: Tensor | np.ndarray, heatmap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a [0, 1] heatmap (``HEATMAP_CMAP``) over a grey version of the image: ``(H, W, 3)``."""
    base = display_image(image)
    if base.ndim == 3:
        base = base.mean(axis=2)
    heat = plt.get_cmap(HEATMAP_CMAP)(np.clip(heatmap, 0, 1))[..., :3]
    return (1 - alpha) * base[..., None] + alpha * heat


def _outline(ax: plt.Axes, region: np.ndarray, color: str = "cyan") -> None:
    if region.all() or not region.any():
        return
    if region.sum() <= 4:  # single pixels would vanish in a contour: mark them
        ys, xs = np.nonzero(region)
        ax.scatter(xs, ys, s=60, facecolors="none", edgecolors=color, linewidths=2)
    else:
        ax.contour(region.astype(float), levels=[0.5], colors=[color], linewidths=1.5)


def class_colormap(n: int) -> colors.ListedColormap:
    """Distinct colours for ``n`` class labels."""
    base = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return colors.ListedColormap([base(i % base.N) for i in range(n)])


def save_overlay(
    path: str | Path,
    image: Tensor | np.ndarray,
    heatmap: np.ndarray,
    region: Tensor | np.ndarray,
    title: str = "",
) -> None:
    """Image with the region outlined, next to the heatmap overlay with a colour bar."""
    img, [heat], reg, z = to_2d(_numpy(image), [np.asarray(heatmap)], _numpy(region).astype(bool))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), constrained_layout=True)
    shown = display_image(img)
    axes[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    _outline(axes[0], reg)
    axes[0].set_title("image and region" + ("" if z is None else f" (slice {z})"))
    axes[1].imshow(overlay(img, heat))
    _outline(axes[1], reg)
    axes[1].set_title("explanation")
    mappable = plt.cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=HEATMAP_CMAP)
    fig.colorbar(mappable, ax=axes[1], fraction=0.046, pad=0.02, label="relevance (1 = maximum)")
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


EVIDENCE_COLOURS = ("cyan", "yellow", "white", "lime")


def save_rows(
    path: str | Path, rows: Sequence[Row], n_classes: int, class_names: Sequence[str] | None = None
) -> None:
    """A figure with one :class:`Row` per line and a legend of classes and colour scale."""
    has_truth = any(r.truth is not None for r in rows)
    n_cols = 3 + has_truth + max(len(r.heatmaps) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.5 * n_cols, 2.75 * len(rows) + 0.6),
                             squeeze=False, constrained_layout=True)
    cmap = class_colormap(n_classes)
    for ax_row, row in zip(axes, rows):
        maps = [np.asarray(m) for m, _ in row.heatmaps.values()]
        extra = [_numpy(row.predicted)] + ([_numpy(row.truth)] if row.truth is not None else [])
        extra += [_numpy(e).astype(bool) for e in row.evidence.values()]
        img, cut, reg, z = to_2d(_numpy(row.image), maps + extra, _numpy(row.region).astype(bool))
        maps, pred, rest = cut[: len(maps)], cut[len(maps)], cut[len(maps) + 1:]
        shown = display_image(img)
        col = iter(ax_row)
        ax = next(col)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.set_title(row.title + ("" if z is None else f" (slice {z})"), fontsize=9)
        if row.truth is not None:
            truth, evidence = rest[0], rest[1:]
            ax = next(col)
            ax.imshow(truth, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, interpolation="nearest")
            for mask, colour in zip(evidence, EVIDENCE_COLOURS):
                _outline(ax, mask, colour)
            names = ", ".join(f"{n} ({c})" for n, c in zip(row.evidence, EVIDENCE_COLOURS))
            ax.set_title("truth" + (f"\n{names}" if names else ""), fontsize=8)
        ax = next(col)
        ax.imshow(pred, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, interpolation="nearest")
        ax.set_title("prediction", fontsize=9)
        ax = next(col)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        _outline(ax, reg)
        ax.set_title("region", fontsize=9)
        for (label, (_, caption)), heat in zip(row.heatmaps.items(), maps):
            ax = next(col)
            ax.imshow(overlay(img, heat))
            _outline(ax, reg)
            ax.set_title(label + (f"\n{caption}" if caption else ""), fontsize=8)
        for ax in ax_row:
            ax.set_axis_off()
    names = class_names or [f"class {i}" for i in range(n_classes)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(n_classes)]
    fig.legend(handles, names, loc="outside lower center", ncol=min(n_classes, 6), fontsize=8,
               frameon=False)
    mappable = plt.cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=HEATMAP_CMAP)
    fig.colorbar(mappable, ax=axes[:, -1], fraction=0.05, pad=0.02, label="relevance")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_scene_gallery(path: str | Path, scenes: Sequence, class_names: Sequence[str]) -> None:
    """Synthetic scenes (top) and their labels with the evidence outlined (bottom): the cue in
    cyan, the bias tile in yellow, distractors in white."""
    fig, axes = plt.subplots(2, len(scenes), figsize=(2.4 * len(scenes), 5.2), squeeze=False,
                             constrained_layout=True)
    cmap = class_colormap(len(class_names))
    for col, scene in enumerate(scenes):
        axes[0, col].imshow(display_image(scene.image))
        axes[0, col].set_title(f"scene {scene.index}", fontsize=9)
        axes[1, col].imshow(_numpy(scene.labels), cmap=cmap, vmin=-0.5,
                            vmax=len(class_names) - 0.5, interpolation="nearest")
        for mask, colour in zip((scene.cue, scene.bias_tile, scene.distractors), EVIDENCE_COLOURS):
            _outline(axes[1, col], _numpy(mask).astype(bool), colour)
    for ax in axes.flat:
        ax.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(class_names))]
    fig.legend(handles, class_names, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_grid(
    path: str | Path,
    image: Tensor | np.ndarray,
    region: Tensor | np.ndarray,
    cells: Mapping[str, Mapping[str, np.ndarray]],
    title: str = "",
) -> None:
    """Heatmap overlays in a grid: ``cells[row][column]``; the first column is the image with
    the region. Rows are layers; columns are checkpoints (or a single column)."""
    rows = list(cells)
    cols = list(next(iter(cells.values())))
    fig, axes = plt.subplots(len(rows), len(cols) + 1, figsize=(2.3 * (len(cols) + 1), 2.3 * len(rows) + 0.5),
                             squeeze=False, constrained_layout=True)
    reg_all = _numpy(region).astype(bool)
    for r, row in enumerate(rows):
        maps = [np.asarray(cells[row][c]) for c in cols]
        img, maps, reg, z = to_2d(_numpy(image), maps, reg_all)
        shown = display_image(img)
        axes[r, 0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        _outline(axes[r, 0], reg)
        axes[r, 0].set_title(row, fontsize=8)
        for c, (col, heat) in enumerate(zip(cols, maps), start=1):
            axes[r, c].imshow(overlay(img, heat))
            _outline(axes[r, c], reg)
            if r == 0:
                axes[r, c].set_title(col, fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    mappable = plt.cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=HEATMAP_CMAP)
    fig.colorbar(mappable, ax=axes[:, -1], fraction=0.05, pad=0.02, label="relevance")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)
