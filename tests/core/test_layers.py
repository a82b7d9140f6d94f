"""Layer lookup, token grids, the default bottleneck and the capture hooks."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from torch import nn

import segcam
from segcam import Target
from segcam.core.capture import Capture, main_tensor, replace_main
from segcam.core.layers import (
    Layout,
    bottleneck,
    find_layer,
    infer_grid,
    layout_of,
)


@pytest.mark.parametrize(
    "tokens, spatial, grid, extra",
    [
        (197, (224, 224), (14, 14), 1),  # ViT-B/16 with a class token
        (198, (224, 224), (14, 14), 2),  # DeiT: class + distillation token
        (196, (224, 224), (14, 14), 0),
        (16 * 24, (64, 96), (16, 24), 0),  # SegFormer stage 1 (stride 4)
        (17 * 17, (65, 65), (17, 17), 0),  # odd input, ceil(65 / 4) = 17
        (14 * 28 + 1, (224, 448), (14, 28), 1),
        (6 * 6 * 6, (96, 96, 96), (6, 6, 6), 0),  # UNETR, 16³ patches
        (4 * 8 * 8, (32, 64, 64), (4, 8, 8), 0),
    ],
)
def test_infer_grid(tokens, spatial, grid, extra):
    assert infer_grid(tokens, spatial) == (grid, extra)


def test_infer_grid_gives_up_on_tokens_that_fit_no_grid():
    assert infer_grid(1000, (224, 224)) is None  # no square between 992 and 1000 tokens
    assert layout_of(torch.zeros(1, 1000, 4), (224, 224)) is None
    given = layout_of(torch.zeros(1, 1000, 4), (224, 224), token_grid=(31, 32))
    assert given == Layout("tokens", (31, 32), 8)


def test_layout_turns_tokens_and_their_gradients_into_maps():
    grid = torch.arange(2 * 4 * 6.0).reshape(1, 2, 4, 6)  # (B, C, h, w)
    tokens = torch.cat([torch.full((1, 1, 2), -1.0), grid.flatten(2).transpose(1, 2)], 1)
    lay = layout_of(tokens, (8, 12))
    assert lay == Layout("tokens", (4, 6), 1)
    assert torch.equal(lay.to_map(tokens), grid)
    stacked = torch.stack([tokens, 2 * tokens])  # (targets, B, N, C): gradients of K targets
    assert torch.equal(lay.to_map(stacked), torch.stack([grid, 2 * grid]))


def test_main_tensor_and_replace_main_keep_container_types():
    t, u = torch.zeros(1), torch.ones(1)
    Pair = namedtuple("Pair", "hidden attn")
    for container, key in [((None, t, u), 1), ([t, u], 0), (Pair(t, u), 0), ({"a": 3, "h": t}, "h")]:
        found, k = main_tensor(container)
        assert found is t and k == key
        replaced = replace_main(container, k, u)
        assert type(replaced) is type(container)
        assert main_tensor(replaced)[0] is u
    assert main_tensor("text") == (None, None)


def test_find_layer_by_name_and_module_and_suggestions():
    model = segcam.models.UNet(3, 2, width=4, depth=2)
    assert find_layer(model, "downs.1")[1] is model.downs[1]
    assert find_layer(model, model.head) == ("head", model.head)
    with pytest.raises(segcam.LayerNotFoundError, match="Closest names: .*ups.0"):
        find_layer(model, "up.0")
    with pytest.raises(segcam.LayerNotFoundError):
        find_layer(model, "")  # the root is not a layer
    with pytest.raises(segcam.LayerNotFoundError, match=r"its name \(a str\) or as the module itself"):
        find_layer(model, 3)


class SqueezeNet(nn.Module):
    """Conv → squeeze-excitation (1×1 pooled map with many channels) → head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Conv2d(8, 64, 1)
        self.reduce = nn.Conv2d(64, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        f = self.features(x)
        gate = torch.sigmoid(self.reduce(self.excite(self.squeeze(f))))
        return nn.functional.interpolate(self.head(f * gate), size=x.shape[2:])


def test_bottleneck_skips_globally_pooled_maps():
    infos = segcam.Explainer(SqueezeNet()).layers(torch.zeros(3, 16, 16))
    assert bottleneck(infos) == "features"


def test_bottleneck_with_nothing_spatial():
    with pytest.raises(segcam.LayerError, match="layer="):
        bottleneck([])


def test_capture_is_immune_to_inplace_ops_after_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(2, 1, 1))
    x = torch.randn(1, 1, 5, 5)
    capture = Capture({"0": model[0]})
    for p in model.parameters():
        p.requires_grad_(False)
    with capture.hooks(), torch.enable_grad():
        out = model(x)
    act = capture.activations["0"]
    assert torch.equal(act, model[0](x))  # pre-ReLU values, with negatives
    assert (act < 0).any()
    assert act.is_leaf and act.requires_grad
    (grad,) = torch.autograd.grad(out.sum(), act)
    expected = (model[0](x) > 0).float() * model[2].weight.reshape(1, 2, 1, 1)
    assert torch.allclose(grad, expected)
    assert all(not m._forward_hooks for m in model.modules())


def test_module_called_several_times_uses_the_last_call():
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.act = nn.ReLU()
            self.head = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.head(self.act(self.conv(self.act(x))))

    model = Reuse().eval()
    ex = segcam.Explainer(model)
    x = torch.randn(2, 4, 4)
    info = {i.name: i for i in ex.layers(x)}
    assert info["act"].calls == 2 and "called 2×" in str(info["act"])
    a = segcam.explain(model, x, Target(0), method="seg-hires-cam", layer="act")
    act = torch.relu(model.conv(torch.relu(x[None])))
    w = model.head.weight[0, :, 0, 0]
    assert torch.allclose(a.raw[0], (w[:, None, None] * act[0]).sum(0), atol=1e-6)


def test_bottleneck_prefers_a_bare_tensor_to_a_container_returning_it():
    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.stage = nn.Conv2d(3, 8, 3, stride=4, padding=1)

        def forward(self, x):
            return {"out": self.stage(x)}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Backbone()
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return nn.functional.interpolate(self.head(self.backbone(x)["out"]), size=x.shape[2:])

    infos = segcam.Explainer(Net()).layers(torch.zeros(3, 16, 16))
    assert bottleneck(infos) == "backbone.stage"
