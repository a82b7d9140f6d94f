"""Precomputed linear maps equal the engine's maps: by hand on a linear model, and on the default model."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import LinearSeg, assert_untouched, linear_seg, snapshot
from torch import nn

import segcam
import segcam.linear
from segcam import Target, regions
from segcam.linear import LinearMaps, linear_method, table_bytes

METHODS = [("seg-grad-cam", {}), ("seg-hires-cam", {}), ("seg-xres-cam", {"pool": "mean", "window": 3})]


def assert_same(fast: segcam.Explanation, slow: segcam.Explanation) -> None:
    """Equal maps up to float rounding (forward- vs reverse-mode derivatives sum in other orders)."""
    tol = 1e-5 * max(1.0, float(slow.raw.abs().max()))
    assert torch.allclose(fast.raw, slow.raw, rtol=1e-5, atol=tol)
    assert torch.allclose(fast.layer_map, slow.layer_map, atol=1e-4)
    assert torch.allclose(fast.map, slow.map, atol=1e-4)
    assert torch.equal(fast.region, slow.region) and torch.allclose(fast.score, slow.score)
    assert (fast.cls, fast.layer, fast.method, fast.options) == (slow.cls, slow.layer, slow.method, slow.options)


# ------------------------------------------------------------------ by hand
def test_hires_table_of_a_linear_model_is_known_by_hand(rng):
    # z_c(u) = sum_k W[c,k] A_k(u), so P_u(v) = [u = v] sum_k W[c,k] A_k(v) for any weights w(u)
    model = linear_seg()
    x = torch.randn(1, 2, 5, 6, generator=rng)
    maps = LinearMaps.build(segcam.Explainer(model), x, layer="features", method="seg-hires-cam")
    a = model.features(x).detach()
    w = torch.rand(1, 5, 6, generator=rng) - 0.5
    for c in range(4):
        expected = w * torch.einsum("k,bkhw->bhw", model.head.weight[c, :, 0, 0].detach(), a)
        assert torch.allclose(maps.map(w, c), expected, atol=1e-6)
    assert maps.table.shape == (4, 30, 30) and maps.nbytes == table_bytes((5, 6), (5, 6), 4)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("method, options", METHODS)
def test_linear_model_equals_engine(dims, method, options, rng):
    model = linear_seg(dims=dims)
    spatial = (6, 7) if dims == 2 else (3, 4, 5)
    x = torch.randn(1, 2, *spatial, generator=rng)
    ex = segcam.Explainer(model)
    maps = LinearMaps.build(ex, x, layer="features", method=method, options=options)
    m = torch.zeros(spatial, dtype=torch.bool)
    m[(slice(1, 3),) * dims] = True
    for region in (regions.pixels([(1,) * dims]), regions.mask(m), None):
        for reduce in ("sum", "mean"):
            target = Target(2, region, reduce=reduce)
            assert_same(maps.explain(target), ex.explain(x, target, method=method, layer="features", **options))


def test_binary_head_and_a_kept_forward(rng):
    model = LinearSeg(torch.randn(3, 2, generator=rng), torch.randn(1, 3, generator=rng)).eval()
    x = torch.randn(1, 2, 6, 6, generator=rng)
    ex = segcam.Explainer(model)
    fwd = ex.forward(x, "features")
    maps = segcam.LinearMaps.build(ex, fwd, method="seg-hires-cam")
    assert segcam.linear_method is linear_method
    assert maps.classes == (0, 1) and maps.layer == "features"
    for cls in (0, 1):
        target = Target(cls, regions.box(1, 1, 4, 3))
        assert_same(maps.explain(target), ex.explain(fwd, target, method="seg-hires-cam"))


class TinyTokens(nn.Module):
    """Patches → class token + tokens → token block → grid → head."""

    def __init__(self, dim: int = 6, patch: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.Linear(dim, dim)
        self.head = nn.Conv2d(dim, 3, 1)

    def forward(self, x):
        p = self.patch(x)
        b, c, h, w = p.shape
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), p.flatten(2).transpose(1, 2)], 1)
        tokens = torch.tanh(self.block(tokens))
        return self.head(tokens[:, 1:].transpose(1, 2).reshape(b, c, h, w))


@pytest.mark.parametrize("method, options", METHODS)
def test_token_layer_equals_engine(method, options, rng):
    model = TinyTokens().eval()
    x = torch.randn(1, 3, 12, 16, generator=rng)  # a 3×4 grid of patches and a class token
    ex = segcam.Explainer(model)
    maps = LinearMaps.build(ex, x, layer="block", method=method, options=options)
    assert maps.grid == (3, 4)
    target = Target(1, regions.box(2, 3, 9, 11))
    assert_same(maps.explain(target), ex.explain(x, target, method=method, layer="block", **options))


class Cube(torch.autograd.Function):
    """x³ with backward and forward-mode rules but no vmap rule: vmap refuses it."""

    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        (ctx.x,) = inputs
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        return 3 * ctx.x**2 * grad

    @staticmethod
    def jvp(ctx, tangent):
        return 3 * ctx.x**2 * tangent


class Cubes(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.head(Cube.apply(self.features(x)))


def test_models_vmap_cannot_run_fall_back_to_one_jvp_per_cell(rng):
    model = Cubes().eval()
    x = torch.randn(1, 2, 5, 5, generator=rng)
    ex = segcam.Explainer(model)
    maps = LinearMaps.build(ex, x, layer="features", method="seg-grad-cam")
    target = Target(0, regions.pixel(2, 3))
    assert_same(maps.explain(target), ex.explain(x, target, layer="features"))
    with pytest.raises(RuntimeError, match="vmap"):  # why the fallback is needed
        torch.func.vmap(lambda t: torch.func.jvp(Cube.apply, (x,), (t,))[1])(x[None])


# ------------------------------------------------------------------ the default model
@pytest.fixture(scope="module")
def default():
    loaded = segcam.load_model("default")
    ex = segcam.Explainer.from_loaded(loaded)
    image = segcam.data.sample_scenes()[0].image
    return ex, image


@pytest.mark.parametrize("layer", ["downs.2", "ups.0"])
@pytest.mark.parametrize("method, options", METHODS)
def test_default_model_equals_engine(default, layer, method, options):
    ex, image = default
    before = snapshot(ex.model)
    maps = LinearMaps.build(ex, image, layer=layer, method=method, options=options)
    predicted = ex.forward(image, layer).predicted
    cls = int(predicted[predicted > 0].mode().values)  # the commonest foreground class
    for region in (regions.pixel(30, 20), regions.box(10, 12, 40, 30), regions.predicted()):
        for reduce in ("sum", "mean"):
            target = Target(cls, region, reduce=reduce)
            assert_same(maps.explain(target), ex.explain(image, target, method=method, layer=layer, **options))
    assert_untouched(ex.model, before)


def test_one_class_table_and_its_size_limit(default):
    ex, image = default
    every = table_bytes((8, 8), (64, 64), 6)
    assert every == 4 * 64 * 4096 * 6
    with pytest.raises(segcam.SegcamError, match="max_bytes"):
        LinearMaps.build(ex, image, layer="downs.2", max_bytes=every - 1)
    one = LinearMaps.build(ex, image, layer="downs.2", cls=3, max_bytes=every // 6)
    assert one.classes == (3,) and one.nbytes == every // 6
    assert_same(one.explain(Target(3, regions.pixel(5, 5))), ex.explain(image, Target(3, regions.pixel(5, 5))))
    with pytest.raises(segcam.SegcamError, match="hold class"):
        one.explain(Target(2, regions.pixel(5, 5)))
    with pytest.raises(segcam.SegcamError, match="384 MiB, over max_bytes=256 MiB; pass cls="):
        LinearMaps.build(ex, image, layer="ups.2")  # a 64×64 layer: 64 MiB a class


# ------------------------------------------------------------------ what is linear, and refusals
def test_linear_method_truths():
    assert linear_method("seg-grad-cam") and linear_method("seg-hires-cam")
    assert linear_method("seg-xres-cam", {"pool": "mean"})
    assert linear_method("seg-xres-cam", {"window": None, "pool": "mean"})  # = seg-grad-cam
    assert linear_method("seg-xres-cam", {"window": 1}) and linear_method("seg-xres-cam", {"window": (1, 1)})
    assert not linear_method("seg-xres-cam") and not linear_method("seg-xres-cam", {"window": None})
    for name in ("layer-cam", "grad-cam++", "rise", "score-cam"):
        assert not linear_method(name)
    with pytest.raises(segcam.MethodError, match="unknown method"):
        linear_method("grad-kam")
    with pytest.raises(segcam.MethodError, match="pool"):
        linear_method("seg-xres-cam", {"pool": "median"})


def test_bad_arguments_name_the_fix(rng):
    model = linear_seg()
    x = torch.randn(1, 2, 4, 4, generator=rng)
    ex = segcam.Explainer(model)
    with pytest.raises(segcam.MethodError, match="not linear"):
        LinearMaps.build(ex, x, layer="features", method="seg-xres-cam")
    with pytest.raises(segcam.SegcamError, match="segcam.Explainer"):
        LinearMaps.build(model, x)
    with pytest.raises(segcam.SegcamError, match="max_bytes must be positive"):
        LinearMaps.build(ex, x, layer="features", max_bytes=0)
    with pytest.raises(segcam.TargetError, match="out of range"):
        LinearMaps.build(ex, x, layer="features", cls=9)
    with pytest.raises(segcam.SegcamError, match="one image"):
        LinearMaps.build(ex, torch.randn(2, 2, 4, 4, generator=rng), layer="features")
    with pytest.raises(segcam.LayerError, match="not the input"):
        LinearMaps.build(ex, x, layer="<input>")
    with pytest.raises(segcam.LayerNotFoundError, match="no layer named"):
        LinearMaps.build(ex, x, layer="featurez")
    with pytest.raises(segcam.LayerError, match="not captured"):
        LinearMaps.build(ex, ex.forward(x, "features"), layer="head")
    with pytest.raises(segcam.LayerError, match="pass layer=... with one of those"):
        LinearMaps.build(ex, ex.forward(x, ["features", "head"]))
    with pytest.raises(segcam.SegcamError, match="another model"):
        LinearMaps.build(segcam.Explainer(linear_seg()), ex.forward(x, "features"))
    maps = LinearMaps.build(ex, x, layer="features")
    with pytest.raises(segcam.SegcamError, match=r"shape \(1, 4, 4\)"):
        maps.map(torch.ones(4, 4), 0)
    with pytest.raises(segcam.SegcamError, match="finite"):
        maps.map(torch.full((1, 4, 4), float("nan")), 0)
    with pytest.raises(segcam.SegcamError, match="hold class"):
        maps.map(torch.ones(1, 4, 4), True)


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.block(torch.relu(self.block(x)))


class NoForwardRule(torch.autograd.Function):
    """Doubles its input; has a backward rule but no forward-mode (jvp) rule."""

    @staticmethod
    def forward(x):
        return x * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class NoJvp(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(2, 3, 1)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.head(NoForwardRule.apply(self.features(x)))


def test_layers_that_run_twice_and_models_without_forward_derivatives_are_refused(rng):
    x = torch.randn(1, 2, 4, 4, generator=rng)
    with pytest.raises(segcam.LayerError, match="runs 2 times"):
        LinearMaps.build(segcam.Explainer(Twice().eval()), x, layer="block")
    model = NoJvp().train()
    before = snapshot(model)
    with pytest.raises(segcam.ModelError, match="forward-mode derivatives.*explainer.explain"):
        LinearMaps.build(segcam.Explainer(model), x, layer="features")
    assert_untouched(model, before)


def test_the_model_is_untouched(rng):
    model = linear_seg().train()
    model.head.weight.grad = torch.ones_like(model.head.weight)
    before = snapshot(model)
    ex = segcam.Explainer(model)
    x = torch.randn(1, 2, 4, 4, generator=rng)
    maps = LinearMaps.build(ex, x, layer="features", method="seg-xres-cam", options={"pool": "mean"})
    maps.explain(Target(1, regions.box(0, 0, 2, 3)))
    assert_untouched(model, before)


def test_other_requests_for_the_model_run_between_chunks(rng, monkeypatch):
    """The build holds the model's lock one chunk at a time: another thread's explain (another
    user's click) runs to its end between two chunks, and the table is the same."""
    model = linear_seg()
    x = torch.randn(1, 2, 4, 5, generator=rng)
    ex = segcam.Explainer(model)
    whole = LinearMaps.build(ex, x, layer="features")
    target = Target(1, regions.box(0, 0, 2, 3))
    alone = ex.explain(x, target, layer="features")
    chunks: list[int] = []
    clicks: list[segcam.Explanation] = []
    tangents = segcam.linear._tangents

    def click_then_tangents(method, a_map, idx):  # before each chunk: a click, then the chunk's tangents
        if chunks:
            click = threading.Thread(target=lambda: clicks.append(ex.explain(x, target, layer="features")))
            click.start()
            click.join(timeout=5)
            assert not click.is_alive(), "another thread's explain waited for the whole build"
            assert len(clicks) == len(chunks)  # it ended before this chunk began
        chunks.append(len(idx))
        return tangents(method, a_map, idx)

    monkeypatch.setattr(segcam.linear, "batch_size_for", lambda image: 6)
    monkeypatch.setattr(segcam.linear, "_tangents", click_then_tangents)
    chunked = LinearMaps.build(ex, x, layer="features")
    assert chunks == [6, 6, 6, 2] and len(clicks) == 3  # each click ended before the next chunk began
    assert torch.equal(chunked.table, whole.table)
    for click in clicks:
        assert torch.equal(click.map, alone.map)
