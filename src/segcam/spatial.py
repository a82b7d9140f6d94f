"""The one table of spatial operations by number of spatial axes (1-D, 2-D, 3-D).

Every resize in segcam — logits to the input, maps to the input, RISE masks, Score-CAM's
upsampled channels, preprocessing — goes through :func:`resize`, so they all interpolate the
same way: linear / bilinear / trilinear with ``align_corners=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}
MAX_POOL: dict[int, Callable[..., Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL: dict[int, Callable[..., Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Resize ``x (N, C, *s)`` to spatial ``size`` by (bi/tri)linear interpolation; a no-op when
    the size already fits."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=INTERPOLATION[len(size)], align_corners=False)


def resize_maps(x: Tensor, size: Sequence[int]) -> Tensor:
    """Resize single-channel maps ``x (N, *s)`` to ``size`` (see :func:`resize`)."""
    if tuple(x.shape[1:]) == tuple(size):
        return x
    return resize(x.unsqueeze(1), size)[:, 0]
