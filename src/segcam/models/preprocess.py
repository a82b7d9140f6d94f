"""What a model expects of an image before it sees it: channels, size, normalisation.

``Preprocess(size=(512, 512), mean=IMAGENET_MEAN, std=IMAGENET_STD, channels=3)(image)`` takes
a ``(C, *S)`` float image in [0, 1], fixes its channel count (grey → colour by repetition,
colour → grey by the mean), resizes it (see :func:`segcam.spatial.resize`) and returns
``(image - mean) / std``.  Explanations are made on the preprocessed image, so regions are given
in its pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_float, check_int, check_sizes, shown
from ..errors import ImageError, SegcamError
from ..spatial import resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _per_channel(value: Any, name: str, positive: bool) -> tuple[float, ...] | None:
    """``None`` or a non-empty tuple of finite numbers (all > 0 when ``positive``)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) or not len(value):
        raise SegcamError(f"{name} must be a non-empty tuple of numbers, one per channel, got {shown(value)}.")
    low = 0.0 if positive else None
    return tuple(check_float(v, name, low=low, open_low=positive) for v in value)


@dataclass(frozen=True)
class Preprocess:
    """Fix ``channels`` (None: keep), resize to ``size`` (None: keep), normalise by ``mean``/``std``.

    ``mean`` and ``std`` hold one value per channel, or one value for all; either may be left
    out (mean 0, std 1).  Every field is checked when the object is made.
    """

    size: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        size = None if self.size is None else check_sizes(self.size, "Preprocess size", dims=(2, 3))
        mean = _per_channel(self.mean, "Preprocess mean", positive=False)
        std = _per_channel(self.std, "Preprocess std", positive=True)
        channels = None if self.channels is None else check_int(self.channels, "Preprocess channels", low=1)
        if mean is not None and std is not None and len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise SegcamError(
                f"Preprocess mean has {len(mean)} values and std {len(std)}; give one value per channel "
                "(or a single value for all channels) to both."
            )
        for name, values in (("mean", mean), ("std", std)):
            if channels is not None and values is not None and len(values) not in (1, channels):
                raise SegcamError(
                    f"Preprocess {name} has {len(values)} values but channels is {channels}; give "
                    f"{channels} values (or one for all channels)."
                )
        for name, value in (("size", size), ("mean", mean), ("std", std), ("channels", channels)):
            object.__setattr__(self, name, value)  # normalised: tuples of int / float, int

    def __call__(self, image: Any) -> Tensor:
        """The preprocessed ``(C, *S)`` float32 image."""
        try:
            x = torch.as_tensor(image, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ImageError(f"cannot read {shown(image)} as an image tensor ({e}); pass a (C, H, W) "
                             "or (C, D, H, W) tensor or array.") from None
        if x.ndim not in (3, 4):
            raise ImageError(f"Preprocess takes one (C, H, W) or (C, D, H, W) image, got shape "
                             f"{tuple(x.shape)}; preprocess a batch image by image.")
        if self.channels is not None and x.shape[0] != self.channels:
            if x.shape[0] == 1:
                x = x.expand(self.channels, *x.shape[1:])
            elif self.channels == 1:
                x = x.mean(0, keepdim=True)
            else:
                raise ImageError(f"cannot turn an image with {x.shape[0]} channels into {self.channels}; "
                                 f"give the model an image with {self.channels} channels (or 1).")
        if self.size is not None:
            if len(self.size) != x.ndim - 1:
                raise ImageError(f"Preprocess size {self.size} is {len(self.size)}-D but the image of shape "
                                 f"{tuple(x.shape)} is {x.ndim - 1}-D; give one size per spatial axis.")
            x = resize(x[None], self.size)[0]
        if self.mean is not None or self.std is not None:
            for name, values in (("mean", self.mean), ("std", self.std)):
                if values is not None and len(values) not in (1, x.shape[0]):
                    raise ImageError(f"Preprocess {name} has {len(values)} values but the image has "
                                     f"{x.shape[0]} channels; set channels={len(values)} or fix {name}.")
            shape = (-1,) + (1,) * (x.ndim - 1)
            mean, std = torch.tensor(self.mean or (0.0,)), torch.tensor(self.std or (1.0,))
            x = (x - mean.reshape(shape)) / std.reshape(shape)
        return x

    @classmethod
    def imagenet(cls, size: Sequence[int] | None = None) -> Preprocess:
        """ImageNet's mean and std on RGB, as torchvision and most pretrained backbones expect."""
        return cls(size, IMAGENET_MEAN, IMAGENET_STD, 3)
