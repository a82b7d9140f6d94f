"""Read images and masks from files for the command line and the examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import ImageError, RegionError


def load_image(path: str | Path, channels: int | None = None) -> Tensor:
    """An image file as a float tensor ``(C, H, W)`` in [0, 1], or a ``.npy`` array as stored.

    PNG/JPEG/TIFF files are read with Pillow; ``channels`` (1 or 3) converts grey ↔ RGB.
    ``.npy`` files must hold a float array ``(C, *S)`` (or ``(H, W)``, read as one channel).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no image file at {str(path)!r}.")
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim == 2:
            array = array[None]
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    try:
        with Image.open(path) as img:
            grey = img.mode in ("L", "I;16", "I", "F")
            mode = {1: "L", 3: "RGB"}.get(channels or 0) or ("L" if grey else "RGB")
            array = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
    except OSError as e:
        raise ImageError(f"cannot read {str(path)!r} as an image: {e}") from None
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def load_mask(path: str | Path) -> np.ndarray:
    """A boolean mask from a PNG (non-zero pixels) or a ``.npy`` array."""
    path = Path(path)
    if not path.is_file():
        raise RegionError(f"no mask file at {str(path)!r}.")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False).astype(bool)
    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 0


def save_image(path: str | Path, image: Tensor) -> None:
    """Write a ``(C, H, W)`` tensor in [0, 1] as an 8-bit PNG."""
    array = (image.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    Image.fromarray(array).save(path)
