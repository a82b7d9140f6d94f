"""Exact values of every CAM method on models whose gradients are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import LinearSeg, linear_seg
from torch import nn

import segcam
from segcam import Target, regions
from segcam.methods import METHODS, create
from segcam.methods.cam import SegXResCAM, window_pool


def literal_model() -> LinearSeg:
    """One input channel, A = x, a 1-channel (binary) head z = 2·A: class 1 scores z."""
    return LinearSeg(torch.ones(1, 1), torch.full((1, 1), 2.0)).eval()


IMAGE_2x2 = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])


def test_grad_cam_literal_values():
    # S = 2·x(0,0); dS/dA = [[2,0],[0,0]]; alpha = 2/4 = 0.5; raw = 0.5·A
    exp = segcam.explain(literal_model(), IMAGE_2x2, Target(1, regions.pixel(0, 0)), layer="features")
    assert torch.equal(exp.raw, torch.tensor([[[0.5, 1.0], [1.5, 2.0]]]))
    assert torch.equal(exp.layer_map, torch.tensor([[[0.25, 0.5], [0.75, 1.0]]]))
    assert exp.heatmap.dtype.name == "float32" and exp.heatmap.shape == (2, 2)
    assert exp.score.tolist() == [2.0]


def test_hires_cam_literal_values():
    exp = segcam.explain(literal_model(), IMAGE_2x2, Target(1, regions.pixel(1, 0)),
                         method="seg-hires-cam", layer="features")
    assert torch.equal(exp.raw, torch.tensor([[[0.0, 0.0], [6.0, 0.0]]]))
    assert torch.equal(exp.layer_map, torch.tensor([[[0.0, 0.0], [1.0, 0.0]]]))


def test_mean_reduction_divides_by_region_size():
    model = literal_model()
    region = regions.box(0, 0, 1, 2)
    total = segcam.explain(model, IMAGE_2x2, Target(1, region), layer="features")
    mean = segcam.explain(model, IMAGE_2x2, Target(1, region, reduce="mean"), layer="features")
    assert torch.allclose(mean.raw * 2, total.raw)
    assert mean.score.tolist() == [(2 * 1 + 2 * 2) / 2]


@pytest.mark.parametrize("dims", [2, 3])
def test_region_formulas_on_linear_model(dims, rng):
    model = linear_seg(dims=dims)
    spatial = (6, 7) if dims == 2 else (3, 4, 5)
    x = torch.randn(1, 2, *spatial, generator=rng)
    m = torch.zeros(spatial, dtype=torch.bool)
    m[(slice(1, 3),) * dims] = True
    target = Target(2, regions.mask(m))
    logit = model(x)[0, 2]
    n = m.numel()
    ex = segcam.Explainer(model)

    grad_cam = ex.explain(x, target, layer="features")
    assert torch.allclose(grad_cam.raw[0], logit * m.sum() / n, atol=1e-5)

    hires = ex.explain(x, target, method="seg-hires-cam", layer="features")
    assert torch.allclose(hires.raw[0], logit * m, atol=1e-5)
    assert torch.allclose(hires.layer_map[0], (logit * m).clamp_min(0) / (logit * m).max(), atol=1e-6)


def test_xres_mean_window_weights_by_share_of_window_in_region(rng):
    # dS/dA_k(p) = W_ck [p in M]; mean-pooled in 2×2 windows: W_ck · |M ∩ win(p)| / |win(p)|
    model = linear_seg()
    x = torch.randn(1, 2, 4, 4, generator=rng)
    target = Target(1, regions.pixels([(0, 0), (0, 1), (2, 3)]))
    exp = segcam.Explainer(model).explain(x, target, method="seg-xres-cam", window=2, pool="mean",
                                          layer="features")
    share = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0],
                          [0.0, 0.0, 0.25, 0.25], [0.0, 0.0, 0.25, 0.25]])
    assert torch.allclose(exp.raw[0], model(x)[0, 1] * share, atol=1e-5)


def test_xres_max_window_takes_largest_gradient_in_window(rng):
    model = linear_seg()
    x = torch.randn(1, 2, 4, 4, generator=rng)
    target = Target(3, regions.pixel(0, 0))
    exp = segcam.Explainer(model).explain(x, target, method="seg-xres-cam", window=2, pool="max",
                                          layer="features")
    w = model.head.weight[3, :, 0, 0]  # dS/dA_k at (0,0); elsewhere 0
    a = model.features(x)[0]
    expected = torch.zeros(4, 4)
    expected[:2, :2] = (w.clamp_min(0)[:, None, None] * a[:, :2, :2]).sum(0)  # max(W_k, 0)
    assert torch.allclose(exp.raw[0], expected, atol=1e-5)


def test_window_one_is_hires_cam(rng):
    model = segcam.models.UNet(3, 3, width=4, depth=2).eval()
    x = torch.randn(1, 3, 20, 20, generator=rng)
    ex = segcam.Explainer(model)
    target = Target(1, regions.box(3, 4, 9, 12))
    hires = ex.explain(x, target, method="seg-hires-cam", layer="downs.0")
    for pool in ("max", "mean"):
        xres = ex.explain(x, target, method="seg-xres-cam", window=1, pool=pool, layer="downs.0")
        assert torch.equal(xres.raw, hires.raw)


@pytest.mark.parametrize("window", [None, 5, (5, 5), 100])
def test_whole_map_mean_window_is_grad_cam(window, rng):
    model = segcam.models.UNet(3, 3, width=4, depth=2).eval()
    x = torch.randn(1, 3, 20, 20, generator=rng)  # downs.1 is 5×5
    ex = segcam.Explainer(model)
    target = Target(2, regions.pixel(7, 13))
    grad_cam = ex.explain(x, target, method="seg-grad-cam", layer="downs.1")
    xres = ex.explain(x, target, method="seg-xres-cam", window=window, pool="mean", layer="downs.1")
    assert torch.allclose(xres.raw, grad_cam.raw, atol=1e-6)
    assert torch.allclose(xres.map, grad_cam.map, atol=1e-5)


def test_window_pool_non_divisible_sizes_have_no_padding_bias():
    g = torch.arange(1.0, 1 + 5 * 7).reshape(1, 1, 5, 7)
    mean = window_pool(g, (2, 3), "mean")[0, 0]
    mx = window_pool(g, (2, 3), "max")[0, 0]
    for i in range(5):
        for j in range(7):
            r0, c0 = (i // 2) * 2, (j // 3) * 3
            block = g[0, 0, r0:r0 + 2, c0:c0 + 3]  # slicing clips the last partial window
            assert mean[i, j] == pytest.approx(block.mean().item())
            assert mx[i, j] == block.max()


def test_window_pool_3d_and_leading_target_axis():
    g = torch.randn(4, 1, 2, 5, 4, 6)  # (targets, B, K, D, H, W)
    out = window_pool(g, (1, 2, 4), "mean")
    assert out.shape == g.shape
    for t in range(4):
        single = window_pool(g[t], (1, 2, 4), "mean")
        assert torch.allclose(out[t], single)
    assert torch.allclose(out[0, 0, 1, 0, 3, 5], g[0, 0, 1, 0, 2:4, 4:6].mean())


def test_xres_window_per_axis_is_independent(rng):
    model = linear_seg()
    x = torch.randn(1, 2, 4, 6, generator=rng)
    target = Target(0, regions.pixel(1, 1))
    exp = segcam.Explainer(model).explain(x, target, method="seg-xres-cam", window=(1, 3),
                                          pool="mean", layer="features")
    share = torch.zeros(4, 6)
    share[1, 0:3] = 1 / 3
    assert torch.allclose(exp.raw[0], model(x)[0, 0] * share, atol=1e-5)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("seg-gradcam", {}, "unknown method"),
        ("seg-grad-cam", {"window": 2}, "does not take window"),
        ("seg-xres-cam", {"pool": "median"}, "pool must be"),
        ("seg-xres-cam", {"window": 0}, "window must be"),
        ("seg-xres-cam", {"window": (2, 2.5)}, "window must be"),
    ],
)
def test_bad_method_or_options(name, options, message):
    with pytest.raises(segcam.SegcamError, match=message):
        create(name, options)


def test_window_with_wrong_number_of_axes(rng):
    x = torch.randn(1, 2, 4, 4, generator=rng)
    with pytest.raises(segcam.SegcamError, match="window"):
        segcam.explain(linear_seg(), x, Target(0), method="seg-xres-cam", window=(2, 2, 2),
                       layer="features")


def test_registry_lists_the_public_methods_and_accepts_new_ones():
    assert {"seg-grad-cam", "seg-xres-cam", "seg-hires-cam"} <= set(METHODS)
    assert isinstance(create("seg-xres-cam", {"window": [2, 3]}), SegXResCAM)

    @segcam.register("test-activation-only")
    class ActivationOnly(segcam.CamMethod):
        def weights(self, activation, gradient):
            return torch.ones_like(gradient)

    try:
        model = literal_model()
        exp = segcam.explain(model, IMAGE_2x2, Target(1), method="test-activation-only",
                             layer="features")
        assert torch.equal(exp.raw, IMAGE_2x2)
    finally:
        del METHODS["test-activation-only"]


def test_all_negative_map_is_zero_not_nan():
    model = LinearSeg(torch.ones(1, 1), torch.full((1, 1), -1.0)).eval()
    exp = segcam.explain(model, IMAGE_2x2, Target(1, regions.pixel(0, 0)),
                         method="seg-hires-cam", layer="features")
    assert exp.raw[0, 0, 0] == -1.0
    assert torch.equal(exp.map, torch.zeros(1, 2, 2))
    assert not torch.isnan(exp.layer_map).any()


def test_lower_resolution_layer_gradients_sum_over_blocks(rng):
    class PoolUp(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.head = nn.Conv2d(1, 1, 1, bias=False)
            nn.init.constant_(self.head.weight, 3.0)

        def forward(self, x):
            return self.head(self.up(self.pool(x)))

    x = torch.randn(1, 1, 4, 4, generator=rng)
    target = Target(1, regions.pixels([(0, 0), (0, 1), (3, 3)]))  # binary head: class 1 = z
    exp = segcam.explain(PoolUp().eval(), x, target, method="seg-hires-cam", layer="pool")
    a = nn.functional.avg_pool2d(x, 2)[0, 0]
    # dS/dA(q) = 3 · |M ∩ block(q)|
    expected = a * torch.tensor([[6.0, 0.0], [0.0, 3.0]])
    assert torch.allclose(exp.raw[0], expected, atol=1e-6)
    assert exp.layer_map.shape == (1, 2, 2) and exp.map.shape == (1, 4, 4)


def test_layer_cam_keeps_positive_gradients_only(rng):
    model = linear_seg()
    x = torch.randn(1, 2, 4, 5, generator=rng)
    target = Target(1, regions.box(1, 1, 3, 4))
    exp = segcam.explain(model, x, target, method="layer-cam", layer="features")
    w = model.head.weight[1, :, 0, 0].clamp_min(0)  # ReLU(dS/dA_k) = ReLU(W_1k) inside M
    a = model.features(x)[0]
    m = torch.zeros(4, 5)
    m[1:3, 1:4] = 1
    assert torch.allclose(exp.raw[0], m * (w[:, None, None] * a).sum(0), atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_grad_cam_plus_plus_closed_form(dims, rng):
    model = linear_seg(dims=dims)
    spatial = (4, 5) if dims == 2 else (3, 4, 5)
    x = torch.randn(1, 2, *spatial, generator=rng)
    m = torch.zeros(spatial, dtype=torch.bool)
    m[(slice(0, 2),) * dims] = True
    exp = segcam.explain(model, x, Target(2, regions.mask(m)), method="grad-cam++", layer="features")
    a = model.features(x)[0].detach()
    expected = torch.zeros(spatial)
    for k in range(a.shape[0]):  # g = W_2k on M, 0 elsewhere
        g = model.head.weight[2, k].flatten()[0].item() * m.float()
        divisor = 2 * g**2 + a[k].sum() * g**3
        alpha = torch.where(divisor != 0, g**2 / torch.where(divisor != 0, divisor, 1), 0)
        expected += (alpha * g.clamp_min(0)).sum() * a[k]
    assert torch.allclose(exp.raw[0], expected, atol=1e-5)
    assert torch.isfinite(exp.map).all()


def test_new_methods_run_on_a_unet_in_2d_and_3d(rng):
    for dims, shape in ((2, (16, 16)), (3, (8, 8, 8))):
        model = segcam.models.UNet(1, 3, width=4, depth=2, dims=dims).eval()
        x = torch.randn(1, *shape, generator=rng)
        for method in ("layer-cam", "grad-cam++"):
            exp = segcam.explain(model, x, Target(1, regions.box(*([2] * dims), *([6] * dims))),
                                 method=method, layer="downs.0")
            assert exp.heatmap.shape == shape and np.isfinite(exp.heatmap).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_saliency_is_the_largest_absolute_input_gradient(dims, rng):
    model = segcam.models.UNet(2, 3, width=4, depth=2, dims=dims).eval()
    shape = (12, 16) if dims == 2 else (8, 8, 8)
    x = torch.randn(1, 2, *shape, generator=rng)
    centre = tuple(s // 2 for s in shape)
    ex = segcam.Explainer(model)
    exp = ex.explain(x, Target(1, regions.pixel(*centre)), method="saliency")
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(xr)[(0, 1, *centre)], xr)
    expected = grad.abs().amax(1)
    assert exp.layer == "<input>" and torch.allclose(exp.raw, expected, atol=1e-6)
    assert torch.allclose(exp.map, expected / expected.max(), atol=1e-6)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(segcam.SegcamError, match="layer=None"):
        ex.explain(x, Target(1), method="saliency", layer="downs.0")


def test_saliency_and_a_layer_from_one_kept_forward(rng):
    model = segcam.models.UNet(2, 3, width=4, depth=2).eval()
    x = torch.randn(1, 2, 12, 16, generator=rng)
    ex = segcam.Explainer(model)
    fwd = ex.forward(x, layer=["<input>", "downs.1"])
    target = Target(2, regions.box(2, 2, 8, 8))
    sal = ex.explain(fwd, target, method="saliency")
    cam = ex.explain(fwd, target, layer="downs.1")
    assert torch.allclose(sal.raw, ex.explain(x, target, method="saliency").raw, atol=1e-6)
    with pytest.raises(segcam.SegcamError, match="takes no layer"):
        ex.explain(fwd, target, method="saliency", layer="downs.1")
    assert torch.allclose(cam.raw, ex.explain(x, target, layer="downs.1").raw, atol=1e-6)


def test_score_cam_weights_are_a_softmax_of_masked_region_scores(rng):
    model = linear_seg()
    x = torch.rand(1, 2, 6, 6, generator=rng)
    region = regions.box(1, 1, 4, 5)
    a = model.features(x)[0].detach()  # (3, 6, 6), same size as the input
    lo = a.flatten(1).amin(1)[:, None, None]
    hi = a.flatten(1).amax(1)[:, None, None]
    h = (a - lo) / (hi - lo)
    for reduce in ("sum", "mean"):  # Score-CAM honours the target's reduce
        exp = segcam.explain(model, x, Target(2, region, reduce=reduce), method="score-cam", layer="features")
        with torch.no_grad():
            masked = [model(x * h[k])[0, 2, 1:4, 1:5] for k in range(3)]
            scores = torch.stack([m.sum() if reduce == "sum" else m.mean() for m in masked])
        w = torch.softmax(scores.double(), 0).float()
        assert torch.allclose(exp.raw[0], (w[:, None, None] * a).sum(0), atol=1e-5)


def test_score_cam_in_2d_and_3d_with_batches(rng):
    for dims, shape in ((2, (16, 16)), (3, (8, 8, 8))):
        model = segcam.models.UNet(1, 3, width=4, depth=2, dims=dims).eval()
        x = torch.randn(2, 1, *shape, generator=rng)
        t = Target(1, regions.box(*([2] * dims), *([6] * dims)))
        a = segcam.explain(model, x, t, method="score-cam", layer="downs.1", batch_size=3)
        b = segcam.explain(model, x, t, method="score-cam", layer="downs.1")
        assert a.heatmap.shape == (2, *shape) and np.isfinite(a.heatmap).all()
        assert torch.allclose(a.raw, b.raw, atol=1e-5)
        assert all(p.grad is None for p in model.parameters())
