"""Images in, logits out: validate what the user gives and read what the model returns.

An image is a tensor or array of shape ``(C, *S)`` or ``(B, C, *S)`` where ``S`` is ``(H, W)``
for 2-D models and ``(D, H, W)`` for 3-D ones.  A model may return a tensor ``(B, C, *S')``,
a dict with ``"out"`` (torchvision), an object with ``.logits`` (Hugging Face) or a tuple whose
first element is the logits.  Logits smaller than the image are resized to it, differentiably,
so that regions are always given in input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ImageError, ModelError

CONV_TYPES: dict[type[nn.Module], int] = {
    nn.Conv1d: 1,
    nn.Conv2d: 2,
    nn.Conv3d: 3,
    nn.ConvTranspose2d: 2,
    nn.ConvTranspose3d: 3,
}


def first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first registered convolution of ``model`` (a guess at its input layer), if any."""
    for name, module in model.named_modules():
        if type(module) in CONV_TYPES or isinstance(module, tuple(CONV_TYPES)):
            return name, module
    return None


def guess_spatial_dims(model: nn.Module) -> int | None:
    """2 or 3 from the model's first convolution; ``None`` when the model has none."""
    found = first_conv(model)
    if found is None:
        return None
    for cls, dims in CONV_TYPES.items():
        if isinstance(found[1], cls):
            return dims if dims in (2, 3) else None
    return None


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter or buffer (CPU float32 if none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def as_batch(
    image: Any, spatial_dims: int | None, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, bool]:
    """Check ``image`` and return it as a ``(B, C, *S)`` tensor plus whether it had a batch axis.

    With ``spatial_dims=None`` a 3-axis input is read as ``(C, H, W)``, 4 axes as ``(B, C, H, W)``
    and 5 axes as ``(B, C, D, H, W)``.
    """
    if isinstance(image, np.ndarray):
        if image.dtype == object:
            raise ImageError("the image is a numpy array of Python objects; pass a float array.")
        native = image.dtype.newbyteorder("=")  # torch refuses big-endian arrays
        tensor = torch.from_numpy(np.ascontiguousarray(image).astype(native, copy=False))
    elif isinstance(image, Tensor):
        tensor = image
    else:
        raise ImageError(
            f"the image must be a torch.Tensor or numpy.ndarray, got {type(image).__name__}; "
            "for a file use segcam.io.load_image(path)."
        )
    if not (tensor.is_floating_point()):
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
    bad = (~torch.isfinite(tensor)).sum().item()
    if bad:
        raise ImageError(
            f"the image has {bad} non-finite value(s) (NaN or inf); replace them, e.g. "
            "torch.nan_to_num(image)."
        )
    return tensor, batched


def read_logits(output: Any, extract: Callable[[Any], Tensor] | None = None) -> Tensor:
    """The logits tensor inside whatever the model returned."""
    if extract is not None:
        output = extract(output)
    if isinstance(output, Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("out"), Tensor):
        return output["out"]
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ModelError(
        f"cannot find logits in the model's output of type {type(output).__name__}; return a "
        "tensor, a dict with 'out', an object with .logits, or pass output=lambda o: ... to Explainer."
    )


@dataclass
class Logits:
    """Per-class logits at the input's size, ``(B, C, *S)``; a 1-channel head is read as binary.

    For a binary head (``C == 1``, sigmoid) class 1 is the logit ``z`` and class 0 is ``-z``.
    """

    values: Tensor

    @property
    def binary(self) -> bool:
        return self.values.shape[1] == 1

    @property
    def n_classes(self) -> int:
        return 2 if self.binary else self.values.shape[1]

    def of_class(self, cls: int) -> Tensor:
        """``(B, *S)`` logit map of class ``cls``."""
        if self.binary:
            z = self.values[:, 0]
            return z if cls == 1 else -z
        return self.values[:, cls]

    def predicted(self) -> Tensor:
        """``(B, *S)`` predicted label map (argmax, or ``z > 0`` for a binary head)."""
        with torch.no_grad():
            if self.binary:
                return (self.values[:, 0] > 0).long()
            return self.values.argmax(dim=1)


def logits_at_input_size(logits: Tensor, image: Tensor) -> Logits:
    """Resize ``logits`` (bilinear / trilinear, differentiable) to the image's spatial size."""
    spatial = image.shape[2:]
    if logits.ndim != image.ndim:
        raise ModelError(
            f"the model returned logits of shape {tuple(logits.shape)} for an image of shape "
            f"{tuple(image.shape)}; segcam expects (B, classes, *spatial) with the same number "
            "of spatial axes as the image."
        )
    if logits.shape[0] != image.shape[0]:
        raise ModelError(
            f"the model returned {logits.shape[0]} logit maps for a batch of {image.shape[0]} images."
        )
    if not logits.is_floating_point():
        raise ModelError(f"the model returned logits of dtype {logits.dtype}; expected floats.")
    if tuple(logits.shape[2:]) != tuple(spatial):
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
        logits = F.interpolate(logits, size=tuple(spatial), mode=mode, align_corners=False)
    return Logits(logits)
