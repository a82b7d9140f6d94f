"""Small segmentation models that ship with segcam.

:class:`UNet` is a plain U-Net (Ronneberger et al., 2015) for 2-D or 3-D inputs whose blocks
have readable names: ``stem``, ``down1`` … ``downN`` (the last one is the bottleneck),
``up1`` … ``upN`` and ``head``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

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


class GlobalContext(nn.Module):
    """Global max-pool of the bottleneck, projected by a 1×1 conv: ``(B, C_out, 1, ..., 1)``.

    Added to the first decoder stage, it lets every pixel see whether a feature (such as a
    cue square) occurs anywhere in the image, however far away.
    """

    def __init__(self, cin: int, cout: int, dims: int = 2):
        super().__init__()
        self.proj = _conv(dims)(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)
        return torch.relu(self.proj(pooled))


class UNet(nn.Module):
    """U-Net with ``depth`` down/up steps and ``width·2^i`` channels at level ``i``.

    With ``global_context`` a :class:`GlobalContext` of the bottleneck is added to the first
    decoder stage (an image-pooling branch, as in DeepLab's ASPP).
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
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_channels, chans[0], dims)
        self.downs = nn.ModuleList(Down(chans[i], chans[i + 1], dims) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(chans[i + 1], chans[i], chans[i], dims) for i in reversed(range(depth))
        )
        self.context = GlobalContext(chans[-1], chans[-2], dims) if global_context else None
        self.head = _conv(dims)(chans[0], num_classes, 1)

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


WEIGHTS = Path(__file__).parent / "weights" / "default_unet.safetensors"


def save_weights(model: nn.Module, path: str | Path, metadata: dict) -> None:
    """Weights as safetensors with ``metadata`` (architecture, scores) stored as JSON inside."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"segcam": json.dumps(metadata)})


def load_weights(path: str | Path) -> tuple[nn.Module, dict]:
    """A model in eval mode and its metadata from :func:`save_weights`'s file (a :class:`UNet`,
    or a zoo family's model when the metadata names one).

    safetensors holds tensors only, so loading runs no code from the file.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["segcam"])
    if "family" in meta:  # a zoo model trained by segcam.train.train_family
        from .zoo import build

        model = build(meta["family"], meta["num_classes"])
    else:
        model = UNet(**meta["arch"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta


def default() -> UNet:
    """segcam's default model: a small 2-D U-Net trained on :mod:`segcam.data`'s biased scenes.

    Input ``(3, 64, 64)`` RGB in [0, 1] (any size divisible by 8 works); 6 classes
    (:data:`segcam.data.CLASS_NAMES`).  Loaded offline from the package; how it was trained
    and how well it does are in :func:`default_info`.
    """
    return load_weights(WEIGHTS)[0]


def default_info() -> dict:
    """The default model's metadata: architecture, class names, training and test scores."""
    return load_weights(WEIGHTS)[1]


class VGGUNet(nn.Module):
    """U-Net with a VGG-16-style encoder (2, 2, 3, 3, 3 convolutions per block), as in the
    Seg-XRes-CAM paper's medical experiments; channels are ``width·(1, 2, 4, 8, 8)``.

    Blocks: ``encoder.block1`` … ``encoder.block5`` (the bottleneck, 1/16 of the input),
    ``decoder.up1`` … ``decoder.up4`` and ``head``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, width: int = 16):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8, width * 8]
        convs = [2, 2, 3, 3, 3]
        blocks, cin = [], in_channels
        for i, (cout, n) in enumerate(zip(chans, convs)):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i else []
            for _ in range(n):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            blocks.append((f"block{i + 1}", nn.Sequential(*layers)))
        self.encoder = nn.Sequential(OrderedDict(blocks))
        self.decoder = nn.ModuleDict({
            f"up{i + 1}": Up(chans[4 - i], chans[3 - i], chans[3 - i]) for i in range(4)
        })
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder.values():
            x = up(x, skips.pop())
        return self.head(x)
