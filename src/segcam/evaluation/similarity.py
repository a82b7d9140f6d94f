"""How alike two maps of one shape are: rank correlation, linear correlation, structural similarity.

The sanity checks of Adebayo et al. (2018) compare an explanation of the trained model with one
of a randomised model by these numbers.  Maps are 2-D ``(H, W)`` or 3-D ``(D, H, W)`` tensors or
arrays; everything is computed in float64.

* :func:`spearman` — Pearson's r of the average ranks (Spearman's rho with ties averaged, so a
  plateau of zeros shared by both maps is one big tie, not agreement pixel by pixel).
* :func:`pearson` — ``r = sum((a - ā)(b - b̄)) / sqrt(sum((a - ā)²) · sum((b - b̄)²))``.
* :func:`ssim` — the mean structural similarity of Wang et al. (2004).

A constant map has no ranks and no variance to correlate: two constant maps score 1.0 when they
are equal and 0.0 otherwise; a constant map against a varying one scores 0.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..checks import check_float, shown
from ..errors import SegcamError

__all__ = ["pearson", "rankdata", "spearman", "ssim"]

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # an 11-pixel window
SSIM_K1, SSIM_K2 = 0.01, 0.03


def rankdata(x: Tensor) -> Tensor:
    """1-based ranks of the flat tensor ``x`` (float64); tied values share their average rank.

    A run of ``c`` equal values ending at sorted position ``e`` (1-based) gets ``e - (c - 1)/2``.

    >>> rankdata(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    if not isinstance(x, Tensor) or x.ndim != 1:
        raise SegcamError(f"rankdata takes a 1-D tensor, got {_described(x)}; pass x.flatten().")
    if not bool(torch.isfinite(x).all()):
        raise SegcamError("rankdata got non-finite values (NaN or inf); ranks need finite numbers.")
    values, order = torch.sort(x.double(), stable=True)
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    average = counts.cumsum(0).double() - (counts.double() - 1) / 2
    ranks = torch.empty_like(values)
    ranks[order] = average[group]
    return ranks


def pearson(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Pearson's r of the two maps' values (constant maps: see the module's convention)."""
    x, y = _pair(a, b)
    return _correlation(x.flatten(), y.flatten(), x, y)


def spearman(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks :func:`rankdata` of the two maps."""
    x, y = _pair(a, b)
    return _correlation(rankdata(x.flatten()), rankdata(y.flatten()), x, y)


def ssim(a: Tensor | np.ndarray, b: Tensor | np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al., 2004) of two 2-D or 3-D maps.

    With Gaussian-weighted local means ``μ``, variances ``σ²`` and covariance ``σ_ab`` (window
    σ = 1.5, truncated to 11 pixels, or to the largest odd width an axis holds)::

        SSIM = (2 μ_a μ_b + C1)(2 σ_ab + C2) / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2))

    with ``C1 = (0.01 L)²``, ``C2 = (0.03 L)²`` and ``L = data_range``, averaged over the
    positions where the window fits inside the map (no padding).  The window is separable, so it
    runs as one 1-D convolution per axis.
    """
    x, y = _pair(a, b)
    span = check_float(data_range, "data_range", low=0, open_low=True)
    c1, c2 = (SSIM_K1 * span) ** 2, (SSIM_K2 * span) ** 2
    stats = _local_means(torch.stack([x, y, x * x, y * y, x * y]))
    mu_x, mu_y, xx, yy, xy = stats.unbind(0)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(value.mean())


def gaussian_window(size: int) -> Tensor:
    """The normalised 1-D Gaussian (σ = 1.5) for an axis of ``size`` pixels: 11 taps, fewer
    (an odd number, at least 1) when the axis is shorter."""
    radius = min(SSIM_RADIUS, (size - 1) // 2)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return weights / weights.sum()


def _local_means(maps: Tensor) -> Tensor:
    """Gaussian-weighted means of each of ``maps (N, *S)`` over every window that fits."""
    dims = maps.ndim - 1
    conv = F.conv2d if dims == 2 else F.conv3d
    out = maps.unsqueeze(1)
    for axis, size in enumerate(maps.shape[1:]):
        shape = [1] * dims
        shape[axis] = -1
        out = conv(out, gaussian_window(size).reshape(1, 1, *shape))
    return out.squeeze(1)


def _correlation(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> float:
    """Pearson's r of flat ``x`` and ``y``; ``a`` and ``b`` are the maps, for constant ones."""
    flat_a, flat_b = bool((a == a.flatten()[0]).all()), bool((b == b.flatten()[0]).all())
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b and bool(torch.equal(a, b)) else 0.0
    dx, dy = x - x.mean(), y - y.mean()
    r = float((dx * dy).sum() / torch.sqrt((dx * dx).sum() * (dy * dy).sum()))
    return max(-1.0, min(1.0, r))


def _pair(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Both maps as float64 tensors on the CPU, checked: 2-D or 3-D, one shape, finite."""
    x, y = _as_map(a, "the first map"), _as_map(b, "the second map")
    if x.shape != y.shape:
        raise SegcamError(
            f"the maps have shapes {tuple(x.shape)} and {tuple(y.shape)}; compare maps of one image "
            "(resize one with segcam.spatial.resize_maps if they come from different sizes)."
        )
    return x, y


def _as_map(value: Any, name: str) -> Tensor:
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor) or value.dtype == torch.bool or value.is_complex():
        raise SegcamError(f"{name} must be a real tensor or array, got {_described(value)}.")
    if value.ndim not in (2, 3) or value.numel() == 0:
        raise SegcamError(
            f"{name} must be a 2-D (H, W) or 3-D (D, H, W) map with pixels, got shape {tuple(value.shape)}; "
            "pass one image's map, e.g. explanation.map[0]."
        )
    x = value.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise SegcamError(f"{name} has non-finite values (NaN or inf); compare finite maps.")
    return x


def _described(value: Any) -> str:
    if isinstance(value, (Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return shown(value)

