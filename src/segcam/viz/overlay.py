"""Arrays for display: images stretched to [0, 1], 3-D cases cut to one slice, heatmap overlays.

Everything here maps arrays to arrays (no figures, no global state), so it serves files,
notebooks and web pages alike.  Inputs may be torch tensors or numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from torch import Tensor

from ..checks import check_float, check_int, shown
from ..errors import ImageError, SegcamError

HEATMAP_CMAP = "inferno"  # perceptually uniform, readable in grey


def as_numpy(x: Any, name: str = "array") -> np.ndarray:
    """A tensor (detached, on the CPU, as float32) or an array of numbers, as a numpy array."""
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise SegcamError(f"{name} must be a tensor or array of numbers, got {shown(x)} of dtype {array.dtype}.")
    return array


def display_image(image: Tensor | np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image → ``(H, W, 3)`` RGB when ``C = 3``, else ``(H, W)`` grey from the
    first channel, min-max stretched: ``(a - min a) / (max a - min a)`` (all zeros when flat)."""
    a = as_numpy(image, "image")
    if a.ndim != 3 or 0 in a.shape:
        raise ImageError(f"display_image takes a (C, H, W) image, got shape {a.shape}; cut a volume "
                         "(C, D, H, W) to a slice first (see to_2d).")
    a = a[0] if a.shape[0] != 3 else a.transpose(1, 2, 0)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def centre_slice(region: Tensor | np.ndarray) -> int:
    """The slice (index along the first axis) through the middle of a 3-D region: the median of
    the slices the region touches; the middle slice of the volume when the region is empty."""
    r = as_numpy(region, "region").astype(bool)
    if r.ndim != 3 or 0 in r.shape:
        raise SegcamError(f"centre_slice takes a 3-D region (D, H, W), got shape {r.shape}.")
    touched = np.nonzero(r.reshape(r.shape[0], -1).any(1))[0]
    return int(touched[len(touched) // 2]) if len(touched) else r.shape[0] // 2


def to_2d(
    image: np.ndarray, maps: Sequence[np.ndarray], region: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, int | None]:
    """Cut a 3-D case to the slice :func:`centre_slice` picks so everything can be drawn in 2-D.

    ``image`` is ``(C, *S)``, each map and ``region`` are ``(*S)`` with ``S`` of 2 or 3 axes.
    Returns ``(image, maps, region, z)`` with ``z`` the slice, or None when already 2-D.
    """
    image, region = np.asarray(image), np.asarray(region)
    maps = [np.asarray(m) for m in maps]
    if region.ndim not in (2, 3):
        raise SegcamError(f"the region must be (H, W) or (D, H, W), got shape {region.shape}.")
    if image.ndim != region.ndim + 1 or image.shape[1:] != region.shape:
        raise SegcamError(f"the image of shape {image.shape} does not fit the region of shape {region.shape}; "
                          f"give a (C, {', '.join(map(str, region.shape))}) image.")
    for k, m in enumerate(maps):
        if m.shape != region.shape:
            raise SegcamError(f"map {k} has shape {m.shape} but the region has {region.shape}; "
                              "give maps of the image's spatial size.")
    if region.ndim == 2:
        return image, maps, region, None
    z = centre_slice(region)
    return image[:, z], [m[z] for m in maps], region[z], z


def overlay(image: Tensor | np.ndarray, heatmap: Tensor | np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a heatmap over a grey version of the image: ``(H, W, 3)`` in [0, 1].

    ``out = (1 - alpha) · g + alpha · cmap(clip(h, 0, 1))`` where ``g`` is the
    :func:`display_image` (RGB averaged to grey) and ``cmap`` is :data:`HEATMAP_CMAP` (RGB).
    """
    alpha = check_float(alpha, "alpha", low=0, high=1)
    base = display_image(image)
    heat = as_numpy(heatmap, "heatmap")
    if heat.shape != base.shape[:2]:
        raise SegcamError(f"the heatmap has shape {heat.shape} but the image is {base.shape[:2]}; "
                          "give a heatmap of the image's spatial size.")
    if not np.isfinite(heat).all():
        raise SegcamError("the heatmap has NaN or inf values; replace them first, e.g. numpy.nan_to_num(heatmap).")
    if base.ndim == 3:
        base = base.mean(axis=2)
    colours = matplotlib.colormaps[HEATMAP_CMAP](np.clip(heat, 0, 1))[..., :3]
    return (1 - alpha) * base[..., None] + alpha * colours


def class_colormap(n: int) -> ListedColormap:
    """``n`` distinct colours for class labels: ``tab10`` (``tab20`` beyond 10, repeating beyond 20)."""
    n = check_int(n, "n_classes", low=1)
    base = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return ListedColormap([base(i % base.N) for i in range(n)])
