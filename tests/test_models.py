"""The shipped default model and the U-Net it is built from."""

from __future__ import annotations

import torch

from segcam.data import CLASS_NAMES, SceneConfig
from segcam.models import WEIGHTS, UNet, default, default_info
from segcam.train import TEST_SEED, UNBIASED_SEED, evaluate


def test_default_model_loads_offline_with_its_metadata():
    model, info = default(), default_info()
    assert not model.training
    assert info["class_names"] == list(CLASS_NAMES)
    assert WEIGHTS.stat().st_size < 5 * 2**20
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == (2, len(CLASS_NAMES), 64, 64)


def test_default_model_reaches_its_reported_miou_on_fresh_scenes():
    """A cut-down check: the first 64 scenes of the test split (the note reports 512)."""
    reported = default_info()["test"]["miou"]
    measured = evaluate(default(), TEST_SEED, 64, SceneConfig())["miou"]
    assert reported >= 0.90
    assert measured >= 0.90 and abs(measured - reported) < 0.03


def test_default_model_learned_the_bias():
    model = default()
    biased = evaluate(model, TEST_SEED, 64, SceneConfig())["iou"]["spotted disc"]
    unbiased = evaluate(model, UNBIASED_SEED, 64, SceneConfig(bias="none"))["iou"]["spotted disc"]
    assert unbiased < biased - 0.2


def test_global_context_reaches_across_the_image():
    torch.manual_seed(0)
    for context, expect_change in ((False, False), (True, True)):
        model = UNet(3, 2, width=4, depth=2, global_context=context).eval()
        x = torch.rand(1, 3, 128, 128)  # wider than the receptive field without context
        y = x.clone()
        y[:, :, :4, :4] = 1.0  # change one corner ...
        with torch.no_grad():  # ... and look at the opposite corner
            changed = not torch.equal(model(x)[..., -4:, -4:], model(y)[..., -4:, -4:])
        assert changed == expect_change


def test_unet_3d_and_odd_sizes():
    model = UNet(1, 3, width=4, depth=2, dims=3).eval()
    assert model(torch.rand(1, 1, 9, 10, 11)).shape == (1, 3, 9, 10, 11)
    model2 = UNet(3, 2, width=4, depth=3, global_context=True).eval()
    assert model2(torch.rand(1, 3, 37, 50)).shape == (1, 2, 37, 50)
