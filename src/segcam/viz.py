"""Pictures of explanations: overlays with a perceptually uniform colormap and a legend.

3-D inputs are shown as the axial slice through the centre of the explained region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def save_panel(
    path: str | Path,
    image: Tensor | np.ndarray,
    predicted: Tensor | np.ndarray,
    region: Tensor | np.ndarray,
    heatmaps: Mapping[str, np.ndarray],
    n_classes: int,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> None:
    """Image, prediction, region and one heatmap per entry, side by side, with legends."""
    img = _numpy(image)
    pred = _numpy(predicted)
    reg = _numpy(region).astype(bool)
    img, maps, reg, z = to_2d(img, [np.asarray(m) for m in heatmaps.values()] + [pred], reg)
    pred = maps.pop()
    n = 3 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=(3.1 * n, 3.6), constrained_layout=True)
    shown = display_image(img)
    axes[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    axes[0].set_title("image" + ("" if z is None else f" (slice {z})"))
    cmap = class_colormap(n_classes)
    axes[1].imshow(pred, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, interpolation="nearest")
    axes[1].set_title("prediction")
    names = class_names or [f"class {i}" for i in range(n_classes)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(n_classes)]
    axes[1].legend(handles, names, loc="lower center", bbox_to_anchor=(0.5, -0.32), ncol=2,
                   fontsize=7, frameon=False)
    axes[2].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    _outline(axes[2], reg)
    axes[2].set_title("region")
    for ax, (label, heat) in zip(axes[3:], zip(heatmaps, maps)):
        ax.imshow(overlay(img, heat))
        _outline(ax, reg)
        ax.set_title(label, fontsize=9)
    mappable = plt.cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=HEATMAP_CMAP)
    fig.colorbar(mappable, ax=axes[-1], fraction=0.046, pad=0.02, label="relevance")
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
