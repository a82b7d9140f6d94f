"""segcam.core.target: Target, class_index, the region score and Dice; the error hierarchy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segcam
from segcam.core.logits import Logits
from segcam.core.regions import Box, Everything, Mask, box
from segcam.core.target import Target, class_index, dice, region_dice, region_score
from segcam.errors import TargetError

NAMES = ["background", "car", "person", "bicycle"]


# --------------------------------------------------------------------------- Target


def test_target_defaults_to_whole_image_sum():
    t = Target(3)
    assert t.cls == 3
    assert isinstance(t.region, Everything)
    assert t.reduce == "sum"


@pytest.mark.parametrize("cls", [np.int64(2), np.int32(2), np.uint8(2), torch.tensor(2)],
                         ids=["int64", "int32", "uint8", "torch"])
def test_target_converts_numpy_and_torch_integers(cls):
    t = Target(cls)
    assert t.cls == 2
    assert type(t.cls) is int


def test_target_keeps_class_names():
    assert Target("car").cls == "car"


@pytest.mark.parametrize("cls", [None, [1], object()], ids=["none", "list", "object"])
def test_target_rejects_non_class_values(cls):
    with pytest.raises(TargetError, match="class index or name"):
        Target(cls)


@pytest.mark.parametrize("cls", [1.5, np.float64(2.7), torch.tensor(1.5)],
                         ids=["float", "np-float", "torch-float"])
def test_target_rejects_fractional_class(cls):
    with pytest.raises(TargetError):
        Target(cls)


def test_target_rejects_unknown_reduce():
    with pytest.raises(TargetError, match="'median'"):
        Target(1, reduce="median")


def test_target_accepts_mean_reduce():
    assert Target(1, reduce="mean").reduce == "mean"


def test_target_bool_array_region_becomes_mask():
    m = np.zeros((4, 4), dtype=bool)
    m[1, 2] = True
    t = Target(1, region=m)
    assert isinstance(t.region, Mask)
    np.testing.assert_array_equal(t.region.values.numpy(), m)


def test_target_keeps_given_region():
    r = box(0, 0, 2, 2)
    t = Target(1, region=r)
    assert t.region is r and isinstance(t.region, Box)


def test_target_rejects_invalid_region_type():
    with pytest.raises(segcam.RegionError):
        Target(1, region="everything")


def test_target_describe_uses_class_name():
    assert Target(1, region=box(0, 0, 2, 2)).describe(NAMES).startswith("class 1 (car)")


# --------------------------------------------------------------------------- class_index


@pytest.mark.parametrize("cls", [0, 4])
def test_class_index_accepts_indices_in_range(cls):
    assert class_index(cls, 5, None) == cls


def test_class_index_converts_numpy_integers():
    out = class_index(np.int64(3), 5, None)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("cls", [5, 6, -1])
def test_class_index_out_of_range_names_number_of_classes(cls):
    with pytest.raises(TargetError, match="5 classes") as err:
        class_index(cls, 5, None)
    assert "0..4" in str(err.value)


def test_class_index_out_of_range_on_binary_head_explains_binary():
    with pytest.raises(TargetError, match="binary"):
        class_index(2, 2, None)


@pytest.mark.parametrize("name, index", [("background", 0), ("car", 1), ("bicycle", 3)])
def test_class_index_looks_up_names(name, index):
    assert class_index(name, 4, NAMES) == index


def test_class_index_unknown_name_suggests_closest():
    with pytest.raises(TargetError, match="unknown class name 'cars'") as err:
        class_index("cars", 4, NAMES)
    assert "Did you mean 'car'" in str(err.value)


def test_class_index_unrelated_name_has_no_suggestion():
    with pytest.raises(TargetError, match="unknown class name") as err:
        class_index("zzzzzz", 4, NAMES)
    assert "Did you mean" not in str(err.value)


@pytest.mark.parametrize("class_names", [None, []])
def test_class_index_name_without_class_names_is_rejected(class_names):
    with pytest.raises(TargetError, match="class_names"):
        class_index("car", 4, class_names)


# --------------------------------------------------------------------------- region_score


LOGITS = Logits(torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2))
# class 1 maps: image 0 [[4, 5], [6, 7]], image 1 [[16, 17], [18, 19]]
MASKS = torch.tensor([[[True, False], [False, True]], [[True, True], [True, False]]])


def test_region_score_sum_over_mask_per_image():
    scores = region_score(LOGITS.of_class(1), MASKS, "sum", 2)
    assert scores.tolist() == [4.0 + 7.0, 16.0 + 17.0 + 18.0]


def test_region_score_mean_divides_by_mask_size_per_image():
    scores = region_score(LOGITS.of_class(1), MASKS, "mean", 2)
    assert scores.tolist() == [11.0 / 2, 51.0 / 3]


def test_region_score_use_the_requested_class():
    scores = region_score(LOGITS.of_class(2), MASKS, "sum", 2)
    assert scores.tolist() == [8.0 + 11.0, 20.0 + 21.0 + 22.0]


def test_region_score_binary_class_zero_is_negative_of_class_one():
    z = Logits(torch.tensor([[[[1.0, -2.0], [3.5, 0.25]]]]))
    m = torch.tensor([[[True, True], [False, True]]])
    one = region_score(z.of_class(1), m, "sum", 2)
    zero = region_score(z.of_class(0), m, "sum", 2)
    assert one.tolist() == [1.0 - 2.0 + 0.25]
    assert torch.equal(zero, -one)


def test_region_score_are_differentiable():
    values = torch.randn(1, 3, 2, 2, requires_grad=True)
    m = torch.tensor([[[True, False], [True, True]]])
    region_score(Logits(values).of_class(2), m, "mean", 2).sum().backward()
    want = torch.zeros(1, 3, 2, 2)
    want[0, 2] = m[0].float() / 3
    torch.testing.assert_close(values.grad, want)


def test_region_score_of_every_class_at_once_broadcasts_the_region():
    every = region_score(LOGITS.values, MASKS[:, None], "sum", 2)  # (B, C)
    for c in range(3):
        assert every[:, c].tolist() == region_score(LOGITS.of_class(c), MASKS, "sum", 2).tolist()


def test_region_score_ignores_non_finite_logits_outside_the_region():
    values = torch.tensor([[[1.0, float("nan")], [float("inf"), 2.0]]])
    m = torch.tensor([[[True, False], [False, True]]])
    assert region_score(values, m, "sum", 2).tolist() == [3.0]


def test_dice_and_region_dice():
    a = torch.tensor([[True, True, False], [False, False, False]])
    b = torch.tensor([True, False, False])
    assert dice(a, b, 1).tolist() == pytest.approx([2 / 3, 0.0])
    assert dice(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool), 1).item() == 1.0
    labels = torch.tensor([[2, 2, 1, 2]])
    reference = torch.tensor([2, 1, 1, 2])
    region = torch.tensor([True, True, True, False])  # the last pixel is outside M
    # class 2 inside M: labels {0, 1}, reference {0} -> 2·1 / (2 + 1)
    assert region_dice(labels, reference, 2, region, 1).tolist() == pytest.approx([2 / 3])


def test_target_json_form_round_trips_the_region():
    from segcam.core.regions import from_dict

    t = Target(3, box(1, 2, 5, 6), reduce="mean")
    data = t.to_dict()
    assert data == {"cls": 3, "region": {"kind": "box", "start": [1, 2], "stop": [5, 6]}, "reduce": "mean"}
    assert from_dict(data["region"]) == t.region


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "error",
    [
        segcam.RegionError,
        segcam.TargetError,
        segcam.ImageError,
        segcam.ModelError,
        segcam.LayerError,
        segcam.LayerNotFoundError,
    ],
)
def test_errors_are_segcam_errors_and_value_errors(error):
    assert issubclass(error, segcam.SegcamError)
    assert issubclass(error, ValueError)


def test_target_error_is_caught_as_value_error():
    with pytest.raises(ValueError):
        Target(1, reduce="max")
