"""Deletion and insertion curves on models whose region score is a known function of the pixels."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_untouched, linear_seg, snapshot
from torch import nn

import segcam
from segcam import Target
from segcam.errors import ModelError, SegcamError, TargetError
from segcam.evaluation import FaithfulnessCurve, deletion_curve, insertion_curve
from segcam.evaluation.faithfulness import pixel_rank, step_counts
from segcam.methods.rise import baseline_image


def identity_model(dims: int = 2, classes: int = 2) -> nn.Module:
    """Per pixel, logits (0, x) (or the single binary logit x): the class-1 score is the pixel sum."""
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(1, max(1, classes), 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[-1, 0] = 1
    return conv.eval()


class FailsLater(nn.Module):
    def __init__(self, inner: nn.Module, fail: int):
        super().__init__()
        self.inner, self.fail, self.calls = inner, fail, 0

    def forward(self, x):
        self.calls += 1
        if self.calls >= self.fail:
            raise RuntimeError("device lost")
        return self.inner(x)


IMAGE = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
HEAT = torch.tensor([[0.1, 0.4], [0.3, 0.2]])  # order: 2, 3, 4, 1
ALL = torch.ones(2, 2, dtype=torch.bool)


def sig(*values: float) -> float:
    return float(torch.sigmoid(torch.tensor(values, dtype=torch.float64)).mean())


def test_deletion_exactly_with_a_zero_baseline():
    c = deletion_curve(identity_model(), IMAGE, HEAT, ALL, 1, steps=4, baseline="zero")
    assert isinstance(c, FaithfulnessCurve) and c.kind == "deletion"
    assert c.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert c.score.tolist() == [10, 8, 5, 1, 0]
    assert c.score_area == pytest.approx(0.25 * (9 + 6.5 + 3 + 0.5))
    # a zero pixel is a tie (0, 0) that argmax gives to class 0: k pixels leave class 1
    assert c.dice.tolist() == pytest.approx([1, 6 / 7, 4 / 6, 2 / 5, 0], abs=1e-15)
    assert c.prob.tolist() == pytest.approx([sig(1, 2, 3, 4), sig(1, 0, 3, 4), sig(1, 0, 0, 4), sig(1, 0, 0, 0),
                                             sig(0, 0, 0, 0)], abs=1e-12)
    assert c.prob_area == pytest.approx(float(torch.trapezoid(c.prob, c.fractions)))


def test_insertion_exactly_with_a_zero_baseline():
    c = insertion_curve(identity_model(), IMAGE, HEAT, ALL, 1, steps=4, baseline="zero")
    assert c.kind == "insertion"
    assert c.score.tolist() == [0, 2, 5, 9, 10]
    assert c.score_area == pytest.approx(0.25 * (1 + 3.5 + 7 + 9.5))
    assert c.dice.tolist() == pytest.approx([0, 2 / 5, 4 / 6, 6 / 7, 1], abs=1e-15)
    assert c.dice_area == pytest.approx(0.25 * (0.2 + (0.4 + 2 / 3) / 2 + (2 / 3 + 6 / 7) / 2 + (6 / 7 + 1) / 2))


def test_mean_baseline_and_mean_reduce():
    # the mean baseline is 2.5; over the region {(0,1), (1,1)} (values 2 and 4), reduce="mean"
    region = torch.tensor([[False, True], [False, True]])
    c = deletion_curve(identity_model(), IMAGE, HEAT, region, 1, steps=4, reduce="mean")
    assert c.reduce == "mean" and c.baseline == "mean"
    assert c.score.tolist() == [3, 3.25, 3.25, 2.5, 2.5]  # 2 goes at step 1, 4 at step 3
    ins = insertion_curve(identity_model(), IMAGE, HEAT, region, 1, steps=4, reduce="mean")
    assert ins.score.tolist() == [2.5, 2.25, 2.25, 3, 3]


def test_ties_are_taken_in_flat_index_order():
    c = deletion_curve(identity_model(), IMAGE, torch.zeros(2, 2), ALL, 1, steps=4, baseline="zero")
    assert c.score.tolist() == [10, 9, 7, 4, 0]
    h = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert pixel_rank(h).tolist() == [[0, 3, 1], [4, 2, 5]]


def test_step_counts_round_half_up():
    assert step_counts(4, 4).tolist() == [0, 1, 2, 3, 4]
    assert step_counts(3, 4).tolist() == [0, 1, 3, 4]  # 4/3 → 1, 8/3 → 3
    assert step_counts(4, 2).tolist() == [0, 1, 1, 2, 2]  # 0.5 → 1, 1.5 → 2
    c = deletion_curve(identity_model(), IMAGE, HEAT, ALL, 1, steps=3, baseline="zero")
    assert c.fractions.tolist() == [0, 0.25, 0.75, 1] and c.score.tolist() == [10, 8, 1, 0]


def closed_form(model, image, heat, region, cls, kind, steps, baseline):
    """Each step's region score pixel by pixel: the model is per-pixel linear, S = Σ_M w_c · x(p)."""
    w = (model.head.weight.flatten(1) @ model.features.weight.flatten(1))[cls].detach().double()
    base = baseline_image(image, baseline).double()
    x = image.double()
    pixels = [tuple(p) for p in torch.nonzero(torch.ones_like(heat))]
    order = sorted(pixels, key=lambda p: (-float(heat[p]), pixels.index(p)))
    n = len(pixels)
    scores = []
    for k in range(steps + 1):
        first = set(order[:int(k * n / steps + 0.5)])
        total = 0.0
        for p in pixels:
            if region[p]:
                use_base = (p in first) == (kind == "deletion")
                total += float(w @ (base if use_base else x)[(slice(None), *p)])
        scores.append(total)
    return scores


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_linear_model_scores_in_closed_form(rng, dims, kind):
    model = linear_seg(in_ch=2, classes=3, dims=dims, seed=5)
    spatial = (7, 6) if dims == 2 else (3, 4, 5)
    image = torch.randn(2, *spatial, generator=rng)
    heat = torch.rand(*spatial, generator=rng)
    heat[0] = heat.flatten()[3]  # a few ties
    region = torch.rand(*spatial, generator=rng) > 0.5
    curve_of = deletion_curve if kind == "deletion" else insertion_curve
    c = curve_of(model, image, heat, region, 2, steps=7, baseline="mean", batch=3)
    expected = closed_form(model, image, heat, region, 2, kind, 7, "mean")
    assert c.score.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert c.score_area == pytest.approx(float(torch.trapezoid(torch.tensor(expected), c.fractions)), rel=1e-5)
    assert c.dice[0 if kind == "deletion" else -1] == 1.0


def test_the_batch_changes_nothing(rng):
    model = linear_seg(seed=2)
    image = torch.randn(2, 6, 6, generator=rng)
    heat = torch.rand(6, 6, generator=rng)
    region = torch.zeros(6, 6, dtype=torch.bool)
    region[1:4, 2:5] = True
    curves = [deletion_curve(model, image, heat, region, 1, steps=9, batch=b) for b in (None, 1, 4)]
    for c in curves[1:]:  # the same images; only float rounding of the batched convolution may differ
        assert torch.equal(c.dice, curves[0].dice) and torch.equal(c.fractions, curves[0].fractions)
        assert torch.allclose(c.score, curves[0].score, rtol=1e-6) and torch.allclose(c.prob, curves[0].prob, rtol=1e-6)


def test_binary_head_probability_is_the_sigmoid():
    binary = identity_model(classes=1)
    one = deletion_curve(binary, IMAGE, HEAT, ALL, 1, steps=2, baseline="zero")
    zero = deletion_curve(binary, -IMAGE, HEAT, ALL, 0, steps=2, baseline="zero")
    assert one.prob[0] == pytest.approx(sig(1, 2, 3, 4), abs=1e-12)
    assert zero.prob[0] == pytest.approx(1 - sig(-1, -2, -3, -4), abs=1e-12)
    assert one.score.tolist() == [10, 5, 0] and zero.score.tolist() == [10, 5, 0]  # class 0 scores -z


def test_accepts_an_explanation_and_its_reduce(rng):
    model = linear_seg(seed=4)
    image = torch.randn(2, 8, 8, generator=rng)
    exp = segcam.Explainer(model).explain(image, Target(3, segcam.regions.box(2, 2, 6, 7), reduce="mean"),
                                          layer="features")
    c = insertion_curve(model, image, exp, steps=5)
    assert c.reduce == "mean"
    same = insertion_curve(model, image, exp.map[0], exp.region[0], 3, steps=5, reduce="mean")
    assert c.to_dict() == same.to_dict()
    assert deletion_curve(model, image, exp, steps=5, reduce="sum").reduce == "sum"  # explicit wins


def test_the_model_is_untouched_even_when_it_fails_midway():
    model = FailsLater(identity_model(), fail=3).train()
    before = snapshot(model)
    with pytest.raises(ModelError, match="device lost"):
        insertion_curve(model, IMAGE, HEAT, ALL, 1, steps=4, batch=2)
    assert model.calls == 3
    assert_untouched(model, before)


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"steps": 0}, SegcamError, "steps must be positive, got 0"),
    ({"reduce": "max"}, SegcamError, "reduce must be one of 'sum', 'mean'"),
    ({"baseline": "random"}, SegcamError, "baseline must be one of 'mean', 'zero', 'blur'"),
    ({"batch": -2}, SegcamError, "batch must be positive"),
])
def test_bad_options_are_refused(options, error, match):
    with pytest.raises(error, match=match):
        deletion_curve(identity_model(), IMAGE, HEAT, ALL, 1, **options)


def test_bad_subject_is_refused():
    with pytest.raises(TargetError, match="class 5 is out of range"):
        insertion_curve(identity_model(), IMAGE, HEAT, ALL, 5)
    with pytest.raises(SegcamError, match="non-finite"):
        deletion_curve(identity_model(), IMAGE, HEAT * float("inf"), ALL, 1)
    with pytest.raises(SegcamError, match="the region is empty"):
        deletion_curve(identity_model(), IMAGE, HEAT, ~ALL, 1)
