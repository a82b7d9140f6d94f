"""Layer sweeps and training-progress grids."""

from __future__ import annotations

import torch
from PIL import Image
from test_explainer import maps_equal

from segcam import Explainer, Target, regions
from segcam.apps.report import Checkpoint, layer_sweep, progress_grid, sweep_layers
from segcam.models import UNet


def test_sweep_equals_single_layer_explanations_and_uses_readable_names(rng):
    model = UNet(3, 4, width=4, depth=2).eval()
    x = torch.randn(3, 16, 16, generator=rng)
    target = Target(1, regions.box(2, 2, 10, 10))
    plain = Explainer(model)
    default_layers = sweep_layers(plain, x)
    assert default_layers[:2] == ["stem", "downs.0"] and "head" in default_layers
    sweep = layer_sweep(plain, x, target, ["stem", "downs.1", "ups.1"], method="seg-xres-cam")
    for name, exp in sweep.items():
        assert maps_equal(exp, plain.explain(x, target, method="seg-xres-cam", layer=name))
    named = Explainer(model, layer_names={"early": "stem", "deep": "downs.1"})
    assert list(layer_sweep(named, x, target)) == ["early", "deep"]


def test_progress_grid_draws_layers_by_checkpoints(tmp_path, rng):
    x = torch.randn(3, 16, 16, generator=rng)
    checkpoints = []
    for step in (1, 2, 3):
        torch.manual_seed(step)
        checkpoints.append(Checkpoint(f"step {step}", UNet(3, 4, width=4, depth=2).eval(), 0.1 * step))
    out = tmp_path / "progress.png"
    columns = progress_grid(out, checkpoints, x, Target(2, regions.pixel(5, 5)), ["stem", "downs.1"])
    assert list(columns) == ["step 1\nmIoU 0.100", "step 2\nmIoU 0.200", "step 3\nmIoU 0.300"]
    first, last = (list(c.values()) for c in (columns["step 1\nmIoU 0.100"], columns["step 3\nmIoU 0.300"]))
    assert not torch.equal(first[1].map, last[1].map)  # different weights, different maps
    with Image.open(out) as img:
        assert img.size[0] > 300 and img.size[1] > 200
