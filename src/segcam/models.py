"""Small segmentation models that ship with segcam.

:class:`UNet` is a plain U-Net (Ronneberger et al., 2015) for 2-D or 3-D inputs whose blocks
have readable names: ``stem``, ``down1`` … ``downN`` (the last one is the bottleneck),
``up1`` … ``upN`` and ``head``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _norm(dims: int) -> type[nn.Module]:
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d


class DoubleConv(nn.Sequential):
    """conv3 → BN → ReLU → conv3 → BN → ReLU."""

    def __init__(self, cin: int, cout: int, dims: int = 2):
        conv, norm = _conv(dims), _norm(dims)
        super().__init__(
            conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
            conv(cout, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """Max-pool by 2, then a double convolution."""

    def __init__(self, cin: int, cout: int, dims: int = 2):
        pool = nn.MaxPool2d(2) if dims == 2 else nn.MaxPool3d(2)
        super().__init__(pool, DoubleConv(cin, cout, dims))


class Up(nn.Module):
    """Transposed-conv upsampling by 2, concatenation with the skip, double convolution."""

    def __init__(self, cin: int, cskip: int, cout: int, dims: int = 2):
        super().__init__()
        up = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        self.up = up(cin, cout, 2, stride=2)
        self.conv = DoubleConv(cout + cskip, cout, dims)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        if x.shape[2:] != skip.shape[2:]:  # odd sizes: pad the upsampled map to the skip's size
            pads = []
            for a, b in zip(reversed(x.shape[2:]), reversed(skip.shape[2:])):
                pads += [0, b - a]
            x = nn.functional.pad(x, pads)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net with ``depth`` down/up steps and ``width·2^i`` channels at level ``i``."""

    def __init__(
        self, in_channels: int = 3, num_classes: int = 4, width: int = 16, depth: int = 4, dims: int = 2
    ):
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_channels, chans[0], dims)
        self.downs = nn.ModuleList(Down(chans[i], chans[i + 1], dims) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(chans[i + 1], chans[i], chans[i], dims) for i in reversed(range(depth))
        )
        self.head = _conv(dims)(chans[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


def demo_model(seed: int = 0) -> UNet:
    """An untrained, seeded 2-D U-Net (3 input channels, 4 classes) used by ``segcam demo``.

    Its weights are random: the demo shows the mechanics, not a trained model's reasoning.
    """
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        model = UNet(in_channels=3, num_classes=4, width=8, depth=3)
    return model.eval()
