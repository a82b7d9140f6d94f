"""What a model expects of an image before it sees it: size, channels, normalisation.

``Preprocess(size=(512, 512), mean=IMAGENET_MEAN, std=IMAGENET_STD, channels=3)(image)``
takes a ``(C, *S)`` float image in [0, 1] and returns ``(image - mean) / std`` resized
(bilinear/trilinear) with the channel count fixed (grey → RGB by repetition, RGB → grey by
mean).  Explanations are made on the preprocessed image, so regions are in its pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize to ``size`` (None: keep), fix ``channels`` (None: keep), normalise by mean/std."""

    size: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int | None = None

    def __call__(self, image: Tensor) -> Tensor:
        x = torch.as_tensor(image, dtype=torch.float32)
        if self.channels is not None and x.shape[0] != self.channels:
            if x.shape[0] == 1:
                x = x.expand(self.channels, *x.shape[1:])
            elif self.channels == 1:
                x = x.mean(0, keepdim=True)
            else:
                raise ImageError(
                    f"cannot turn an image with {x.shape[0]} channels into {self.channels}."
                )
        if self.size is not None and tuple(x.shape[1:]) != tuple(self.size):
            if len(self.size) != x.ndim - 1:
                raise ImageError(f"size {self.size} does not fit an image of shape {tuple(x.shape)}.")
            mode = "bilinear" if len(self.size) == 2 else "trilinear"
            x = F.interpolate(x[None], size=tuple(self.size), mode=mode, align_corners=False)[0]
        if self.mean is not None or self.std is not None:
            shape = (-1,) + (1,) * (x.ndim - 1)
            mean = torch.tensor(self.mean or (0.0,), dtype=x.dtype).reshape(shape)
            std = torch.tensor(self.std or (1.0,), dtype=x.dtype).reshape(shape)
            x = (x - mean) / std
        return x

    @classmethod
    def imagenet(cls, size: Sequence[int] | None = None) -> "Preprocess":
        """ImageNet mean/std on RGB, as torchvision and most pretrained backbones expect."""
        return cls(tuple(size) if size else None, IMAGENET_MEAN, IMAGENET_STD, 3)
