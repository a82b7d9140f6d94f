"""RISE for segmentation: masks, Dice weights, reproducibility, and where the mass goes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import segcam
from segcam import Target, regions
from segcam.core.target import dice
from segcam.methods.rise import render_masks, rise_masks


class Threshold(nn.Module):
    """Binary head: class 1 wherever the input's first channel exceeds 0.5 (dims-agnostic)."""

    def forward(self, x):
        return x[:, :1] - 0.5


class Patch(nn.Module):
    """Every pixel's class is decided by the mean of one 4×4 patch in the top-left corner."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        z = (x[:, :1, :4, :4].mean((2, 3), keepdim=True) - 0.5) * self.scale
        return z.expand(-1, -1, *x.shape[2:])


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_masks_keep_the_share_p(p):
    grids, shifts = rise_masks(4000, (32, 32), 8, p, torch.Generator().manual_seed(0))
    assert abs(grids.mean().item() - p) < 0.01
    masks = render_masks(grids[:400], shifts[:400], (32, 32))
    assert masks.shape == (400, 32, 32) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean().item() - p) < 0.03


def test_dice():
    a = torch.tensor([[True, True, False], [False, False, False]])
    b = torch.tensor([True, False, False])
    assert dice(a, b, 1).tolist() == pytest.approx([2 / 3, 0.0])
    assert dice(torch.zeros(1, 3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool), 1).tolist() == [1.0]


def test_dice_weights_are_exact_on_a_model_with_known_masked_predictions():
    x = torch.ones(1, 16, 16)
    region = regions.box(4, 4, 12, 12)
    exp = segcam.explain(Threshold(), x, Target(1, region), method="rise", n_masks=64, cells=4,
                         baseline="zero", seed=3, batch_size=10)
    grids, shifts = rise_masks(64, (16, 16), 4, 0.5, torch.Generator().manual_seed(3))
    masks = render_masks(grids, shifts, (16, 16))
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:12, 4:12] = True
    kept = (masks > 0.5) & inside  # the masked prediction of class 1 inside the region
    w = 2 * kept.flatten(1).sum(1) / (kept.flatten(1).sum(1) + inside.sum())
    expected = (w[:, None, None] * masks).sum(0) / (64 * 0.5)
    assert torch.allclose(exp.raw[0], expected, atol=1e-5)
    assert exp.layer == "<input>" and exp.details["masks_used"] == 64


def test_rise_finds_the_patch_that_decides_the_label():
    x = torch.ones(1, 24, 24)
    exp = segcam.explain(Patch(), x, Target(1, regions.pixel(20, 20)), method="rise",
                         n_masks=400, cells=6, baseline="zero")
    m = exp.map[0]
    top = torch.topk(m.flatten(), 16).indices  # the 16 most salient pixels ...
    in_patch = sum(int(i) // 24 < 4 and int(i) % 24 < 4 for i in top)
    assert in_patch >= 12  # ... are (nearly all) the patch's 16
    # masks that keep other pixels are kept with weight E[w] too: RISE's floor is not zero
    assert m[:4, :4].mean() > 1.3 * m[6:, 6:].mean()


def test_reproducible_and_independent_of_batch_size():
    model = segcam.models.UNet(3, 3, width=4, depth=2).eval()
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    target = Target(1, regions.box(0, 0, 8, 8))
    a = segcam.explain(model, x, target, method="rise", n_masks=40, seed=5, batch_size=7)
    b = segcam.explain(model, x, target, method="rise", n_masks=40, seed=5, batch_size=40)
    c = segcam.explain(model, x, target, method="rise", n_masks=40, seed=6)
    assert torch.allclose(a.raw, b.raw, atol=1e-6)
    assert not torch.allclose(a.raw, c.raw)


def test_many_targets_share_the_forward_passes_and_progress_is_reported():
    model = segcam.models.UNet(3, 3, width=4, depth=2).eval()
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    calls, seen = [], []
    model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    targets = [Target(0), Target(1, regions.pixel(3, 3)), Target(2, regions.box(4, 4, 9, 9))]
    many = segcam.Explainer(model).explain_many(x, targets, method="rise", n_masks=30, batch_size=10,
                                                progress=lambda done, total: seen.append((done, total)))
    assert calls == [1, 10, 10, 10]  # the unmasked image, then 3 batches for all 3 targets
    assert seen == [(10, 30), (20, 30), (30, 30)]
    single = segcam.explain(model, x, targets[1], method="rise", n_masks=30)
    assert torch.allclose(many[1].raw, single.raw, atol=1e-6)


def test_early_stop_and_3d():
    model = segcam.models.UNet(1, 2, width=4, depth=2, dims=3).eval()
    x = torch.rand(1, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    exp = segcam.explain(model, x, Target(1, regions.voxel(4, 4, 4)), method="rise", n_masks=200,
                         cells=4, tol=1.0, batch_size=20)
    assert exp.heatmap.shape == (8, 8, 8) and torch.isfinite(exp.map).all()
    assert exp.details["stopped_early"] and exp.details["masks_used"] < 200


def test_bad_rise_options():
    model = Threshold()
    with pytest.raises(segcam.SegcamError, match="layer=None"):
        segcam.explain(model, torch.ones(1, 8, 8), Target(1), method="rise", layer="x")
    with pytest.raises(segcam.SegcamError, match="p must be"):
        segcam.explain(model, torch.ones(1, 8, 8), Target(1), method="rise", p=1.5)


def test_score_weights_honour_the_targets_reduce():
    model = segcam.models.UNet(3, 3, width=4, depth=2).eval()
    x = torch.rand(3, 16, 16)
    region = regions.box(4, 4, 10, 12)  # |M| = 48
    common = {"method": "rise", "weight": "score", "n_masks": 64, "cells": 4}
    total = segcam.explain(model, x, Target(1, region, reduce="sum"), **common)
    mean = segcam.explain(model, x, Target(1, region, reduce="mean"), **common)
    assert torch.allclose(total.raw, mean.raw * 48, rtol=1e-5, atol=1e-5)
    assert torch.allclose(total.score, mean.score * 48)
    assert torch.allclose(total.map, mean.map, atol=1e-6)  # the same map once normalised
    dice = [segcam.explain(model, x, Target(1, region, reduce=r), method="rise", n_masks=64).raw for r in ("sum", "mean")]
    assert torch.equal(dice[0], dice[1])  # Dice weights do not depend on the score at all
