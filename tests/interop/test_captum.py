"""The segmentation-as-classifier adapter, alone and under captum's classifier explainers."""

from __future__ import annotations

import pytest
import torch
from helpers import LinearSeg, linear_seg

import segcam
from segcam import Target, regions
from segcam.models import UNet


def test_scores_are_region_sums_for_every_class(rng):
    model = linear_seg()
    x = torch.randn(2, 2, 4, 5, generator=rng)
    region = regions.box(1, 1, 3, 4)
    scores = segcam.as_classifier(model, region)(x)
    logits = model(x)
    assert torch.allclose(scores, logits[:, :, 1:3, 1:4].sum((2, 3)))
    mean = segcam.as_classifier(model, region, reduce="mean")(x)
    assert torch.allclose(mean, logits[:, :, 1:3, 1:4].mean((2, 3)))
    whole = segcam.as_classifier(model)(x)
    assert torch.allclose(whole, logits.sum((2, 3)))


def test_binary_head_gives_two_scores(rng):
    model = LinearSeg(torch.randn(3, 2, generator=rng), torch.randn(1, 3, generator=rng)).eval()
    x = torch.randn(1, 2, 4, 4, generator=rng)
    s = segcam.as_classifier(model, regions.pixel(1, 2))(x)
    z = model(x)[0, 0, 1, 2]
    assert torch.allclose(s, torch.stack([-z, z])[None])


def test_class_dependent_regions_need_the_class(rng):
    model = linear_seg()
    with pytest.raises(segcam.RegionError, match="cls="):
        segcam.as_classifier(model, regions.predicted())
    x = torch.randn(1, 2, 4, 4, generator=rng)
    c = int(model(x).argmax(1)[0, 0, 0])
    s = segcam.as_classifier(model, regions.predicted(), cls=c)(x)
    mask = model(x).argmax(1) == c
    assert torch.allclose(s, (model(x) * mask[:, None]).sum((2, 3)))


@pytest.mark.parametrize("dims", [2, 3])
def test_captum_layer_grad_cam_through_the_adapter_equals_seg_grad_cam(dims, rng):
    captum_attr = pytest.importorskip("captum.attr", reason="captum is the optional extra [captum]")
    model = UNet(2, 3, width=4, depth=2, dims=dims).eval()
    shape = (16, 20) if dims == 2 else (8, 8, 12)
    x = torch.randn(1, 2, *shape, generator=rng)
    region = regions.box(*([2] * dims), *[s - 3 for s in shape])
    ours = segcam.explain(model, x, Target(1, region), layer="downs.1")
    clf = segcam.as_classifier(model, region)
    theirs = captum_attr.LayerGradCam(clf, model.downs[1]).attribute(x, target=1, relu_attributions=False)
    assert torch.allclose(theirs[:, 0], ours.raw, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_captum_input_attributions_through_the_adapter(rng):
    captum_attr = pytest.importorskip("captum.attr", reason="captum is the optional extra [captum]")
    model = UNet(2, 3, width=4, depth=2).eval()
    x = torch.randn(1, 2, 16, 16, generator=rng)
    clf = segcam.as_classifier(model, regions.pixel(5, 7))
    saliency = captum_attr.Saliency(clf).attribute(x, target=2)
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(xr)[0, 2, 5, 7], xr)
    assert torch.allclose(saliency, grad.abs(), atol=1e-6)
    ig = captum_attr.IntegratedGradients(clf).attribute(x, target=2, n_steps=16)
    assert ig.shape == x.shape and torch.isfinite(ig).all()
