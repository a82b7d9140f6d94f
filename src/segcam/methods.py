"""CAM methods: how activations ``A`` and gradients ``G = dS/dA`` become a map.

Every gradient CAM here is a weighted sum over channels ``k`` of the activation maps::

    L = ReLU( sum_k  W_k ⊙ A_k )

and a method only decides the weights ``W_k`` (same shape as ``A_k`` or broadcastable):

* ``seg-grad-cam`` (Vinogradova et al., 2020): ``W_k = mean_{u} G_k(u)``, one number per channel.
* ``seg-xres-cam`` (Hasany et al., 2023): ``W_k = Up[Pool_{h×w}(G_k)]``, the gradient max- or
  mean-pooled in h×w windows and repeated back over each window.  A 1×1 window is HiResCAM;
  a window covering the whole map with mean pooling is Seg-Grad-CAM.
* ``seg-hires-cam`` (Draelos & Carin, 2020): ``W_k = G_k``.

To add a method, subclass :class:`CamMethod`, implement :meth:`CamMethod.weights`, declare its
options as dataclass fields and decorate it with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import SegcamError

METHODS: dict[str, type["CamMethod"]] = {}


def register(name: str):
    """Class decorator adding a method to :data:`METHODS` under ``name``."""
    def add(cls: type[CamMethod]) -> type[CamMethod]:
        cls.name = name
        METHODS[name] = cls
        return cls
    return add


def get_method(name: str, options: dict[str, Any]) -> "CamMethod":
    """Instantiate method ``name`` with ``options``, with clear errors for typos."""
    if name not in METHODS:
        raise SegcamError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}.")
    cls = METHODS[name]
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no options"
        raise SegcamError(f"method {name!r} does not take {', '.join(unknown)}; it takes {takes}.")
    return cls(**options)


@dataclass(frozen=True)
class CamMethod:
    """Base class: ``__call__(A, G)`` returns the signed map ``sum_k weights(A, G)_k * A_k``.

    ``A`` has shape ``(B, K, *s)``; ``G`` has shape ``(*lead, B, K, *s)`` where ``lead`` indexes
    several targets explained at once.  The result has shape ``(*lead, B, *s)``.
    """

    name: ClassVar[str] = ""
    uses_input: ClassVar[bool] = False  # True: explains the input image, not a layer
    needs_scores: ClassVar[bool] = False  # True: weights come from masked forward passes

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, activation: Tensor, gradient: Tensor) -> Tensor:
        channel_axis = -(activation.ndim - 1)
        return (self.weights(activation, gradient) * activation).sum(channel_axis)


@register("seg-grad-cam")
@dataclass(frozen=True)
class SegGradCAM(CamMethod):
    """``W_k = (1/N) sum_u dS/dA_k(u)``: Grad-CAM with the region score ``S``."""

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        spatial = tuple(range(-(activation.ndim - 2), 0))
        return gradient.mean(dim=spatial, keepdim=True)


@register("seg-hires-cam")
@dataclass(frozen=True)
class SegHiResCAM(CamMethod):
    """``W_k(u) = dS/dA_k(u)``: HiResCAM, the gradient itself (Seg-XRes-CAM with a 1×1 window)."""

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
    ops = {("max", 2): F.max_pool2d, ("max", 3): F.max_pool3d,
           ("mean", 2): F.avg_pool2d, ("mean", 3): F.avg_pool3d}
    pooled = ops[pool, len(window)](flat, window, stride=window, ceil_mode=True)
    for axis, (w, s) in enumerate(zip(window, spatial), start=2):
        pooled = pooled.repeat_interleave(w, dim=axis).narrow(axis, 0, s)
    return pooled.reshape(gradient.shape)


@register("seg-xres-cam")
@dataclass(frozen=True)
class SegXResCAM(CamMethod):
    """``W_k = Up[Pool_{h×w}(dS/dA_k)]`` with ``pool`` in {"max", "mean"}.

    ``window`` is an int (same on every axis), a tuple ``(h, w)`` / ``(d, h, w)``, or ``None``
    for the whole map.
    """

    window: int | tuple[int, ...] | None = 2
    pool: str = "max"

    def __post_init__(self) -> None:
        if isinstance(self.window, list):
            object.__setattr__(self, "window", tuple(self.window))
        if self.pool not in ("max", "mean"):
            raise SegcamError(f"pool must be 'max' or 'mean', got {self.pool!r}.")
        sizes = (self.window,) if isinstance(self.window, int) else (self.window or ())
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in sizes):
            raise SegcamError(
                f"window must be a positive int, a tuple of positive ints or None, got {self.window!r}."
            )

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        dims = activation.ndim - 2
        if self.window is None:
            window = tuple(activation.shape[2:])
        elif isinstance(self.window, int):
            window = (self.window,) * dims
        else:
            window = tuple(self.window)
        if len(window) != dims:
            raise SegcamError(
                f"window {self.window} has {len(window)} sizes but the layer's map is {dims}-D."
            )
        return window_pool(gradient, window, self.pool)


@register("layer-cam")
@dataclass(frozen=True)
class LayerCAM(CamMethod):
    """``W_k(u) = ReLU(dS/dA_k(u))``: only positive gradients weigh each location (Jiang et al.,
    LayerCAM, IEEE TIP 2021)."""

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        return gradient.clamp_min(0)


@register("grad-cam++")
@dataclass(frozen=True)
class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018) with the usual closed form for an exponential
    score, in which higher derivatives are powers of the gradient ``G``::

        alpha_k(u) = G_k(u)² / (2 G_k(u)² + sum_v A_k(v) G_k(u)³)      (0 where the divisor is 0)
        W_k        = sum_u alpha_k(u) ReLU(G_k(u))                    (one number per channel)
    """

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        spatial = tuple(range(-(activation.ndim - 2), 0))
        g2 = gradient.pow(2)
        divisor = 2 * g2 + activation.sum(dim=spatial, keepdim=True) * gradient.pow(3)
        alpha = torch.where(divisor != 0, g2 / torch.where(divisor != 0, divisor, 1), 0)
        return (alpha * gradient.clamp_min(0)).sum(dim=spatial, keepdim=True)


@register("saliency")
@dataclass(frozen=True)
class Saliency(CamMethod):
    """Input-gradient saliency (Simonyan et al., ICLR workshop 2014): ``L(u) = max_k |dS/dx_k(u)|``
    over the input channels ``k``.  It explains the image itself, so it takes ``layer=None``."""

    uses_input: ClassVar[bool] = True

    def __call__(self, activation: Tensor, gradient: Tensor) -> Tensor:
        return gradient.abs().amax(dim=-(activation.ndim - 1))


@register("score-cam")
@dataclass(frozen=True)
class ScoreCAM(CamMethod):
    """Score-CAM (Wang et al., CVPR workshops 2020) for a region score: no gradients.

    Each channel's map ``A_k``, upsampled and scaled to [0, 1] (``H_k``), masks the image; the
    model's mean class-``c`` logit over the region for ``x ⊙ H_k`` gives ``s_k``, and
    ``W_k = softmax_k(s_k)`` (the baseline's score in the paper's increase of confidence is the same
    for every channel, so it cancels in the softmax).  One forward pass per channel, in batches of
    ``batch_size`` (default 32).
    """

    needs_scores: ClassVar[bool] = True
    batch_size: int | None = None

    def weights(self, activation: Tensor, gradient: Tensor) -> Tensor:
        return gradient  # the engine passes the score weights in the gradient's place
