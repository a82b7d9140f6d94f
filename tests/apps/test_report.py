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


def test_level_checkpoints_are_headed_by_level_and_ordered_by_mIoU(tmp_path, rng):
    model = UNet(3, 4, width=4, depth=2).eval()
    meta = {"family": "unet", "num_classes": 4, "step": 120, "steps": 300, "miou_level": 0.5, "test": {"miou": 0.534}}
    high = Checkpoint.from_metadata("unet-miou0.50.safetensors", model, meta)
    assert (high.header, high.step, high.level, high.miou) == ("mIoU ≥ 0.50 (0.534, step 120)", 120, 0.5, 0.534)
    low = Checkpoint.from_metadata("x", model, {**meta, "step": 40, "miou_level": 0.3, "test": {"miou": 0.534}})
    odd = Checkpoint("odd", model, 0.6, level=0.125)
    assert odd.header == "mIoU ≥ 0.125 (0.600)"
    by_step = Checkpoint.from_metadata("y.safetensors", model, {"family": "unet", "num_classes": 4, "step": 7,
                                                              "test": {"miou": "high"}})
    plain = Checkpoint.from_metadata("z.safetensors", model, {"arch": {"num_classes": 4}})
    assert (by_step.header, by_step.miou, plain.header) == ("step 7", None, "z.safetensors")
    shuffled = [high, Checkpoint("step 9", model, 0.2), low, odd]
    ordered = sorted(shuffled, key=lambda c: c.order)
    assert [c.header for c in ordered] == ["mIoU ≥ 0.125 (0.600)", "step 9\nmIoU 0.200",
                                           "mIoU ≥ 0.30 (0.534, step 40)", "mIoU ≥ 0.50 (0.534, step 120)"]
    x = torch.randn(3, 16, 16, generator=rng)
    columns = progress_grid(tmp_path / "p.png", ordered, x, Target(1, regions.pixel(3, 3)), ["stem"])
    assert list(columns) == [c.header for c in ordered]


def test_two_checkpoints_with_one_header_keep_both_columns(tmp_path, rng):
    model = UNet(3, 4, width=4, depth=2).eval()
    meta = {"family": "unet", "num_classes": 4, "step": 7}
    a, b = (Checkpoint.from_metadata(name, model, meta) for name in ("run-a.safetensors", "run-b.safetensors"))
    assert a.header == b.header == "step 7"
    x = torch.randn(3, 16, 16, generator=rng)
    columns = progress_grid(tmp_path / "p.png", [a, b], x, Target(1, regions.pixel(3, 3)), ["stem"])
    assert list(columns) == ["step 7", "step 7\n(checkpoint 2)"]  # not one silently overwritten
