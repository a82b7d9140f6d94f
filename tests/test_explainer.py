"""The engine end to end: model outputs, layers of every shape, many targets, errors."""

from __future__ import annotations

import logging
import types
import warnings

import numpy as np
import pytest
import torch
from helpers import LinearSeg, linear_seg
from torch import nn

import segcam
from segcam import Target, regions
from segcam.models import UNet


def maps_equal(a, b, atol=1e-6):
    return torch.allclose(a.raw, b.raw, atol=atol) and torch.allclose(a.map, b.map, atol=atol)


# ------------------------------------------------------------------ model outputs
class DictOut(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return {"out": self.inner(x), "aux": torch.zeros(1)}


class LogitsOut(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return types.SimpleNamespace(logits=self.inner(x), hidden_states=None)


@pytest.mark.parametrize("wrap, prefix", [(DictOut, "inner."), (LogitsOut, "inner.")])
def test_dict_and_logits_outputs_match_plain_tensor(wrap, prefix, rng):
    inner = linear_seg()
    x = torch.randn(2, 3, 5, generator=rng)[None].expand(1, 2, 3, 5).clone()
    target = Target(2, regions.box(0, 1, 2, 4))
    plain = segcam.explain(inner, x, target, method="seg-hires-cam", layer="features")
    wrapped = segcam.explain(wrap(inner), x, target, method="seg-hires-cam", layer=prefix + "features")
    assert maps_equal(plain, wrapped)


def test_output_extractor_for_unusual_outputs(rng):
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = linear_seg()

        def forward(self, x):
            return {"seg": [self.net(x)]}

    x = torch.randn(1, 2, 4, 4, generator=rng)
    ex = segcam.Explainer(Nested(), output=lambda o: o["seg"][0])
    exp = ex.explain(x, Target(1), layer="net.features")
    assert exp.map.shape == (1, 4, 4)
    with pytest.raises(segcam.ModelError, match="cannot find logits"):
        segcam.explain(Nested(), x, Target(1), layer="net.features")


def test_binary_head_class_zero_is_negated_logit(rng):
    w_feat = torch.randn(3, 2, generator=rng)
    w = torch.randn(1, 3, generator=rng)
    binary = LinearSeg(w_feat, w).eval()
    two_class = LinearSeg(w_feat, torch.cat([-w, w])).eval()
    x = torch.randn(1, 2, 5, 5, generator=rng)
    for cls in (0, 1):
        target = Target(cls, regions.pixels([(1, 1), (3, 4)]))
        a = segcam.explain(binary, x, target, method="seg-hires-cam", layer="features")
        b = segcam.explain(two_class, x, target, method="seg-hires-cam", layer="features")
        assert maps_equal(a, b)
    with pytest.raises(segcam.TargetError, match="binary"):
        segcam.explain(binary, x, Target(2), layer="features")


def test_small_logits_are_resized_to_the_input_before_scoring(rng):
    class HalfRes(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(3, 4, 2, stride=2)
            self.head = nn.Conv2d(4, 3, 1)

        def forward(self, x):
            return self.head(self.features(x))

    model = HalfRes().eval()
    x = torch.randn(1, 3, 8, 8, generator=rng)
    exp = segcam.explain(model, x, Target(1, regions.pixel(5, 2)), method="seg-hires-cam",
                         layer="features")
    # reference: upsample the logits ourselves and differentiate the input-pixel logit
    a = model.features(x).detach().requires_grad_()
    up = nn.functional.interpolate(model.head(a), size=(8, 8), mode="bilinear", align_corners=False)
    (grad,) = torch.autograd.grad(up[0, 1, 5, 2], a)
    assert torch.allclose(exp.raw[0], (grad * a).sum(1)[0].detach(), atol=1e-6)
    assert exp.region.shape == (1, 8, 8) and exp.map.shape == (1, 8, 8)


# ------------------------------------------------------------------ token and tuple layers
class TinyViT(nn.Module):
    """Patch embedding → class token + tokens → token block → tuple block → grid → head."""

    def __init__(self, classes: int = 3, dim: int = 8, patch: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.Linear(dim, dim)
        self.attention = TupleBlock()
        self.to_grid = nn.Identity()
        self.head = nn.Conv2d(dim, classes, 1)

    def forward(self, x):
        p = self.patch(x)
        b, c, h, w = p.shape
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), p.flatten(2).transpose(1, 2)], 1)
        tokens = torch.relu(self.block(tokens))
        tokens, _ = self.attention(tokens)
        grid = self.to_grid(tokens[:, 1:].transpose(1, 2).reshape(b, c, h, w))
        return self.head(grid)


class TupleBlock(nn.Module):
    def forward(self, tokens):
        return tokens * 1.0, torch.ones(tokens.shape[0], 2, 2)


@pytest.mark.parametrize("method, options", [("seg-grad-cam", {}), ("seg-xres-cam", {"window": 2})])
def test_token_and_tuple_layers_equal_the_same_activations_as_a_grid(method, options, rng):
    torch.manual_seed(0)
    model = TinyViT().eval()
    x = torch.randn(1, 3, 24, 32, generator=rng)  # 6×8 grid of patches + 1 class token
    ex = segcam.Explainer(model)
    target = Target(0, regions.box(4, 4, 12, 20))
    tuple_layer = ex.explain(x, target, method=method, layer="attention", **options)
    grid_layer = ex.explain(x, target, method=method, layer="to_grid", **options)
    assert tuple_layer.layer_map.shape == (1, 6, 8)
    assert maps_equal(tuple_layer, grid_layer)
    tokens = ex.explain(x, target, method=method, layer="block", **options)
    assert tokens.map.shape == (1, 24, 32) and torch.isfinite(tokens.map).all()
    info = {i.name: i for i in ex.layers(x)}
    assert info["block"].layout.grid == (6, 8) and info["block"].layout.extra_tokens == 1


def test_token_grid_override(rng):
    model = TinyViT().eval()
    x = torch.randn(1, 3, 24, 32, generator=rng)
    target = Target(1, regions.pixel(3, 3))
    inferred = segcam.Explainer(model).explain(x, target, layer="attention")
    given = segcam.Explainer(model, token_grid=(6, 8)).explain(x, target, layer="attention")
    by_layer = segcam.Explainer(model, token_grid={"attention": (6, 8)}).explain(x, target, layer="attention")
    assert maps_equal(inferred, given) and maps_equal(inferred, by_layer)
    wrong = segcam.Explainer(model, token_grid=(7, 8))  # 56 > 49 tokens
    with pytest.raises(segcam.LayerError, match="token_grid"):
        wrong.explain(x, target, layer="attention")


def test_layer_without_spatial_output_names_alternatives(rng):
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(3, 4, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flat = nn.Flatten()
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            f = self.features(x)
            return self.head(f) + self.flat(self.pool(f)).sum() * 0

    x = torch.randn(1, 3, 6, 6, generator=rng)
    with pytest.raises(segcam.LayerError, match="neither a spatial map"):
        segcam.explain(Pooled().eval(), x, Target(0), layer="flat")


# ------------------------------------------------------------------ layers, defaults, many
def test_default_layer_is_the_bottleneck_and_is_reported(rng, caplog):
    model = UNet(3, 4, width=4, depth=3).eval()
    x = torch.randn(1, 3, 32, 32, generator=rng)
    ex = segcam.Explainer(model)
    with caplog.at_level(logging.INFO, logger="segcam"):
        exp = ex.explain(x, Target(1, regions.pixel(3, 3)))
    assert exp.layer == "downs.2" == ex.default_layer()
    assert "downs.2" in caplog.text
    assert exp.layer_map.shape == (1, 4, 4)


def test_layers_listing_has_shapes_from_one_forward(rng):
    model = UNet(3, 4, width=4, depth=2).eval()
    infos = {i.name: i for i in segcam.Explainer(model).layers(torch.zeros(1, 3, 16, 16))}
    assert infos["downs.1"].shape == (1, 16, 4, 4)
    assert infos["head"].shape == (1, 4, 16, 16)
    assert "downs.1" in str(infos["downs.1"])
    assert segcam.Explainer(model).layers()[0].shape[2:] == (256, 256)  # no image: a zero image


def test_several_layers_in_one_call_equal_single_calls(rng):
    model = UNet(3, 4, width=4, depth=2).eval()
    x = torch.randn(1, 3, 16, 16, generator=rng)
    ex = segcam.Explainer(model)
    target = Target(3, regions.box(2, 2, 9, 9))
    both = ex.explain_many(x, [target], method="seg-xres-cam", layer=["downs.1", model.ups[0]])
    assert both.layers == ["downs.1", "ups.0"] and len(both) == 2
    for name, exp in both.for_target(0).items():
        assert exp.layer == name and both[name] is exp and both[0, name] is exp
        assert maps_equal(exp, ex.explain(x, target, method="seg-xres-cam", layer=name))
    with pytest.raises(segcam.SegcamError, match="explain_many"):
        ex.explain(x, target, layer=["downs.1", "ups.0"])


@pytest.mark.parametrize("backward", ["loop", "batched"])
@pytest.mark.parametrize("dims", [2, 3])
def test_explain_many_equals_single_calls(backward, dims, rng):
    model = UNet(2, 3, width=4, depth=2, dims=dims).eval()
    spatial = (16, 20) if dims == 2 else (8, 8, 12)
    x = torch.randn(2, 2, *spatial, generator=rng)
    pred = model(x).argmax(1)
    c = int(pred[0].flatten()[0])
    corner = (0,) * dims
    targets = [
        Target(0, regions.pixel(*[s // 2 for s in spatial])),
        Target(1, regions.box(*([1] * dims), *[s - 2 for s in spatial]), reduce="mean"),
        Target(2),
        Target(c, regions.mask(pred[0] == c)),
        Target(int(pred[0][corner]), regions.mask(pred == pred[0][corner])),
    ]
    ex = segcam.Explainer(model)
    many = ex.explain_many(x, targets, method="seg-xres-cam", window=2, layer="downs.0",
                           backward=backward)
    for t, m in zip(targets, many):
        single = ex.explain(x, t, method="seg-xres-cam", window=2, layer="downs.0")
        assert maps_equal(m, single, atol=1e-5)
        assert m.heatmap.shape == (2, *spatial)


def test_kept_forward_is_retargeted_without_a_new_forward(rng):
    model = UNet(3, 4, width=4, depth=2).eval()
    x = torch.randn(1, 3, 16, 16, generator=rng)
    ex = segcam.Explainer(model)
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    fwd = ex.forward(x, layer=["downs.1", "ups.1"])
    assert len(calls) == 1
    for cls in range(4):
        kept = ex.explain(fwd, Target(cls, regions.box(0, 0, 8, 8)), layer="downs.1")
        fresh = ex.explain(x, Target(cls, regions.box(0, 0, 8, 8)), layer="downs.1")
        assert maps_equal(kept, fresh)
    assert ex.explain_many(fwd, [Target(0)]).layers == ["downs.1", "ups.1"]  # both captured layers
    with pytest.raises(segcam.SegcamError, match="several layers"):
        ex.explain(fwd, Target(0))  # one explanation, but which layer?
    many = ex.explain_many(fwd, [Target(0), Target(1)], layer="ups.1")
    assert len(many) == 2 and many[0].layer == "ups.1"
    with pytest.raises(segcam.LayerError, match="not captured"):
        ex.explain(fwd, Target(0), layer="stem")


def test_3d_volume_regions(rng):
    model = UNet(1, 3, width=4, depth=2, dims=3).eval()
    x = torch.randn(1, 8, 8, 8, generator=rng)  # (C, D, H, W) without batch axis
    ex = segcam.Explainer(model)
    assert ex.spatial_dims == 3
    pred = ex.forward(x).predicted[0]
    z, y, w = 4, 4, 4
    c = int(pred[z, y, w])
    for region in (regions.voxel(1, 2, 3), regions.box(0, 1, 2, 4, 5, 6), regions.everything(),
                   regions.predicted(), regions.instance(z, y, w), regions.mask(pred == c)):
        exp = ex.explain(x, Target(c, region), method="seg-xres-cam", window=(1, 2, 2))
        assert exp.heatmap.shape == (8, 8, 8)
        assert exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1
        assert np.isfinite(exp.heatmap).all()


def test_batch_axis_is_kept_only_when_given(rng):
    model = linear_seg()
    x = torch.randn(2, 4, 4, generator=rng)
    assert segcam.explain(model, x, Target(0), layer="features").heatmap.shape == (4, 4)
    assert segcam.explain(model, x[None], Target(0), layer="features").heatmap.shape == (1, 4, 4)
    assert segcam.explain(model, x.numpy(), Target(0), layer="features").heatmap.shape == (4, 4)


def test_class_names(rng):
    ex = segcam.Explainer(linear_seg(), class_names=["sky", "road", "car", "person"])
    x = torch.randn(2, 4, 4, generator=rng)
    by_name = ex.explain(x, Target("car"), layer="features")
    assert by_name.cls == 2 and maps_equal(by_name, ex.explain(x, Target(2), layer="features"))
    with pytest.raises(segcam.TargetError, match="'car'"):
        ex.explain(x, Target("cars"), layer="features")


def test_works_under_no_grad_and_inference_mode(rng):
    model = linear_seg()
    x = torch.randn(2, 4, 4, generator=rng)
    ref = segcam.explain(model, x, Target(1), layer="features")
    with torch.no_grad():
        assert maps_equal(segcam.explain(model, x, Target(1), layer="features"), ref)
    with torch.inference_mode():
        x_inf = x.clone()
        assert maps_equal(segcam.explain(model, x_inf, Target(1), layer="features"), ref)


# ------------------------------------------------------------------ errors
def test_unknown_layer_lists_closest_names():
    model = UNet(3, 4, width=4, depth=2)
    with pytest.raises(segcam.LayerNotFoundError, match=r"downs\.1") as info:
        segcam.explain(model, torch.zeros(3, 16, 16), Target(0), layer="down.1")
    assert "explainer.layers()" in str(info.value)
    with pytest.raises(segcam.LayerNotFoundError, match="not part of the model"):
        segcam.explain(model, torch.zeros(3, 16, 16), Target(0), layer=nn.Conv2d(1, 1, 1))


def test_wrong_channel_count_names_the_first_convolution():
    model = UNet(3, 4, width=4, depth=2)
    message = r"'stem\.0' expects 3 input channel\(s\) but the image has 1"
    with pytest.raises(segcam.ImageError, match=message):
        segcam.explain(model, torch.zeros(1, 16, 16), Target(0))


@pytest.mark.parametrize(
    "image, error, message",
    [
        (torch.zeros(16, 16), segcam.ImageError, "channel axis"),
        (torch.zeros(1, 1, 3, 16, 16), segcam.ImageError, "shape"),
        (torch.full((3, 16, 16), float("nan")), segcam.ImageError, "non-finite"),
        (torch.zeros(3, 16, 16, dtype=torch.uint8), segcam.ImageError, "float"),
        ("image.png", segcam.ImageError, "load_image"),
    ],
)
def test_bad_images(image, error, message):
    with pytest.raises(error, match=message):
        segcam.explain(UNet(3, 4, width=4, depth=2), image, Target(0))


@pytest.mark.parametrize(
    "target, message",
    [
        (Target(4), "out of range: the model has 4 classes"),
        (Target(-1), "out of range"),
        (Target(0, regions.pixel(16, 0)), "outside the image"),
        (Target(0, regions.box(0, 0, 17, 4)), "does not fit"),
        (Target(0, regions.mask(np.zeros((16, 16), bool))), "empty"),
        (Target(0, regions.mask(np.ones((8, 8), bool))), "shape"),
        (Target(0, regions.voxel(1, 2, 3)), "3 coordinate"),
    ],
)
def test_bad_targets(target, message):
    with pytest.raises(segcam.SegcamError, match=message):
        segcam.explain(UNet(3, 4, width=4, depth=2).eval(), torch.zeros(3, 16, 16), target)


def test_class_not_predicted_anywhere():
    model = linear_seg()
    x = torch.randn(2, 4, 4)
    pred = set(model(x[None]).argmax(1).unique().tolist())
    missing = next(c for c in range(4) if c not in pred)
    with pytest.raises(segcam.RegionError, match="not predicted anywhere"):
        segcam.explain(model, x, Target(missing, regions.predicted()), layer="features")


def test_layer_the_score_does_not_depend_on_warns_and_gives_zero_map(rng):
    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = linear_seg()
            self.aux = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            self.aux(x)  # computed and thrown away
            return self.net(x)

    x = torch.randn(1, 2, 4, 4, generator=rng)
    with pytest.warns(segcam.SegcamWarning, match="does not depend on layer 'aux'"):
        exp = segcam.explain(WithAux().eval(), x, Target(0), layer="aux")
    assert torch.equal(exp.map, torch.zeros(1, 4, 4))
    # a gradient that exists but is zero everywhere: a class whose logit ignores the features
    dead = linear_seg()
    with torch.no_grad():
        dead.head.weight[2] = 0
    with pytest.warns(segcam.SegcamWarning, match="class 2"):
        exp = segcam.explain(dead, x, Target(2, regions.pixel(1, 1)), layer="features")
    assert torch.equal(exp.map, torch.zeros(1, 4, 4)) and not torch.isnan(exp.raw).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        segcam.explain(WithAux().eval(), x, Target(0), layer="net.features")


def test_model_failure_and_bad_outputs_are_reported_as_model_errors(rng):
    class Crashes(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            assert x.shape[-1] == 224, "this model needs 224×224 inputs"
            return self.conv(x)

    with pytest.raises(segcam.ModelError, match="224"):
        segcam.explain(Crashes(), torch.zeros(3, 8, 8), Target(0), layer="conv")

    class NaNs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x) * float("nan")

    with pytest.raises(segcam.ModelError, match="non-finite logits"):
        segcam.explain(NaNs(), torch.zeros(3, 8, 8), Target(0), layer="conv")

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    with pytest.raises(segcam.ModelError, match="spatial axes"):
        segcam.explain(Flat(), torch.zeros(3, 8, 8), Target(0), layer="conv")


def test_layer_that_does_not_run(rng):
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = linear_seg()
            self.spare = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.net(x)

    with pytest.raises(segcam.LayerError, match="did not run"):
        segcam.explain(Unused(), torch.zeros(2, 4, 4), Target(0), layer="spare")


def test_explain_many_needs_a_list():
    ex = segcam.Explainer(linear_seg())
    with pytest.raises(segcam.SegcamError, match="list of targets"):
        ex.explain_many(torch.zeros(2, 4, 4), Target(0))
    with pytest.raises(segcam.SegcamError, match="backward"):
        ex.explain_many(torch.zeros(2, 4, 4), [Target(0)], backward="vmap")


def test_not_a_module():
    with pytest.raises(segcam.SegcamError, match="torch.nn.Module"):
        segcam.Explainer(lambda x: x)


def test_non_finite_logits_outside_the_region_do_not_spoil_it(rng):
    class CornerNaN(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = linear_seg()

        def forward(self, x):
            corner = torch.zeros(x.shape[-2:], dtype=torch.bool)
            corner[:, 0] = True
            return self.net(x).masked_fill(corner, float("nan"))

    x = torch.randn(1, 2, 4, 4, generator=rng)
    exp = segcam.explain(CornerNaN().eval(), x, Target(1, regions.box(0, 1, 4, 4)),
                         method="seg-hires-cam", layer="net.features")
    assert torch.isfinite(exp.map).all()
    with pytest.raises(segcam.ModelError, match="non-finite logits"):
        segcam.explain(CornerNaN().eval(), x, Target(1, regions.pixel(2, 0)), layer="net.features")


def test_readable_layer_names_and_a_set_default(rng):
    model = UNet(3, 4, width=4, depth=2).eval()
    x = torch.randn(1, 3, 16, 16, generator=rng)
    ex = segcam.Explainer(model, layer_names={"bottleneck": "downs.1", "decoder1": "ups.0"},
                          default_layer="decoder1")
    assert ex.default_layer() == "ups.0"
    assert ex.explain(x, Target(0)).layer == "ups.0"
    named = ex.explain(x, Target(0), layer="bottleneck")
    assert named.layer == "downs.1" and maps_equal(named, ex.explain(x, Target(0), layer="downs.1"))
    with pytest.raises(segcam.LayerNotFoundError, match="Readable names: bottleneck"):
        ex.explain(x, Target(0), layer="bottlenek")
