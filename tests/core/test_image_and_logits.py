"""Tests for segcam.inputs: checking images, reading logits, resizing them, binary heads."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segcam.core.image import as_batch
from segcam.core.logits import Logits, logits_at_input_size, read_logits
from segcam.core.model import guess_spatial_dims
from segcam.errors import ImageError, ModelError

CPU = torch.device("cpu")


def batch(image, spatial_dims=2, dtype=torch.float32):
    return as_batch(image, spatial_dims, CPU, dtype)


# --------------------------------------------------------------------------- as_batch


@pytest.mark.parametrize(
    "shape, spatial_dims, batched, out_shape",
    [
        ((3, 8, 9), 2, False, (1, 3, 8, 9)),
        ((2, 3, 8, 9), 2, True, (2, 3, 8, 9)),
        ((1, 4, 5, 6), 3, False, (1, 1, 4, 5, 6)),
        ((2, 1, 4, 5, 6), 3, True, (2, 1, 4, 5, 6)),
        ((3, 8, 9), None, False, (1, 3, 8, 9)),
        ((2, 3, 8, 9), None, True, (2, 3, 8, 9)),
        ((2, 1, 4, 5, 6), None, True, (2, 1, 4, 5, 6)),
    ],
)
def test_as_batch_adds_batch_axis_only_when_missing(shape, spatial_dims, batched, out_shape):
    image = torch.rand(shape)
    out, was_batched = batch(image, spatial_dims)
    assert was_batched is batched
    assert tuple(out.shape) == out_shape
    torch.testing.assert_close(out.reshape(shape), image, rtol=0, atol=0)


def test_as_batch_accepts_numpy_float_arrays():
    image = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    out, batched = batch(image)
    assert not batched
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out[0].numpy(), image)


def test_as_batch_accepts_non_contiguous_numpy_arrays():
    image = np.arange(60, dtype=np.float64).reshape(3, 4, 5)[:, ::-1, ::2]
    out, _ = batch(image, dtype=torch.float64)
    np.testing.assert_array_equal(out[0].numpy(), image)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_as_batch_casts_to_requested_dtype(dtype):
    out, _ = batch(torch.rand(3, 4, 5), dtype=dtype)
    assert out.dtype == dtype
    assert out.device == CPU


def test_as_batch_output_is_detached():
    image = torch.rand(3, 4, 5, requires_grad=True)
    out, _ = batch(image)
    assert not out.requires_grad
    assert out.grad_fn is None


@pytest.mark.parametrize(
    "image",
    [
        torch.zeros(3, 4, 5, dtype=torch.uint8),
        torch.zeros(3, 4, 5, dtype=torch.int64),
        torch.zeros(3, 4, 5, dtype=torch.bool),
        np.zeros((3, 4, 5), dtype=np.int32),
    ],
    ids=["uint8", "int64", "bool", "np-int32"],
)
def test_as_batch_rejects_non_float_images(image):
    with pytest.raises(ImageError, match="float"):
        batch(image)


def test_as_batch_rejects_object_arrays():
    image = np.empty((3, 4, 5), dtype=object)
    with pytest.raises(ImageError, match="float"):
        batch(image)


@pytest.mark.parametrize(
    "shape, spatial_dims", [((8, 9), 2), ((8, 9), None), ((4, 5, 6), 3)]
)
def test_as_batch_missing_channel_axis_suggests_adding_one(shape, spatial_dims):
    with pytest.raises(ImageError, match="add a channel axis") as err:
        batch(torch.rand(shape), spatial_dims)
    assert str(shape) in str(err.value)


@pytest.mark.parametrize(
    "shape, spatial_dims", [((8,), 2), ((1, 1, 1, 3, 8, 9), 2), ((2, 1, 1, 4, 5, 6), 3)]
)
def test_as_batch_wrong_number_of_axes_is_rejected(shape, spatial_dims):
    with pytest.raises(ImageError, match=r"\(C, ") as err:
        batch(torch.rand(shape), spatial_dims)
    assert "add a channel axis" not in str(err.value)


def test_as_batch_counts_non_finite_values():
    image = torch.rand(3, 4, 5)
    image[0, 0, 0] = float("nan")
    image[1, 2, 3] = float("inf")
    image[2, 3, 4] = float("-inf")
    with pytest.raises(ImageError, match=r"\b3 non-finite"):
        batch(image)


def test_as_batch_counts_nan_in_numpy_image():
    image = np.zeros((1, 4, 4), dtype=np.float32)
    image[0, 1, 1] = np.nan
    with pytest.raises(ImageError, match=r"\b1 non-finite"):
        batch(image)


@pytest.mark.parametrize("image", [[[[0.0]]], 1.0, "image.png", None], ids=repr)
def test_as_batch_rejects_non_array_inputs(image):
    with pytest.raises(ImageError, match="torch.Tensor or numpy.ndarray"):
        batch(image)


@pytest.mark.parametrize("shape", [(3, 0, 5), (3, 4, 0), (0, 3, 4, 5)])
def test_as_batch_rejects_empty_images(shape):
    with pytest.raises(ImageError, match="empty"):
        batch(torch.zeros(shape))


def test_as_batch_rejects_image_with_zero_channels():
    with pytest.raises(ImageError, match="empty"):
        batch(torch.zeros(0, 4, 5))


# --------------------------------------------------------------------------- read_logits


def test_read_logits_tensor_is_returned_as_is():
    t = torch.rand(1, 3, 4, 4)
    assert read_logits(t) is t


def test_read_logits_from_dict_with_out():
    t = torch.rand(1, 3, 4, 4)
    assert read_logits({"out": t, "aux": torch.rand(1, 3, 4, 4)}) is t


def test_read_logits_from_object_with_logits_attribute():
    t = torch.rand(1, 3, 4, 4)
    assert read_logits(types.SimpleNamespace(logits=t, hidden_states=None)) is t


@pytest.mark.parametrize("container", [tuple, list])
def test_read_logits_from_sequence_takes_first_element(container):
    t = torch.rand(1, 3, 4, 4)
    assert read_logits(container([t, torch.rand(1, 3, 2, 2)])) is t


def test_read_logits_custom_extractor_is_applied_first():
    t = torch.rand(1, 3, 4, 4)
    other = torch.rand(1, 3, 4, 4)
    assert read_logits({"out": other, "seg": t}, extract=lambda o: o["seg"]) is t


@pytest.mark.parametrize(
    "output",
    [
        "logits",
        {"aux": torch.rand(1, 3, 4, 4)},
        {"out": "not a tensor"},
        (),
        ("a", torch.rand(1)),
        types.SimpleNamespace(logits=None),
        None,
    ],
    ids=["str", "dict-without-out", "dict-out-not-tensor", "empty-tuple", "tuple-non-tensor",
         "logits-none", "none"],
)
def test_read_logits_unreadable_output_is_model_error(output):
    with pytest.raises(ModelError, match="cannot find logits"):
        read_logits(output)


# --------------------------------------------------------------------------- logits_at_input_size


def test_small_logits_are_resized_bilinearly_to_image_size():
    logits = torch.randn(1, 4, 5, 7)
    image = torch.zeros(1, 3, 20, 28)
    out = logits_at_input_size(logits, image)
    want = F.interpolate(logits, size=(20, 28), mode="bilinear", align_corners=False)
    assert isinstance(out, Logits)
    assert out.values.shape == (1, 4, 20, 28)
    torch.testing.assert_close(out.values, want, rtol=0, atol=0)


def test_resized_logits_pass_gradient_back():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    image = torch.zeros(1, 3, 16, 16)
    weights = torch.randn(1, 2, 16, 16)
    (logits_at_input_size(logits, image).values * weights).sum().backward()

    ref = logits.detach().clone().requires_grad_(True)
    resized = F.interpolate(ref, size=(16, 16), mode="bilinear", align_corners=False)
    (resized * weights).sum().backward()
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, ref.grad)


def test_logits_of_image_size_are_left_untouched():
    logits = torch.randn(2, 3, 8, 8)
    out = logits_at_input_size(logits, torch.zeros(2, 1, 8, 8))
    assert out.values is logits


def test_3d_logits_are_resized_trilinearly():
    logits = torch.randn(1, 2, 3, 4, 5)
    image = torch.zeros(1, 1, 6, 8, 10)
    out = logits_at_input_size(logits, image)
    want = F.interpolate(logits, size=(6, 8, 10), mode="trilinear", align_corners=False)
    torch.testing.assert_close(out.values, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    "logits_shape, image_shape, message",
    [
        ((1, 3, 8), (1, 3, 8, 8), "same number of spatial axes"),
        ((1, 3, 4, 8, 8), (1, 3, 8, 8), "same number of spatial axes"),
        ((2, 3, 8, 8), (1, 3, 8, 8), "2 logit maps for a batch of 1"),
        ((1, 3, 8, 8), (3, 3, 8, 8), "1 logit maps for a batch of 3"),
    ],
)
def test_logits_with_wrong_ndim_or_batch_are_model_errors(logits_shape, image_shape, message):
    with pytest.raises(ModelError, match=message):
        logits_at_input_size(torch.randn(logits_shape), torch.zeros(image_shape))


def test_integer_logits_are_model_errors():
    with pytest.raises(ModelError, match="dtype"):
        logits_at_input_size(torch.zeros(1, 3, 8, 8, dtype=torch.long), torch.zeros(1, 3, 8, 8))


# --------------------------------------------------------------------------- Logits


def test_binary_head_reads_as_two_classes():
    z = torch.tensor([[[[1.5, -2.0], [0.0, 3.0]]], [[[-1.0, 0.5], [2.0, -0.1]]]])  # (2,1,2,2)
    logits = Logits(z)
    assert logits.binary
    assert logits.n_classes == 2
    assert torch.equal(logits.of_class(1), z[:, 0])
    assert torch.equal(logits.of_class(0), -z[:, 0])
    assert torch.equal(logits.predicted(), (z[:, 0] > 0).long())


def test_binary_head_zero_logit_is_background():
    assert Logits(torch.zeros(1, 1, 2, 2)).predicted().sum().item() == 0


def test_multiclass_head_predicts_argmax():
    values = torch.tensor(
        [[[[0.0, 5.0]], [[1.0, 2.0]], [[-1.0, 9.0]]]]
    )  # (1, 3, 1, 2): pixel 0 -> class 1, pixel 1 -> class 2
    logits = Logits(values)
    assert not logits.binary
    assert logits.n_classes == 3
    assert logits.predicted().tolist() == [[[1, 2]]]
    assert torch.equal(logits.of_class(2), values[:, 2])


def test_predicted_does_not_track_gradients():
    values = torch.randn(1, 3, 4, 4, requires_grad=True)
    assert not Logits(values).predicted().requires_grad


# --------------------------------------------------------------------------- guess_spatial_dims


@pytest.mark.parametrize(
    "model, dims",
    [
        (nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU()), 3),
        (nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Conv3d(2, 2, 1)), 2),
        (nn.Sequential(nn.ConvTranspose3d(1, 2, 3)), 3),
        (nn.Sequential(nn.Linear(3, 3), nn.ReLU()), None),
        (nn.Sequential(nn.Conv1d(1, 2, 3)), None),
    ],
    ids=["conv3d", "conv2d-first", "convtranspose3d", "no-conv", "conv1d"],
)
def test_guess_spatial_dims_from_first_convolution(model, dims):
    assert guess_spatial_dims(model) == dims
