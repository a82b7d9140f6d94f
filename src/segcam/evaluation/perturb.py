"""Running a model on many modified copies of one image: batched forwards, keep masks, masked images.

The perturbation tests (:mod:`~segcam.evaluation.masking`, :mod:`~segcam.evaluation.faithfulness`)
show the model copies of an image in which some pixels are replaced by a baseline ``b``::

    x_keep = x ⊙ K + b ⊙ (1 - K)          K: a boolean keep mask over the image's pixels

:func:`measure_batches` runs such copies chunk by chunk under segcam's guard and keeps only what
a caller measures on each chunk's logits, so a long sweep never holds every image or every logit
map at once.  Baselines are RISE's (:func:`segcam.methods.rise.baseline_image`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_float, check_int, shown
from ..core.context import batch_size_for
from ..core.logits import Logits, logits_at_input_size, read_logits
from ..core.model import call_model, device_and_dtype, guarded
from ..errors import ImageError, ModelError, SegcamError
from ..methods.rise import baseline_image
from ..spatial import MAX_POOL

BASELINES = ("mean", "zero", "blur")

Measured = TypeVar("Measured")


def measure_batches(
    model: nn.Module,
    count: int,
    make: Callable[[int, int], Tensor],
    measure: Callable[[Logits], Measured],
    batch: int,
) -> list[Measured]:
    """``[measure(logits of make(start, stop)) for each chunk]`` over images ``0 .. count - 1``.

    ``make(start, stop)`` builds images ``start .. stop - 1`` as ``(stop - start, C, *S)``;
    chunks hold at most ``batch`` images.  Everything runs inside one :func:`guarded` block
    without autograd, so the model is restored however a chunk ends.
    """
    device, dtype = device_and_dtype(model)
    with guarded(model), torch.no_grad():
        return [measure(_predict(model, make(start, min(start + batch, count)).to(device, dtype)))
                for start in range(0, count, batch)]


def _predict(model: nn.Module, x: Tensor) -> Logits:
    logits = logits_at_input_size(read_logits(call_model(model, x)), x)
    if not bool(torch.isfinite(logits.values).all()):
        raise ModelError(
            f"the model produced non-finite logits (NaN or inf) on a modified image of shape {tuple(x.shape[1:])}; "
            "check its weights and that the baseline (mean, zero, blur) stays in the range its inputs are "
            "normalised to, or try another baseline."
        )
    return logits


def batch_size(batch: int | None, image: Tensor) -> int:
    """``batch`` checked, or :func:`segcam.core.batch_size_for` of ``image (C, *S)`` when ``None``."""
    return batch_size_for(image) if batch is None else check_int(batch, "batch", low=1)


def predict_batches(model: nn.Module, images: Tensor, batch: int | None = None) -> Logits:
    """Logits ``(N, classes, *S)`` of ``images (N, C, *S)`` at the input's size, ``batch`` at a time.

    The model runs under segcam's guard without autograd; its output may be any form
    :func:`segcam.core.read_logits` reads.  Non-finite logits are a :class:`ModelError`.
    """
    if not isinstance(model, nn.Module):
        raise SegcamError(f"model must be a torch.nn.Module, got {shown(model)}.")
    if not isinstance(images, Tensor) or images.ndim not in (4, 5) or not images.is_floating_point():
        raise ImageError(
            f"images must be a float tensor (N, C, H, W) or (N, C, D, H, W), got {_described(images)}; "
            "stack the modified copies of one image along the first axis."
        )
    if images.shape[0] == 0:
        raise ImageError("images holds no image (its first axis is empty).")
    step = batch_size(batch, images[0])
    chunks = measure_batches(model, images.shape[0], lambda a, b: images[a:b], lambda lg: lg.values, step)
    return Logits(torch.cat(chunks))


def keep_mask(heatmap: Tensor, threshold: float, dilation: int = 0) -> Tensor:
    """Boolean ``(*S)`` mask of the pixels a map keeps: ``h >= threshold``, grown by ``dilation``.

    Dilation is a binary dilation by a square (cube in 3-D) of side ``2·dilation + 1``: a pixel is
    kept when any pixel within ``dilation`` steps along every axis is.  It runs as one max-pool
    per axis (the square is separable), clipped at the image's borders.
    """
    if not isinstance(heatmap, Tensor) or heatmap.ndim not in (2, 3) or heatmap.is_complex():
        raise SegcamError(f"heatmap must be a real 2-D or 3-D tensor (*S), got {_described(heatmap)}.")
    threshold = check_float(threshold, "threshold", low=0, high=1, open_low=True)
    dilation = check_int(dilation, "dilation", low=0)
    keep = (heatmap >= threshold).float()[None, None]
    dims = heatmap.ndim
    for axis in range(dims if dilation else 0):
        kernel = tuple(2 * dilation + 1 if a == axis else 1 for a in range(dims))
        padding = tuple(dilation if a == axis else 0 for a in range(dims))
        keep = MAX_POOL[dims](keep, kernel, stride=1, padding=padding)
    return keep[0, 0] > 0


def masked_images(image: Tensor, keeps: Tensor, baseline: str = "mean") -> Tensor:
    """``(N, C, *S)``: ``image (C, *S)`` where ``keeps (N, *S)`` is true, its baseline elsewhere.

    ``baseline`` is ``"mean"`` (the per-channel mean), ``"zero"`` or ``"blur"`` (a box blur), as in
    :func:`segcam.methods.rise.baseline_image`.
    """
    baseline = check_choice(baseline, "baseline", BASELINES)
    if not isinstance(image, Tensor) or image.ndim not in (3, 4) or not image.is_floating_point():
        raise ImageError(f"image must be a float tensor (C, *S) of one image, got {_described(image)}.")
    if not isinstance(keeps, Tensor) or keeps.dtype != torch.bool or tuple(keeps.shape[1:]) != tuple(image.shape[1:]):
        raise SegcamError(
            f"keeps must be boolean masks (N, *S) with S = {tuple(image.shape[1:])}, got {_described(keeps)}; "
            "make them with keep_mask(heatmap, threshold)[None]."
        )
    return torch.where(keeps[:, None].to(image.device), image, baseline_image(image, baseline))


def _described(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return shown(value)
