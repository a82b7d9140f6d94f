"""Batched forwards of modified images, keep masks with dilation, and masked images."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_untouched, linear_seg, snapshot
from torch import nn

from segcam.errors import ImageError, ModelError, SegcamError
from segcam.evaluation import keep_mask, masked_images, predict_batches


class DictOutput(nn.Module):
    """A torchvision-style model returning ``{"out": logits}`` at half the input's size."""

    def __init__(self):
        super().__init__()
        self.net = linear_seg()

    def forward(self, x):
        return {"out": self.net(x)[..., ::2, ::2]}


class FailsOnCall(nn.Module):
    """A linear model that raises (or returns NaN) from its ``n``-th forward on."""

    def __init__(self, n: int, nan: bool = False):
        super().__init__()
        self.net, self.n, self.calls, self.nan = linear_seg(), n, 0, nan

    def forward(self, x):
        self.calls += 1
        if self.calls >= self.n:
            if self.nan:
                return self.net(x) * float("nan")
            raise RuntimeError("boom")
        return self.net(x)


def test_predict_batches_matches_one_forward_and_ignores_batch(rng):
    model = linear_seg()
    images = torch.randn(7, 2, 5, 6, generator=rng)
    expected = model(images)
    for batch in (None, 1, 3, 7, 50):
        assert torch.allclose(predict_batches(model, images, batch).values, expected, atol=1e-6)


def test_predict_batches_reads_any_output_form_and_resizes(rng):
    model = DictOutput()
    images = torch.randn(3, 2, 8, 8, generator=rng)
    logits = predict_batches(model, images, batch=2)
    assert logits.values.shape == (3, 4, 8, 8)
    assert logits.n_classes == 4


def test_predict_batches_3d(rng):
    model = linear_seg(dims=3)
    images = torch.randn(4, 2, 3, 4, 5, generator=rng)
    assert torch.allclose(predict_batches(model, images, 3).values, model(images), atol=1e-6)


def test_predict_batches_leaves_the_model_untouched_even_when_it_fails_midway(rng):
    model = FailsOnCall(2).train()
    model.net.features.weight.requires_grad_(True)
    before = snapshot(model)
    with pytest.raises(ModelError, match="the model failed .* RuntimeError: boom"):
        predict_batches(model, torch.randn(4, 2, 3, 3, generator=rng), batch=2)
    assert model.calls == 2
    assert_untouched(model, before)
    model.n = 100
    predict_batches(model, torch.randn(4, 2, 3, 3, generator=rng), batch=2)
    assert_untouched(model, before)


def test_predict_batches_refuses_non_finite_logits(rng):
    with pytest.raises(ModelError, match="non-finite logits .* baseline"):
        predict_batches(FailsOnCall(1, nan=True), torch.randn(2, 2, 3, 3, generator=rng))


@pytest.mark.parametrize(("images", "match"), [
    (torch.zeros(2, 3, 4), "images must be a float tensor"),
    (torch.zeros(2, 2, 3, 3, dtype=torch.long), "images must be a float tensor"),
    ([[0.0]], "images must be a float tensor"),
    (torch.zeros(0, 2, 3, 3), "holds no image"),
])
def test_predict_batches_refuses_bad_images(images, match):
    with pytest.raises(ImageError, match=match):
        predict_batches(linear_seg(), images)


def test_predict_batches_refuses_bad_model_and_batch():
    with pytest.raises(SegcamError, match="model must be a torch.nn.Module"):
        predict_batches("model", torch.zeros(1, 2, 3, 3))
    with pytest.raises(SegcamError, match="batch must be positive, got 0"):
        predict_batches(linear_seg(), torch.zeros(1, 2, 3, 3), batch=0)


def test_keep_mask_thresholds_inclusively():
    h = torch.tensor([[0.1, 0.2], [0.3, 1.0]])
    assert keep_mask(h, 0.2).tolist() == [[False, True], [True, True]]
    assert keep_mask(h, 1.0).tolist() == [[False, False], [False, True]]


@pytest.mark.parametrize("d", [1, 2, 3])
def test_dilation_grows_a_pixel_into_a_square_clipped_at_the_borders(d):
    h = torch.zeros(9, 11)
    h[4, 5] = 1
    h[0, 10] = 1  # a corner: its square is cut to (d + 1)²
    expected = torch.zeros(9, 11, dtype=torch.bool)
    expected[4 - d:4 + d + 1, 5 - d:5 + d + 1] = True
    expected[:d + 1, 10 - d:] = True
    keep = keep_mask(h, 0.5, d)
    assert torch.equal(keep, expected)
    assert int(keep_mask(h[:, :10], 0.5, d).sum()) == (2 * d + 1) ** 2  # the centre alone


@pytest.mark.parametrize("d", [1, 2])
def test_dilation_3d_grows_a_voxel_into_a_cube(d):
    h = torch.zeros(7, 8, 9)
    h[3, 4, 4] = 1
    h[6, 0, 8] = 1
    expected = torch.zeros(7, 8, 9, dtype=torch.bool)
    expected[3 - d:4 + d, 4 - d:5 + d, 4 - d:5 + d] = True
    expected[6 - d:, :d + 1, 8 - d:] = True
    assert torch.equal(keep_mask(h, 1.0, d), expected)


def test_dilation_larger_than_the_image_keeps_everything():
    h = torch.zeros(3, 4)
    h[1, 1] = 1
    assert bool(keep_mask(h, 1.0, 10).all())
    assert not bool(keep_mask(torch.zeros(3, 4), 0.5, 10).any())  # nothing to grow


@pytest.mark.parametrize(("args", "match"), [
    ((torch.zeros(3, 3), 0.0), r"threshold must be in \(0, 1\], got 0"),
    ((torch.zeros(3, 3), 1.5), r"threshold must be in \(0, 1\], got 1.5"),
    ((torch.zeros(3, 3), 0.5, -1), "dilation must be at least 0"),
    ((torch.zeros(3), 0.5), "heatmap must be a real 2-D or 3-D tensor"),
    (([[0.0]], 0.5), "heatmap must be a real 2-D or 3-D tensor"),
])
def test_keep_mask_refuses_bad_arguments(args, match):
    with pytest.raises(SegcamError, match=match):
        keep_mask(*args)


def test_masked_images_keep_the_image_and_fill_the_baseline():
    image = torch.arange(8.0).reshape(2, 2, 2)  # channel means 1.5 and 5.5
    keeps = torch.tensor([[[True, False], [False, False]], [[True, True], [True, True]]])
    out = masked_images(image, keeps)
    assert out.shape == (2, 2, 2, 2)
    assert out[0, 0].tolist() == [[0.0, 1.5], [1.5, 1.5]] and out[0, 1].tolist() == [[4.0, 5.5], [5.5, 5.5]]
    assert torch.equal(out[1], image)
    assert masked_images(image, keeps, "zero")[0, 1].tolist() == [[4.0, 0.0], [0.0, 0.0]]
    grey = torch.arange(9.0).reshape(1, 3, 3)
    blurred = masked_images(grey, torch.zeros(1, 3, 3, dtype=torch.bool), "blur")[0, 0]  # 3×3 box, edges cut
    assert blurred[0, 0] == pytest.approx((0 + 1 + 3 + 4) / 4) and blurred[1, 1] == pytest.approx(4.0)


def test_masked_images_refuses_bad_arguments():
    image = torch.zeros(1, 3, 3)
    with pytest.raises(SegcamError, match="baseline must be one of 'mean', 'zero', 'blur'"):
        masked_images(image, torch.ones(1, 3, 3, dtype=torch.bool), "noise")
    with pytest.raises(SegcamError, match="keeps must be boolean masks"):
        masked_images(image, torch.ones(1, 3, 4, dtype=torch.bool))
    with pytest.raises(SegcamError, match="keeps must be boolean masks"):
        masked_images(image, torch.ones(1, 3, 3))
    with pytest.raises(ImageError, match="image must be a float tensor"):
        masked_images(torch.zeros(3, 3), torch.ones(1, 3, 3, dtype=torch.bool))
