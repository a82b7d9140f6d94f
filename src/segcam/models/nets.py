"""The segmentation networks that ship with segcam.

:class:`UNet` is the U-Net of Ronneberger et al. (2015) for 2-D or 3-D inputs, with readable
block names: ``stem``, ``downs.0`` … ``downs.{depth-1}`` (the last is the bottleneck),
``ups.0`` … and ``head``.  :class:`VGGUNet` puts a VGG-16-style encoder in front of the same
decoder, as in the Seg-XRes-CAM paper's medical experiments.  :data:`DEFAULT_ARCH` is the
architecture of segcam's default model, written down once for everything that builds it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from ..checks import check_bool, check_int
from ..errors import SegcamError

DEFAULT_ARCH: dict = {"in_channels": 3, "num_classes": 6, "width": 16, "depth": 3, "global_context": True}
"""``UNet(**DEFAULT_ARCH)`` is the default model's architecture (6 classes: the synthetic scenes')."""


def _check_dims(dims: object) -> int:
    dims = check_int(dims, "dims")
    if dims not in (2, 3):
        raise SegcamError(f"dims must be 2 (images) or 3 (volumes), got {dims}.")
    return dims


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


class DoubleConv(nn.Sequential):
    """Two rounds of 3×3 convolution → batch norm → ReLU."""

    def __init__(self, cin: int, cout: int, dims: int = 2):
        conv, norm = _conv(dims), nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        super().__init__(
            conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
            conv(cout, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """Halve the resolution by max-pooling, then a :class:`DoubleConv`."""

    def __init__(self, cin: int, cout: int, dims: int = 2):
        super().__init__(nn.MaxPool2d(2) if dims == 2 else nn.MaxPool3d(2), DoubleConv(cin, cout, dims))


class Up(nn.Module):
    """Double the resolution by a transposed convolution, join the skip connection, :class:`DoubleConv`."""

    def __init__(self, cin: int, cskip: int, cout: int, dims: int = 2):
        super().__init__()
        self.up = (nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d)(cin, cout, 2, stride=2)
        self.conv = DoubleConv(cout + cskip, cout, dims)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        if x.shape[2:] != skip.shape[2:]:  # an odd size was floored on the way down: pad back up
            pads: list[int] = []
            for have, want in zip(reversed(x.shape[2:]), reversed(skip.shape[2:])):
                pads += [0, want - have]
            x = nn.functional.pad(x, pads)
        return self.conv(torch.cat([skip, x], dim=1))


class GlobalContext(nn.Module):
    """The bottleneck's global max-pool through a 1×1 convolution and ReLU: ``(B, C_out, 1, …)``.

    Added to the first decoder stage, it tells every pixel whether a feature (a cue square, say)
    occurs anywhere in the image, however far outside its receptive field.
    """

    def __init__(self, cin: int, cout: int, dims: int = 2):
        super().__init__()
        self.proj = _conv(dims)(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.proj(x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)))


class UNet(nn.Module):
    """A U-Net with ``depth`` down and up steps and ``width·2^i`` channels at level ``i``.

    ``global_context`` adds a :class:`GlobalContext` of the bottleneck to the first decoder
    stage (an image-pooling branch like DeepLab's ASPP).  Spatial sizes need not be divisible by
    ``2^depth``: the decoder pads odd sizes back.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 4,
        width: int = 16,
        depth: int = 4,
        dims: int = 2,
        global_context: bool = False,
    ):
        super().__init__()
        cin, classes = check_int(in_channels, "in_channels", low=1), check_int(num_classes, "num_classes", low=1)
        width, depth = check_int(width, "width", low=1), check_int(depth, "depth", low=1)
        dims, global_context = _check_dims(dims), check_bool(global_context, "global_context")
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(cin, chans[0], dims)
        self.downs = nn.ModuleList(Down(chans[i], chans[i + 1], dims) for i in range(depth))
        self.ups = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i], dims) for i in reversed(range(depth)))
        self.context = GlobalContext(chans[-1], chans[-2], dims) if global_context else None
        self.head = _conv(dims)(chans[0], classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = bottleneck = skips.pop()
        for i, up in enumerate(self.ups):
            x = up(x, skips.pop())
            if i == 0 and self.context is not None:
                x = x + self.context(bottleneck)
        return self.head(x)


class VGGUNet(nn.Module):
    """A 2-D U-Net whose encoder is VGG-16's: 2, 2, 3, 3, 3 convolutions per block, channels
    ``width·(1, 2, 4, 8, 8)``.

    Blocks: ``encoder.block1`` … ``encoder.block5`` (the bottleneck, 1/16 of the input),
    ``decoder.up1`` … ``decoder.up4`` and ``head``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, width: int = 16):
        super().__init__()
        cin, classes = check_int(in_channels, "in_channels", low=1), check_int(num_classes, "num_classes", low=1)
        width = check_int(width, "width", low=1)
        chans = [width, width * 2, width * 4, width * 8, width * 8]
        blocks = []
        for i, (cout, convs) in enumerate(zip(chans, (2, 2, 3, 3, 3))):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i else []
            for _ in range(convs):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            blocks.append((f"block{i + 1}", nn.Sequential(*layers)))
        self.encoder = nn.Sequential(OrderedDict(blocks))
        self.decoder = nn.ModuleDict({f"up{i + 1}": Up(chans[4 - i], chans[3 - i], chans[3 - i]) for i in range(4)})
        self.head = nn.Conv2d(chans[0], classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder.values():
            x = up(x, skips.pop())
        return self.head(x)
