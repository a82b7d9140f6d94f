"""The masking test and its threshold sweep: exact values on a model whose masked prediction is known."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import assert_untouched, linear_seg, snapshot
from torch import nn

import segcam
from segcam import Target
from segcam.errors import ImageError, ModelError, RegionError, SegcamError, SegcamWarning, TargetError
from segcam.evaluation import MaskingResult, masking_test, sufficiency_curve


def level_model(level: float = 0.5, dims: int = 2) -> nn.Module:
    """Two classes, per pixel: logits (level, x), so class 1 exactly where x > level."""
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(1, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1, 0] = 1
        conv.bias.copy_(torch.tensor([level, 0.0]))
    return conv.eval()


class Counting(nn.Module):
    """Counts forward passes; raises from the ``fail``-th one on."""

    def __init__(self, inner: nn.Module, fail: int = 10**9):
        super().__init__()
        self.inner, self.calls, self.fail = inner, 0, fail

    def forward(self, x):
        self.calls += 1
        if self.calls >= self.fail:
            raise RuntimeError("out of memory")
        return self.inner(x)


# image with class-1 pixels A = the top-left 2×2 block and (2, 3), (3, 3); region M = columns 0-1
IMAGE = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1.0]])[None]
REGION = torch.zeros(4, 4, dtype=torch.bool)
REGION[:, :2] = True
HEAT = torch.zeros(4, 4)
HEAT[0, 0], HEAT[0, 1], HEAT[1, 0], HEAT[2, 3] = 1.0, 0.5, 0.1, 0.3


@pytest.mark.parametrize("baseline", ["zero", "mean"])  # the mean 6/16 is below the level too
def test_masking_dice_and_kept_share_exactly(baseline):
    # kept K = {(0,0), (0,1), (2,3)}: the masked prediction of class 1 in M is {(0,0), (0,1)}
    # against the original block of 4: Dice = 2·2 / (2 + 4)
    r = masking_test(level_model(), IMAGE, HEAT, REGION, 1, baseline=baseline)
    assert isinstance(r, MaskingResult)
    assert r.dice == 2 / 3 and r.kept == 3 / 16
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 0] = expected[0, 1] = expected[2, 3] = True
    assert torch.equal(r.keep, expected)
    fill = 0.0 if baseline == "zero" else 6 / 16
    assert torch.equal(r.masked_image, torch.where(expected, IMAGE, torch.tensor(fill)))
    assert r.to_dict() == {"threshold": 0.2, "dilation": 0, "baseline": baseline, "dice": 2 / 3, "kept": 3 / 16}


def test_masking_of_class_0_and_the_threshold():
    # class 0 in M: original = the 4 pixels of rows 2-3; masked with zeros every pixel of M but
    # (0,0) is class 0 at threshold 1.0, so 7 pixels: Dice = 2·4 / (7 + 4)
    r = masking_test(level_model(), IMAGE, HEAT, REGION, 0, threshold=1.0, baseline="zero")
    assert r.dice == 8 / 11 and r.kept == 1 / 16


def test_dilation_keeps_the_grown_squares_exactly():
    # the squares of side 3 around the kept pixels, clipped: 11 pixels, the whole block kept
    r = masking_test(level_model(), IMAGE, HEAT, REGION, 1, baseline="zero", dilation=1)
    assert r.dice == 1.0 and r.kept == 11 / 16 and r.dilation == 1
    assert r.keep.tolist() == [[True, True, True, False], [True, True, True, True],
                               [False, False, True, True], [False, False, True, True]]


def test_masking_3d_exactly():
    volume = torch.zeros(1, 2, 3, 3)
    volume[0, :, :2, :2] = 1  # 8 voxels of class 1, all in the region
    region = torch.zeros(2, 3, 3, dtype=torch.bool)
    region[:, :2, :] = True
    heat = torch.zeros(2, 3, 3)
    heat[0, 0, 0] = heat[1, 1, 1] = 1.0
    r = masking_test(level_model(dims=3), volume, heat, region, 1, baseline="zero")
    assert r.dice == 2 * 2 / (2 + 8) and r.kept == 2 / 18
    grown = masking_test(level_model(dims=3), volume, heat, region, 1, baseline="zero", dilation=1)
    assert grown.dice == 1.0 and grown.kept == 18 / 18


def test_sufficiency_area_exactly():
    # points (0, 0) all-baseline, (3/16, 2/3) at 0.2, (1, 1)
    curve = sufficiency_curve(level_model(), IMAGE, HEAT, REGION, 1, thresholds=[0.2], baseline="zero")
    assert curve.baseline_dice == 0.0 and curve.dice.tolist() == [2 / 3] and curve.kept.tolist() == [3 / 16]
    assert curve.area == pytest.approx(3 / 16 * (2 / 3) / 2 + 13 / 16 * (2 / 3 + 1) / 2, abs=1e-15)
    assert curve.to_dict()["area"] == curve.area


def test_sufficiency_default_thresholds_ascending_and_sorted_input():
    curve = sufficiency_curve(level_model(), IMAGE, HEAT, REGION, 1)
    assert curve.thresholds.tolist() == [k / 20 for k in range(1, 21)] and 0.2 in curve.thresholds.tolist()
    assert curve.thresholds.dtype == curve.dice.dtype == curve.kept.dtype == torch.float64
    assert bool((curve.kept.diff() <= 0).all())  # higher thresholds keep no more
    mixed = sufficiency_curve(level_model(), IMAGE, HEAT, REGION, 1, thresholds=torch.tensor([0.6, 0.2, 0.6, 0.05], dtype=torch.float64))
    assert mixed.thresholds.tolist() == [0.05, 0.2, 0.6]


@pytest.mark.parametrize("dilation", [0, 1])
def test_sweep_equals_one_masking_test_per_threshold_whatever_the_batch(rng, dilation):
    model = linear_seg(in_ch=2, classes=3, seed=3)
    image = torch.randn(2, 9, 10, generator=rng)
    heat = torch.rand(9, 10, generator=rng)
    region = torch.zeros(9, 10, dtype=torch.bool)
    region[2:7, 3:8] = True
    cls = int(model(image[None]).argmax(1)[0, 4, 5])
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    curves = [sufficiency_curve(model, image, heat, region, cls, thresholds=thresholds, dilation=dilation, batch=b)
              for b in (None, 1, 4)]
    singles = [masking_test(model, image, heat, region, cls, threshold=t, dilation=dilation) for t in thresholds]
    for curve in curves:
        assert curve.dice.tolist() == [r.dice for r in singles]
        assert curve.kept.tolist() == [r.kept for r in singles]
        assert curve.area == curves[0].area and curve.baseline_dice == curves[0].baseline_dice
    assert len(set(curves[0].dice.tolist())) > 1  # the sweep is not trivially flat


def test_reference_saves_a_forward_and_gives_the_same_result():
    model = Counting(level_model())
    computed = masking_test(model, IMAGE, HEAT, REGION, 1)
    assert model.calls == 2
    given = masking_test(model, IMAGE[None], HEAT.numpy(), REGION.numpy(), 1, reference=(IMAGE[0] > 0.5).long())
    assert model.calls == 3
    assert given.to_dict() == computed.to_dict()


def test_accepts_an_explanation_from_the_explainer(rng):
    model = linear_seg(seed=1)
    image = torch.randn(2, 8, 8, generator=rng)
    exp = segcam.Explainer(model).explain(image, Target(2, segcam.regions.box(1, 1, 5, 6)), layer="features")
    r = masking_test(model, image, exp)
    same = masking_test(model, image, exp.map[0], exp.region[0], exp.cls)
    assert r.to_dict() == same.to_dict()
    curve = sufficiency_curve(model, image, exp, thresholds=[0.2, 0.5])
    assert curve.dice[0] == r.dice


def test_the_model_is_untouched_even_when_it_fails_midway():
    model = Counting(level_model(), fail=5).train()
    before = snapshot(model)
    masking_test(model, IMAGE, HEAT, REGION, 1)
    assert_untouched(model, before)
    with pytest.raises(ModelError, match="out of memory"):
        sufficiency_curve(model, IMAGE, HEAT, REGION, 1, batch=2)  # 2 calls above; reference, chunk 1, chunk 2 fails
    assert model.calls == 5
    assert_untouched(model, before)


def test_warns_when_the_map_is_not_in_0_1():
    with pytest.warns(SegcamWarning, match=r"from 0 to 5, outside \[0, 1\]"):
        masking_test(level_model(), IMAGE, HEAT * 5, REGION, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masking_test(level_model(), IMAGE, HEAT, REGION, 1)


BAD = [
    ({"heatmap": torch.zeros(4, 5)}, SegcamError, r"heatmap has shape \(4, 5\) but the image \(4, 4\)"),
    ({"heatmap": torch.zeros(16)}, SegcamError, "heatmap must be a real 2-D or 3-D map"),
    ({"heatmap": torch.full((4, 4), float("nan"))}, SegcamError, r"16 non-finite value\(s\)"),
    ({"heatmap": "map"}, SegcamError, "heatmap must be a torch.Tensor or numpy array"),
    ({"threshold": 0}, SegcamError, r"threshold must be in \(0, 1\], got 0"),
    ({"threshold": 1.2}, SegcamError, r"threshold must be in \(0, 1\], got 1.2"),
    ({"dilation": -1}, SegcamError, "dilation must be at least 0"),
    ({"region": torch.zeros(4, 4, dtype=torch.bool)}, RegionError, "the region is empty"),
    ({"region": torch.ones(3, 4, dtype=torch.bool)}, RegionError, r"region has shape \(3, 4\)"),
    ({"region": torch.full((4, 4), 2)}, RegionError, "region must be a boolean mask"),
    ({"region": None}, RegionError, "region is missing"),
    ({"cls": 2}, TargetError, r"class 2 is out of range: the model has 2 classes.*0\.\.1"),
    ({"cls": -1}, TargetError, "cls must be at least 0"),
    ({"cls": None}, TargetError, "cls is missing"),
    ({"baseline": "noise"}, SegcamError, "baseline must be one of 'mean', 'zero', 'blur'"),
    ({"image": [[0.0]]}, ImageError, "the image must be a torch.Tensor or numpy.ndarray"),
    ({"image": torch.zeros(2, 1, 4, 4)}, ImageError, "pass one image"),
    ({"image": torch.zeros(4, 4)}, ImageError, r"add a channel axis"),
    ({"reference": torch.zeros(4, 4)}, SegcamError, "reference must be the original prediction's label map"),
    ({"model": lambda x: x}, SegcamError, "model must be a torch.nn.Module"),
]


@pytest.mark.parametrize(("change", "error", "match"), BAD)
def test_bad_inputs_are_refused_with_the_fix(change, error, match):
    args = {"model": level_model(), "image": IMAGE, "heatmap": HEAT, "region": REGION, "cls": 1}
    args.update(change)
    options = {k: args.pop(k) for k in ("threshold", "dilation", "baseline", "reference") if k in args}
    with pytest.raises(error, match=match):
        masking_test(*args.values(), **options)


@pytest.mark.parametrize(("thresholds", "match"), [
    ([], "non-empty list"), ("0.2", "non-empty list"), ([0.2, 0.0], r"each threshold must be in \(0, 1\]"),
    (torch.ones(2, 2), r"got shape \(2, 2\)"),
])
def test_sweep_refuses_bad_thresholds(thresholds, match):
    with pytest.raises(SegcamError, match=match):
        sufficiency_curve(level_model(), IMAGE, HEAT, REGION, 1, thresholds=thresholds)


def test_sweep_refuses_bad_batch_and_a_batched_explanation(rng):
    with pytest.raises(SegcamError, match="batch must be positive"):
        sufficiency_curve(level_model(), IMAGE, HEAT, REGION, 1, batch=0)
    model = linear_seg()
    exps = segcam.Explainer(model).explain(torch.randn(2, 2, 6, 6, generator=rng), 1, layer="features")
    with pytest.raises(SegcamError, match=r"batch of 2 maps; pass heatmap=exp.map\[i\]"):
        masking_test(model, torch.randn(2, 6, 6), exps)
