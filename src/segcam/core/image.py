"""Images in: check what the user gives and turn it into one ``(B, C, *S)`` float tensor.

An image is a tensor or array of shape ``(C, *S)`` or ``(B, C, *S)`` where ``S`` is ``(H, W)``
for 2-D models and ``(D, H, W)`` for 3-D ones, already normalised the way the model expects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ImageError


def as_batch(
    image: Any, spatial_dims: int | None, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, bool]:
    """Check ``image`` and return it as a ``(B, C, *S)`` tensor plus whether it had a batch axis.

    With ``spatial_dims=None`` a 3-axis input is read as ``(C, H, W)``, 4 axes as ``(B, C, H, W)``
    and 5 axes as ``(B, C, D, H, W)``.  The result is detached, on ``device``, of ``dtype``, and
    usable by autograd even if it was made under ``torch.inference_mode()``.
    """
    tensor = _as_tensor(image)
    if not tensor.is_floating_point():
        raise ImageError(
            f"the image has dtype {tensor.dtype}; convert it to float and apply your model's "
            "normalisation first (e.g. image.float() / 255)."
        )
    dims = spatial_dims or (3 if tensor.ndim == 5 else 2)
    if tensor.ndim == dims + 1:
        batched = False
        tensor = tensor.unsqueeze(0)
    elif tensor.ndim == dims + 2:
        batched = True
    else:
        layout = "(C, H, W) or (B, C, H, W)" if dims == 2 else "(C, D, H, W) or (B, C, D, H, W)"
        hint = " (add a channel axis: image[None])" if tensor.ndim == dims else ""
        raise ImageError(
            f"the image has shape {tuple(tensor.shape)} but this {dims}-D model takes {layout}{hint}."
        )
    if tensor.numel() == 0:
        raise ImageError(f"the image of shape {tuple(tensor.shape)} is empty.")
    tensor = tensor.detach().to(device=device, dtype=dtype)
    if tensor.is_inference():  # made under torch.inference_mode(): autograd cannot use it
        with torch.inference_mode(False):
            tensor = tensor.clone()
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        raise ImageError(
            f"the image has {bad} non-finite value(s) (NaN or inf); replace them, e.g. "
            "torch.nan_to_num(image)."
        )
    return tensor, batched


def _as_tensor(image: Any) -> Tensor:
    if isinstance(image, Tensor):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype == object:
            raise ImageError("the image is a numpy array of Python objects; pass a float array.")
        if image.dtype.kind not in "biuf":
            raise ImageError(f"the image is a numpy array of dtype {image.dtype}; pass a float array.")
        native = image.dtype.newbyteorder("=")  # torch refuses big-endian arrays
        return torch.from_numpy(np.ascontiguousarray(image).astype(native, copy=False))
    raise ImageError(
        f"the image must be a torch.Tensor or numpy.ndarray, got {type(image).__name__}; "
        "for a file use segcam.data.load_image(path)."
    )
