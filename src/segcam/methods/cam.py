"""Gradient CAMs: a weighted sum of the layer's activation maps.

Every method here computes, from the activation ``A`` and the gradient ``G = dS/dA`` of the
region score, ::

    L = sum_k  W_k ⊙ A_k            (the engine then applies ReLU and normalises)

and only decides the weights ``W_k`` (same shape as ``A_k``, or one number per channel):

* ``seg-grad-cam`` (Vinogradova et al., 2020): ``W_k = mean_u G_k(u)``.
* ``seg-xres-cam`` (Hasany et al., 2023): ``W_k = Up[Pool_{h×w}(G_k)]``, the gradient max- or
  mean-pooled in h×w windows and repeated back over each window.  A 1×1 window is HiResCAM;
  a window covering the whole map with mean pooling is Seg-Grad-CAM.
* ``seg-hires-cam`` (Draelos & Carin, 2020): ``W_k = G_k``.
* ``layer-cam`` (Jiang et al., 2021): ``W_k = ReLU(G_k)``.
* ``grad-cam++`` (Chattopadhay et al., 2018): ``W_k = sum_u alpha_k(u) ReLU(G_k(u))``.

A new CAM subclasses :class:`CamMethod`, implements :meth:`CamMethod.weights` and registers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.context import Context
from ..errors import MethodError
from ..spatial import AVG_POOL, MAX_POOL
from .base import Method, register
from .options import Choice, Window, option


@dataclass(frozen=True)
class CamMethod(Method):
    """A CAM: ``L = sum_k weights(A, G)_k ⊙ A_k`` over the channels ``k`` of the layer.

    ``A`` is ``(B, K, *s)`` and ``G`` is ``(T, B, K, *s)`` (one gradient per target); the weights
    must broadcast to ``G``.
    """

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        raise NotImplementedError

    def explain(self, ctx: Context, layer: str) -> Tensor:
        activation, gradient = ctx.activation(layer), ctx.gradient(layer)
        channels = -(activation.ndim - 1)
        return (self.weights(activation, gradient) * activation).sum(channels)


def _spatial_axes(activation: Tensor) -> tuple[int, ...]:
    return tuple(range(-(activation.ndim - 2), 0))


@register("seg-grad-cam")
class SegGradCAM(CamMethod):
    """Seg-Grad-CAM: W_k = mean over the map of dS/dA_k (one weight per channel)."""

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        return gradient.mean(dim=_spatial_axes(activation), keepdim=True)


@register("seg-hires-cam")
class SegHiResCAM(CamMethod):
    """HiResCAM: W_k(u) = dS/dA_k(u), the gradient itself (Seg-XRes-CAM with a 1×1 window)."""

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        return gradient


def window_pool(gradient: Tensor, window: tuple[int, ...], pool: str) -> Tensor:
    """Pool ``gradient (..., K, *s)`` in non-overlapping windows and repeat back to ``*s``.

    Windows tile the map from the origin; where a size is not a multiple of the window the
    last window is smaller and is pooled over its own cells only (no zero padding).
    """
    spatial = gradient.shape[-len(window):]
    window = tuple(min(w, s) for w, s in zip(window, spatial))
    if all(w == 1 for w in window):
        return gradient
    lead = gradient.shape[: -len(window)]
    flat = gradient.reshape(-1, lead[-1], *spatial)
    ops = MAX_POOL if pool == "max" else AVG_POOL
    pooled = ops[len(window)](flat, window, stride=window, ceil_mode=True)
    for axis, (w, s) in enumerate(zip(window, spatial), start=2):
        pooled = pooled.repeat_interleave(w, dim=axis).narrow(axis, 0, s)
    return pooled.reshape(gradient.shape)


@register("seg-xres-cam")
class SegXResCAM(CamMethod):
    """Seg-XRes-CAM: W_k = Up[Pool_{h×w}(dS/dA_k)], the gradient pooled in windows."""

    window: int | tuple[int, ...] | None = option(
        2, Window(), "window size in the layer's cells")
    pool: str = option("max", Choice(("max", "mean")), "how each window's gradients are pooled")

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        dims = activation.ndim - 2
        if self.window is None:
            window = tuple(activation.shape[2:])
        elif isinstance(self.window, int):
            window = (self.window,) * dims
        else:
            window = tuple(self.window)
        if len(window) != dims:
            raise MethodError(f"window {self.window} has {len(window)} sizes but the layer's map is {dims}-D.")
        return window_pool(gradient, window, self.pool)


@register("layer-cam")
class LayerCAM(CamMethod):
    """LayerCAM: W_k(u) = ReLU(dS/dA_k(u)), only positive gradients weigh each location."""

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        return gradient.clamp_min(0)


@register("grad-cam++")
class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++: W_k = sum_u alpha_k(u) ReLU(G_k(u)), alpha from the closed form.

    With the usual closed form for an exponential score, in which higher derivatives are powers
    of the gradient ``G``::

        alpha_k(u) = G_k(u)² / (2 G_k(u)² + sum_v A_k(v) G_k(u)³)      (0 where the divisor is 0)
    """

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        spatial = _spatial_axes(activation)
        g2 = gradient.pow(2)
        divisor = 2 * g2 + activation.sum(dim=spatial, keepdim=True) * gradient.pow(3)
        alpha = torch.where(divisor != 0, g2 / torch.where(divisor != 0, divisor, 1), 0)
        return (alpha * gradient.clamp_min(0)).sum(dim=spatial, keepdim=True)
