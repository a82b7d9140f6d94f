"""Sanity checks (Adebayo et al., 2018): the cascade's order and telling step, a model-independent
"method" failing, Seg-Grad-CAM on the trained default model passing, the user's model untouched."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from helpers import assert_untouched, snapshot
from torch import nn

from segcam import Target, regions
from segcam.core import INPUT
from segcam.data import SceneConfig, make_scene
from segcam.errors import SegcamError
from segcam.evaluation import cascading_randomisation, label_randomisation, spearman
from segcam.evaluation.sanity import cascade, randomise
from segcam.explainer import Explainer
from segcam.methods import Method
from segcam.models import default
from segcam.models.nets import DEFAULT_ARCH, UNet


@dataclass(frozen=True)
class EdgeMap(Method):
    """Edges of the image, |∇ mean_c x|: a "method" that never looks at the model."""

    on_input = True
    gradients = False

    def explain(self, ctx, layer):
        grey = ctx.image.mean(1)
        slopes = torch.gradient(grey, dim=tuple(range(1, grey.ndim)))
        edges = torch.stack(slopes).pow(2).sum(0).sqrt()
        return edges.unsqueeze(0).expand(len(ctx.targets), *edges.shape)


class Gained(nn.Module):
    """A learned input gain owned by the model itself (an ancestor of every layer)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.full((1,), 1.5))
        self.features = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return self.head(torch.relu(self.features(x * self.gain)))


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 0, SceneConfig(size=32))


def object_target(scene) -> Target:
    return Target(scene.classes[0], regions.mask(scene.instances == 1))


def test_a_model_independent_method_fails(scene):
    model = UNet(3, 6, width=2, depth=1)
    result = cascading_randomisation(model, scene.image, object_target(scene), method=EdgeMap())
    assert result.layer == INPUT and result.method == "EdgeMap"
    assert result.telling_step == len(result.steps)  # an input method: every module lies above
    assert all(s.spearman == pytest.approx(1.0) and s.ssim == pytest.approx(1.0) for s in result.steps)
    assert not result.passed and not result.changed
    assert result.verdict.startswith("FAILS the randomisation check: with every layer random")
    assert "rank correlation of 1.00" in result.verdict and "the image or its own sampling, not the model" in result.verdict


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seg_grad_cam_on_the_trained_model_passes(scene, seed):
    model, target = default(), object_target(scene)
    trained = Explainer(model).explain(scene.image, target, layer="downs.1").map[0]
    assert trained.max() > trained.min()  # a real map, not a flat one
    result = cascading_randomisation(model, scene.image, target, layer="downs.1", seed=seed)
    telling = result.steps[result.telling_step - 1]
    assert result.passed and telling.telling and 0 < abs(telling.spearman) < 0.4
    assert result.verdict.startswith("passes the randomisation check: with every layer above downs.1 random")
    assert sum(s.telling for s in result.steps) == 1


def test_the_telling_step_of_a_middle_layer():
    model = UNet(3, 3, width=2, depth=2, global_context=True)
    x = torch.rand(1, 3, 32, 32)
    groups, telling = cascade(model, x, "downs.0", "block")
    convs = ("conv.0", "conv.1", "conv.3", "conv.4")
    assert groups[:telling] == [
        ("head",),
        ("ups.1.conv.4", "ups.1.conv.3", "ups.1.conv.1", "ups.1.conv.0", "ups.1.up"),
        ("context.proj",),
        ("ups.0.conv.4", "ups.0.conv.3", "ups.0.conv.1", "ups.0.conv.0", "ups.0.up"),
        ("downs.1.1.4", "downs.1.1.3", "downs.1.1.1", "downs.1.1.0"),
    ]
    # the encoder below the layer is below it, though the decoder reads its skip (stem)
    assert groups[telling:] == [("downs.0.1.4", "downs.0.1.3", "downs.0.1.1", "downs.0.1.0"),
                                ("stem.4", "stem.3", "stem.1", "stem.0")]
    modules, telling_m = cascade(model, x, "downs.0", "module")
    assert [g for (g,) in modules] == [n for group in groups for n in group]
    above = {n for group in groups[:telling] for n in group}
    assert telling_m == len(above) == 5 + 5 + 4 + 1 + 1 and above >= {f"ups.0.{c}" for c in convs}


def test_a_container_s_own_parameters_count_as_below():
    groups, telling = cascade(Gained(), torch.rand(1, 2, 8, 8), "features", "module")
    assert groups == [("head",), ("",), ("features",)] and telling == 1  # the gain acts before features


def test_granularities_build_the_same_random_model():
    model, x = UNet(3, 3, width=2, depth=2), torch.rand(1, 3, 16, 16)
    built = []
    for granularity in ("block", "module"):
        groups, _ = cascade(model, x, "downs.1", granularity)
        clone, gen = copy.deepcopy(model), torch.Generator().manual_seed(4)
        for group in groups:
            randomise([clone.get_submodule(n) for n in group], gen)
        built.append(clone.state_dict())
    assert all(torch.equal(built[0][k], built[1][k]) for k in built[0])
    assert not torch.equal(built[0]["head.weight"], model.state_dict()["head.weight"])


def test_randomise_redraws_with_the_trained_spread():
    conv, norm = nn.Conv2d(16, 32, 3), nn.BatchNorm1d(4000)  # the norm's weight (1) and bias (0) are flat
    with torch.no_grad():
        conv.weight.mul_(3)
        norm.running_mean.fill_(0.5)
    spread, twin = float(conv.weight.detach().std()), copy.deepcopy(conv)
    randomise([conv, norm], torch.Generator().manual_seed(0))
    weight = conv.weight.detach()
    assert float(weight.std()) == pytest.approx(spread, rel=0.05) and abs(float(weight.mean())) < 0.01
    for flat in (norm.weight.detach(), norm.bias.detach()):
        assert float(flat.std()) == pytest.approx(0.02, rel=0.05) and abs(float(flat.mean())) < 0.002
    assert torch.equal(norm.running_mean, torch.full((4000,), 0.5))  # buffers are kept
    randomise([twin], torch.Generator().manual_seed(0))
    assert torch.equal(conv.weight, twin.weight) and torch.equal(conv.bias, twin.bias)


def test_the_user_model_is_untouched_and_a_module_names_the_layer():
    model = UNet(3, 3, width=2, depth=2).train()
    before = snapshot(model)
    result = cascading_randomisation(model, torch.rand(3, 32, 32), 1, layer=model.downs[0], granularity="module")
    assert result.layer == "downs.0" and result.telling_step is not None
    assert_untouched(model, before)


def test_three_dimensional_models():
    model = UNet(1, 2, width=2, depth=1, dims=3)
    result = cascading_randomisation(model, torch.rand(1, 8, 8, 8), 1, layer="downs.0")
    assert result.telling_step == 2 and len(result.steps) == 4  # head, ups.0 | downs.0, stem
    assert all(-1 <= s.spearman <= 1 and -1 <= s.ssim <= 1 for s in result.steps)
    rows = result.rows()
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[0]["randomised"] == "head"
    assert [r["telling"] for r in rows] == [False, True, False, False]
    assert set(rows[0]) == {"method", "layer", "step", "randomised", "spearman", "ssim", "telling", "flat", "noise"}
    assert rows[0]["noise"] is None  # a method without a seed has no sampling noise


def test_a_layer_with_nothing_above_cannot_be_checked():
    result = cascading_randomisation(UNet(3, 3, width=2, depth=1), torch.rand(3, 16, 16), 1, layer="ups.0")
    assert result.telling_step == 1  # only the head is above ups.0
    head = cascading_randomisation(Gained(), torch.rand(2, 8, 8), 1, layer="head")
    assert head.telling_step is None and not head.passed and head.verdict.startswith("cannot be checked")


def test_label_randomisation(scene):
    model, target = default(), object_target(scene)
    same = label_randomisation(model, copy.deepcopy(model), scene.image, target, layer="downs.1")
    assert same.spearman == pytest.approx(1.0) and same.ssim == pytest.approx(1.0)
    assert not same.passed and same.verdict.startswith("FAILS the label randomisation check")
    other = UNet(**DEFAULT_ARCH)
    found = label_randomisation(model, other, scene.image, target, layer="downs.1")
    trained = Explainer(model).explain(scene.image, target, layer="downs.1").map[0]
    random = Explainer(other).explain(scene.image, target, layer="downs.1").map[0]
    assert found.spearman == pytest.approx(spearman(trained, random))
    assert found.layer == "downs.1" and found.to_dict()["passed"] == found.passed


def test_bad_arguments_are_refused(scene):
    model, image, target = default(), scene.image, object_target(scene)
    cases = [
        ({"granularity": "layer"}, "granularity"),
        ({"seed": -1}, "seed"),
        ({"threshold": 2.0}, "threshold"),
        ({"options": [("window", 2)]}, "options must be a dict"),
        ({"window": 2}, "method options go in options"),
        ({"method": "grad-cam-typo"}, "unknown method"),
        ({"method": EdgeMap(), "options": {"window": 2}}, "next to a method object"),
        ({"method": "saliency", "layer": "downs.1"}, "takes no layer"),
        ({"layer": "downs.9"}, "no layer named"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SegcamError, match=message):
            cascading_randomisation(model, image, target, **kwargs)
    with pytest.raises(SegcamError, match="torch.nn.Module"):
        cascading_randomisation("model", image, target)
    with pytest.raises(SegcamError, match="random_model must be"):
        label_randomisation(model, None, image, target)
    with pytest.raises(SegcamError, match="random_model has no layer"):
        label_randomisation(model, UNet(3, 6, width=2, depth=1), image, target, layer="downs.2")


def test_a_region_that_follows_the_prediction_stays_where_the_trained_model_put_it(scene):
    # the randomised models predict other classes: a predicted-class region would vanish (an
    # error) or move; it is fixed to the trained model's pixels instead
    model = default()
    exp = Explainer(model).explain(scene.image, Target(scene.classes[0], regions.predicted()), layer="downs.1")
    result = cascading_randomisation(model, scene.image, Target(scene.classes[0], regions.predicted()),
                                     layer="downs.1", granularity="block")
    fixed = cascading_randomisation(model, scene.image, Target(exp.cls, regions.mask(exp.region[0])),
                                    layer="downs.1", granularity="block")
    assert [s.spearman for s in result.steps] == pytest.approx([s.spearman for s in fixed.steps])


@dataclass(frozen=True)
class SeededNoise(Method):
    """A map drawn from its seed alone: pure sampling noise, no image, no model."""

    on_input = True
    gradients = False
    seed: int = 0

    def explain(self, ctx, layer):
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.rand(ctx.image.shape[2:], generator=gen)
        return noise.expand(len(ctx.targets), ctx.image.shape[0], *noise.shape)


@dataclass(frozen=True)
class SeededEdges(EdgeMap):
    """The edge map with a seed option it ignores: sampling that does not matter."""

    seed: int = 0


def test_a_sampling_method_is_compared_with_other_samples_and_its_own_noise(scene):
    model = UNet(3, 6, width=2, depth=1)
    target = object_target(scene)
    # with the same seed the noise map would equal itself at every step (rho 1: a false FAIL); the
    # randomised maps use the next seed, and the method's own seed-to-seed agreement is its floor
    noisy = cascading_randomisation(model, scene.image, target, method=SeededNoise())
    assert noisy.noise is not None and abs(noisy.noise) < 0.2 and not noisy.passed
    assert all(abs(s.spearman) < 0.2 for s in noisy.steps)
    assert noisy.verdict.startswith("cannot tell: the method's own maps from two seeds agree")
    steady = cascading_randomisation(model, scene.image, target, method=SeededEdges())
    assert steady.noise == pytest.approx(1.0) and not steady.passed  # sampling-free: the plain verdict
    assert steady.verdict.startswith("FAILS the randomisation check")
    labels = label_randomisation(model, copy.deepcopy(model), scene.image, target, method=SeededNoise())
    assert labels.noise is not None and not labels.passed and labels.verdict.startswith("cannot tell")
