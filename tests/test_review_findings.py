"""Findings of the review of the redesign, each shown fixed: in-place ops after a layer captured
without a graph, kept forward passes of another model, other threads' forward passes, stale module
caches, token grids by readable name, progress over several layers, and a method written against
the context that needs input gradients of modified inputs (integrated gradients)."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import LinearSeg, linear_seg
from torch import nn

import segcam
from segcam import SegcamError, Target, regions
from segcam.core.capture import Capture
from segcam.methods import Int, Method, option, unregister
from segcam.models import UNet


class InPlaceAfter(nn.Module):
    """``features`` (1×1 conv) → ReLU(inplace) → ``head``: the ReLU overwrites the features' output."""

    def __init__(self):
        super().__init__()
        self.lin = linear_seg()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.lin.head(self.relu(self.lin.features(x)))


def test_a_capture_without_a_graph_keeps_the_activation_an_in_place_op_would_overwrite(rng):
    model, x = InPlaceAfter().eval(), torch.randn(1, 2, 6, 6, generator=rng)
    capture = Capture({"features": model.lin.features}, record=False)
    with capture.hooks(), torch.no_grad():
        model(x)
    assert torch.equal(capture.activations["features"], model.lin.features(x).detach())
    assert float(capture.activations["features"].min()) < 0


def test_score_cam_sees_the_layers_output_not_what_a_later_in_place_op_made_of_it(rng):
    model, x = InPlaceAfter().eval(), torch.rand(1, 2, 6, 6, generator=rng)
    exp = segcam.explain(model, x, Target(1, regions.box(1, 1, 5, 5), reduce="mean"), method="score-cam",
                         layer="lin.features")
    a = model.lin.features(x)[0].detach()
    h = (a - a.flatten(1).amin(1)[:, None, None]) / (a.flatten(1).amax(1) - a.flatten(1).amin(1))[:, None, None]
    with torch.no_grad():
        scores = torch.stack([model(x * h[k])[0, 1, 1:5, 1:5].mean() for k in range(len(a))])
    w = torch.softmax(scores.double(), 0).float()
    assert torch.allclose(exp.raw[0], (w[:, None, None] * a).sum(0), atol=1e-5)


def test_a_kept_forward_of_another_model_is_refused(rng):
    x = torch.rand(3, 16, 16, generator=rng)
    one, other = segcam.Explainer(UNet(3, 3, width=4, depth=2)), segcam.Explainer(UNet(3, 3, width=4, depth=2))
    fwd = one.forward(x, layer="downs.1")
    with pytest.raises(SegcamError, match="run by another model"):
        other.explain(fwd, Target(1), layer="downs.1")
    assert segcam.Explainer(one.model).explain(fwd, Target(1), layer="downs.1").heatmap.shape == (16, 16)


def test_another_threads_forward_pass_is_not_captured(rng):
    model = linear_seg()
    capture = Capture({"features": model.features}, record=False)
    other = torch.rand(1, 2, 5, 5, generator=rng)
    with capture.hooks():
        thread = threading.Thread(target=lambda: model(other))
        thread.start()
        thread.join()
    assert capture.calls["features"] == 0 and capture.activations == {}


def test_the_classifier_adapter_takes_the_models_lock(rng):
    model = linear_seg()
    classifier = segcam.as_classifier(model, regions.box(0, 0, 3, 3))
    lock = segcam.core.model_lock(model)
    done = threading.Event()
    with lock:  # segcam is running the model in this thread
        worker = threading.Thread(target=lambda: (classifier(torch.rand(1, 2, 4, 4)), done.set()))
        worker.start()
        assert not done.wait(0.3)  # the adapter waits for the model
    worker.join(5)
    assert done.is_set()


def test_a_replaced_module_is_found_and_surveyed_again(rng):
    model = UNet(3, 3, width=4, depth=2).eval()
    ex = segcam.Explainer(model)
    x = torch.rand(3, 16, 16, generator=rng)
    ex.explain(x, Target(1), layer="head")
    before = {i.name: i.type for i in ex.layers(x)}
    model.head = nn.Sequential(nn.Conv2d(4, 3, 1))
    assert ex.explain(x, Target(1), layer="head").heatmap.shape == (16, 16)
    after = {i.name: i.type for i in ex.layers(x)}
    assert before["head"] == "Conv2d" and after["head"] == "Sequential" and "head.0" in after


class Tokens(nn.Module):
    """A 1×1 conv whose output a ``vit`` module turns into 2×8 = 16 tokens."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 1)
        self.vit = nn.Identity()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        tokens = self.vit(self.embed(x).flatten(2).transpose(1, 2))  # (B, 16, 4)
        return self.head(tokens).transpose(1, 2).reshape(x.shape[0], 2, *x.shape[2:])


def test_token_grids_given_by_readable_name_and_grids_that_do_not_fit(rng):
    x = torch.rand(3, 2, 8, generator=rng)
    by_name = segcam.Explainer(Tokens(), layer_names={"encoder": "vit"}, token_grid={"encoder": (4, 4)})
    assert by_name.explain(x, Target(1), layer="encoder").layer_map.shape == (1, 4, 4)
    too_small = segcam.Explainer(Tokens(), token_grid=(2, 2))  # 12 of the 16 tokens left over
    with pytest.raises(segcam.LayerError, match="token_grid"):
        too_small.explain(x, Target(1), layer="vit")


def test_progress_counts_over_every_layer():
    seen = []
    model = UNet(3, 3, width=4, depth=2).eval()
    segcam.Explainer(model).explain_many(torch.rand(3, 16, 16), [Target(1)], method="score-cam",
                                         layer=["downs.0", "downs.1"], progress=lambda d, t: seen.append((d, t)))
    fractions = [d / t for d, t in seen]  # layers have 4 and 8 channels: one share of the bar each
    assert fractions == sorted(fractions) and fractions[-1] == 1 and 0.5 in fractions


@pytest.mark.parametrize("progress", [lambda: None, lambda a, b, c: None])
def test_progress_must_take_done_and_total(progress):
    with pytest.raises(SegcamError, match=r"progress\(done, total\)"):
        segcam.explain(linear_seg(), torch.rand(2, 4, 4), Target(1), method="rise", progress=progress)


def test_regions_and_targets_made_from_odd_values():
    import numpy as np

    with pytest.raises(segcam.RegionError, match="list of \\(row, column\\) points"):
        regions.pixels(np.array(3))
    with pytest.raises(segcam.RegionError, match="list of \\(row, column\\) points"):
        regions.pixels("12")
    t = Target(2, regions.predicted(within=regions.box(1, 1, 4, 4)), reduce="mean")
    assert Target.from_dict(t.to_dict()) == t
    with pytest.raises(segcam.TargetError, match="dict with 'cls'"):
        Target.from_dict([2])


def test_rise_sizes_that_cannot_work_are_refused_before_drawing_masks():
    model = UNet(1, 2, width=4, depth=2, dims=3).eval()
    x = torch.rand(1, 8, 8, 12)
    blurred = segcam.explain(model, x, Target(1, regions.voxel(4, 4, 4)), method="rise", baseline="blur", n_masks=40)
    assert blurred.heatmap.shape == (8, 8, 12)  # the blur narrows to fit axes under 11 voxels
    with pytest.raises(segcam.MethodError, match="cells=9 is more than the image's smallest size 8"):
        segcam.explain(model, x, Target(1), method="rise", cells=9)
    with pytest.raises(segcam.MethodError, match="lower n_masks or cells"):
        segcam.explain(model, x, Target(1), method="rise", cells=8, n_masks=10**6)
    with pytest.raises(segcam.MethodError, match="seed must be at most"):
        segcam.explain(model, x, Target(1), method="rise", seed=2**70)


def test_a_method_with_input_gradients_of_modified_inputs_is_one_class(rng):
    """Integrated gradients (Sundararajan et al. 2017) with a zero baseline, written against the
    context: on a linear model it is exactly x ⊙ dS/dx."""

    @segcam.register("integrated-gradients-test")
    class IntegratedGradients(Method):
        """IG: (x - 0) times the mean gradient along the straight path from 0 to x."""

        on_input = True
        gradients = False
        steps: int = option(8, Int(low=1), "points on the path")

        def explain(self, ctx, layer):
            maps = []
            for b in range(ctx.image.shape[0]):
                alphas = torch.linspace(1 / self.steps, 1, self.steps).reshape(-1, *(1,) * ctx.image[b].ndim)
                grads = ctx.input_gradient(alphas * ctx.image[b], b)  # (T, steps, C, *S)
                maps.append((ctx.image[b] * grads.mean(1)).sum(1))
            return torch.stack(maps, dim=1)

    try:
        model = LinearSeg(torch.randn(3, 2, generator=rng), torch.randn(4, 3, generator=rng)).eval()
        x = torch.rand(2, 2, 5, 5, generator=rng)
        target = Target(3, regions.box(1, 1, 4, 4))
        exp = segcam.explain(model, x, target, method="integrated-gradients-test")
        xr = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(model(xr)[:, 3, 1:4, 1:4].sum(), xr)
        assert torch.allclose(exp.raw, (x * grad).sum(1), atol=1e-5)
        assert exp.details["modified_inputs"] == 16 and all(p.grad is None for p in model.parameters())
    finally:
        unregister("integrated-gradients-test")


def test_a_method_that_asks_for_gradients_it_did_not_declare_is_told_how_to_fix_it():
    @segcam.register("undeclared-gradients-test")
    class Undeclared(Method):
        """Undeclared: asks for gradients with gradients = False."""

        gradients = False

        def explain(self, ctx, layer):
            return ctx.gradient(layer).sum(2)

    try:
        with pytest.raises(SegcamError, match="set gradients = True on the method class"):
            segcam.explain(linear_seg(), torch.rand(2, 4, 4), Target(1), method="undeclared-gradients-test",
                           layer="features")
    finally:
        unregister("undeclared-gradients-test")
