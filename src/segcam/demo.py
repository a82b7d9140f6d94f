"""The built-in demo: explain one pixel of a generated scene with every CAM method.

Until segcam ships a trained default model, the demo uses :func:`segcam.models.demo_model`,
an untrained seeded U-Net, so the figure shows the mechanics rather than learned reasoning.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from . import regions
from .explainer import Explainer
from .models import demo_model
from .targets import Target
from .viz import save_panel


def demo_scene(size: int = 128, seed: int = 0) -> Tensor:
    """A deterministic RGB scene ``(3, size, size)`` in [0, 1]: a disc, a square and a bar."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = 0.15 + 0.1 * torch.rand((3, size, size), generator=gen)
    s = size / 128
    disc = (yy - 40 * s) ** 2 + (xx - 44 * s) ** 2 < (22 * s) ** 2
    square = (yy > 70 * s) & (yy < 110 * s) & (xx > 70 * s) & (xx < 110 * s)
    bar = (yy > 14 * s) & (yy < 30 * s) & (xx > 78 * s) & (xx < 118 * s)
    for shape, colour in ((disc, (0.9, 0.3, 0.2)), (square, (0.2, 0.8, 0.3)), (bar, (0.3, 0.4, 0.95))):
        image[:, shape] = torch.tensor(colour)[:, None]
    return image


def run_demo(output: str | Path = "segcam-demo.png", size: int = 128) -> dict[str, object]:
    """Explain the pixel at the disc's centre with Seg-Grad-CAM, Seg-XRes-CAM and HiResCAM."""
    model = demo_model()
    image = demo_scene(size)
    explainer = Explainer(model)
    point = (int(40 * size / 128), int(44 * size / 128))
    fwd = explainer.forward(image)
    cls = int(fwd.predicted[(0, *point)])
    target = Target(cls, regions.pixel(*point))
    settings = {
        "Seg-Grad-CAM": ("seg-grad-cam", {}),
        "Seg-XRes-CAM (2×2 max)": ("seg-xres-cam", {"window": 2, "pool": "max"}),
        "HiResCAM": ("seg-hires-cam", {}),
    }
    maps = {}
    for label, (method, options) in settings.items():
        exp = explainer.explain(fwd, target, method=method, **options)
        maps[label] = exp.heatmap
    layer = fwd.layers[0]
    save_panel(
        output, image, fwd.predicted[0], exp.region[0], maps, fwd.logits.n_classes,
        title=f"class {cls} at pixel {point}, layer {layer!r} — untrained demo U-Net",
    )
    return {"output": str(output), "layer": layer, "class": cls, "pixel": point}
