"""The user's model is left exactly as it was: modes, flags, gradients, hooks, weights."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_untouched, hook_count, snapshot
from torch import nn

import segcam
from segcam import Target, regions
from segcam.models import UNet


class Boom(RuntimeError):
    pass


class Fragile(nn.Module):
    """A U-Net with a switch that makes its forward fail after the hooked layers ran."""

    def __init__(self):
        super().__init__()
        self.unet = UNet(3, 4, width=4, depth=2)
        self.fail = False

    def forward(self, x):
        out = self.unet(x)
        if self.fail:
            raise Boom("failure inside the model")
        return out


@pytest.fixture
def model() -> Fragile:
    torch.manual_seed(0)
    m = Fragile()
    m.train()  # the user is mid-training ...
    m.unet.stem[1].eval()  # ... with one BatchNorm frozen
    m.unet.head.weight.requires_grad_(False)  # and one parameter frozen
    m.unet.ups[0].up.weight.grad = torch.ones_like(m.unet.ups[0].up.weight)  # an existing grad
    return m


def test_normal_call_leaves_model_untouched(model):
    before = snapshot(model)
    x = torch.randn(2, 3, 16, 16)
    ex = segcam.Explainer(model)
    ex.explain_many(x, [Target(1, regions.pixel(3, 3))], method="seg-xres-cam", layer=["unet.downs.1", "unet.stem"])
    ex.explain_many(x, [Target(c) for c in range(4)], backward="batched")
    ex.explain_many(x, [Target(c) for c in range(4)], backward="loop")
    ex.layers(x)
    fwd = ex.forward(x)
    ex.explain(fwd, Target(2))
    assert_untouched(model, before)
    assert hook_count(model) == 0
    assert torch.is_grad_enabled()


def test_explain_results_hold_no_graph(model):
    exp = segcam.Explainer(model).explain(torch.randn(3, 16, 16), Target(0))
    for t in (exp.map, exp.layer_map, exp.raw, exp.score):
        assert t.grad_fn is None and not t.requires_grad


@pytest.mark.parametrize(
    "break_it, error",
    [
        (lambda m: setattr(m, "fail", True), segcam.ModelError),  # inside the forward
        (lambda m: None, segcam.RegionError),  # after the forward, while resolving the region
    ],
)
def test_failing_call_leaves_model_untouched(model, break_it, error):
    before = snapshot(model)
    break_it(model)
    target = Target(0, regions.pixel(99, 99))
    with pytest.raises(error):
        segcam.Explainer(model).explain(torch.randn(3, 16, 16), target)
    model.fail = False
    assert_untouched(model, before)


def test_failing_layer_survey_and_method_leave_model_untouched(model):
    before = snapshot(model)
    model.fail = True
    with pytest.raises(segcam.ModelError, match="failure inside the model"):
        segcam.Explainer(model).layers(torch.randn(3, 16, 16))
    model.fail = False
    with pytest.raises(segcam.SegcamError, match="window"):
        segcam.Explainer(model).explain(torch.randn(3, 16, 16), Target(0), method="seg-xres-cam",
                                        layer="unet.downs.1", window=(2, 2, 2))
    assert_untouched(model, before)


def test_keyboard_interrupt_in_forward_restores_state(model):
    before = snapshot(model)

    def interrupt(module, args, output):
        raise KeyboardInterrupt

    handle = model.unet.head.register_forward_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        segcam.Explainer(model).explain(torch.randn(3, 16, 16), Target(0), layer="unet.downs.1")
    handle.remove()
    assert_untouched(model, before)


def test_no_parameter_gradient_and_no_backward_below_the_layer(model):
    """Gradients stop at the captured layer: parameters are never part of the graph."""
    seen = []
    handles = [p.register_hook(lambda g: seen.append("param")) for p in model.parameters()
               if p.requires_grad]
    handles.append(model.unet.stem.register_full_backward_hook(lambda *a: seen.append("stem")))
    try:
        segcam.Explainer(model).explain(torch.randn(3, 16, 16), Target(0), layer="unet.downs.0")
    finally:
        for h in handles:
            h.remove()
    assert seen == []
