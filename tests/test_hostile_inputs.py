"""What a hostile user tried, and the rule behind it: every public argument is checked where it
enters, and a bad one raises a SegcamError that names the fix — never a TypeError from deep
inside torch, never a silent wrong answer, never NaN.  (Threads sharing a model: test_threads.py;
files and the command line: tests/data/test_files.py, tests/apps/test_cli.py; corrupt weights
files: tests/models/test_loaders.py.)"""

from __future__ import annotations

import pytest
import torch
from helpers import linear_seg
from torch import nn

import segcam
from segcam import MethodError, SegcamError, Target, regions
from segcam.methods import METHODS
from segcam.models import UNet


@pytest.fixture
def unet() -> UNet:
    return UNet(3, 4, width=4, depth=2).eval()


X = torch.rand(3, 16, 16)


# ------------------------------------------------------------------ the holes that were found
class LogInput(nn.Module):
    """Finite on a positive image; -inf wherever a masked input is exactly zero."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(torch.log(x))


@pytest.mark.parametrize("method, options", [("rise", {"baseline": "zero", "n_masks": 40}), ("score-cam", {})])
def test_non_finite_logits_of_modified_inputs_are_an_error_not_a_normal_looking_map(method, options):
    x = torch.rand(3, 12, 12) + 0.5
    layer = None if method == "rise" else "conv"
    with pytest.raises(segcam.ModelError, match="non-finite logits"):
        segcam.explain(LogInput(), x, Target(1, regions.box(2, 2, 10, 10)), method=method, layer=layer, **options)


@pytest.mark.parametrize("method", ["rise", "score-cam"])
@pytest.mark.parametrize("size", [-1, 0, 2.5, "4", True])
def test_bad_batch_sizes_are_refused(unet, method, size):
    with pytest.raises(MethodError, match="batch_size"):
        segcam.explain(unet, X, Target(1), method=method, batch_size=size)


@pytest.mark.parametrize("options, message", [
    ({"n_masks": 10.5}, "n_masks must be an integer, got 10.5"),
    ({"n_masks": 0}, "n_masks must be positive"),
    ({"cells": -2}, "cells must be positive"),
    ({"p": 1.0}, r"p must be in \(0, 1\)"),
    ({"p": float("nan")}, "p must be a finite number"),
    ({"tol": 0}, "tol must be in"),
    ({"weight": "area"}, "weight must be one of 'dice', 'score'"),
    ({"n_mask": 10}, "does not take n_mask; it takes n_masks"),
])
def test_bad_rise_options(unet, options, message):
    with pytest.raises(MethodError, match=message):
        segcam.explain(unet, X, Target(1), method="rise", **options)


@pytest.mark.parametrize("window, message", [
    (2.5, "window must be an integer, got 2.5"),
    (0, "window must be positive"),
    ((2, 0), "window must be positive"),
    ((2, 2, 2, 2), "one size per axis"),
    ("2", "window must be an integer"),
])
def test_bad_windows(unet, window, message):
    with pytest.raises(MethodError, match=message):
        segcam.explain(unet, X, Target(1), method="seg-xres-cam", window=window)


@pytest.mark.parametrize("layer, message", [
    (3, r"layer must be a layer name, a module of the model, or a non-empty list of them, got 3 \(int\)"),
    ([3], r"a layer is given by its name \(a str\) or as the module itself, got 3 \(int\)"),
    (3.5, "got 3.5"),
    ([], "non-empty list"),
    ({"downs.1": 1}, "a layer name, a module of the model, or a non-empty list"),
    ([None], "got None"),
    (nn.Conv2d(1, 1, 1), "not part of the model"),
])
def test_bad_layers(unet, layer, message):
    with pytest.raises(SegcamError, match=message):
        segcam.Explainer(unet).explain_many(X, [Target(1)], layer=layer)


class EmptyChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = linear_seg(in_ch=3)
        self.nothing = nn.Identity()

    def forward(self, x):
        self.nothing(x[:, :0])  # a layer whose output has no channels
        return self.net(x)


def test_a_layer_with_zero_channels_is_a_layer_error():
    with pytest.raises(segcam.LayerError, match="empty tensor of shape \\(1, 0, 16, 16\\)"):
        segcam.explain(EmptyChannels(), X, Target(1), layer="nothing")


@pytest.mark.parametrize("names", [["a", "b", "c"], ["a", "b", "c", "d", "e", "f", "g"]])
def test_class_names_that_do_not_match_the_model(unet, names):
    with pytest.raises(segcam.TargetError, match="class_names has .* names but the model outputs 4 classes"):
        segcam.Explainer(unet, class_names=names).explain(X, Target(1))


# ------------------------------------------------------------------ the principle, everywhere
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_option_of_every_method_refuses_a_value_of_the_wrong_type(unet, name):
    for spec in METHODS[name].options():
        with pytest.raises(MethodError, match=spec.name):
            segcam.explain(unet, X, Target(1), method=name, **{spec.name: object()})


@pytest.mark.parametrize("kwargs, message", [
    ({"class_names": "ab"}, "class_names must be a list of strings"),
    ({"class_names": ["a", "a", "b", "c"]}, "must not repeat"),
    ({"class_names": [1, 2]}, "non-empty strings"),
    ({"spatial_dims": 4}, "spatial_dims must be at most 3"),
    ({"spatial_dims": "2"}, "spatial_dims must be an integer"),
    ({"token_grid": (4, 0)}, "token_grid must be positive"),
    ({"token_grid": 4}, "token_grid must be a tuple"),
    ({"output": "out"}, "output must be callable"),
    ({"layer_names": {"a": 1}}, "layer_names must map strings to strings"),
    ({"default_layer": 3}, "default_layer must be a string"),
    ({"postprocess": "relu"}, "postprocess must be a segcam.PostProcess"),
])
def test_explainer_arguments(unet, kwargs, message):
    with pytest.raises(SegcamError, match=message):
        segcam.Explainer(unet, **kwargs)


@pytest.mark.parametrize("call, message", [
    (lambda ex: ex.explain(X, Target(1), method=3), "method must be a method name"),
    (lambda ex: ex.explain(X, Target(1), method="gradcam"), "unknown method 'gradcam'"),
    (lambda ex: ex.explain(X, Target(1), windw=2), "does not take windw"),
    (lambda ex: ex.explain(X, 1.5), "a target is segcam.Target"),
    (lambda ex: ex.explain(X, None), "a target is segcam.Target"),
    (lambda ex: ex.explain(X, Target(1), progress=3), "progress must be callable"),
    (lambda ex: ex.explain_many(X, Target(1)), "non-empty list of targets"),
    (lambda ex: ex.explain_many(X, []), "non-empty list of targets"),
    (lambda ex: ex.explain_many(X, [Target(1)], backward="fast"), "backward must be one of"),
    (lambda ex: ex.explain("image.png", Target(1)), "segcam.data.load_image"),
    (lambda ex: ex.explain(X.int(), Target(1)), "convert it to float"),
])
def test_explain_arguments(unet, call, message):
    with pytest.raises(SegcamError, match=message):
        call(segcam.Explainer(unet))


@pytest.mark.parametrize("make, message", [
    (lambda: Target(1.5), "cls must be a class index or name"),
    (lambda: Target(True), "cls must be a class index or name"),
    (lambda: Target(""), "non-empty class name"),
    (lambda: Target(1, reduce="max"), "reduce must be one of"),
    (lambda: Target(1, region="box"), "cannot use str as a region"),
    (lambda: regions.pixel(1.5, 2), "integers"),
    (lambda: regions.pixel(1), "2 coordinates"),
    (lambda: regions.box(1, 2, 3), "4 bounds"),
    (lambda: regions.polygon([(1, 2), (3, float("inf")), (4, 4)]), "finite"),
    (lambda: regions.polygon(5), "vertices"),
    (lambda: regions.mask([[0, 2]]), "only 0 and 1"),
    (lambda: regions.mask(5), "single value"),
    (lambda: regions.instance(2, 2, full_connectivity="yes"), "full_connectivity must be True or False"),
    (lambda: regions.predicted(within="box"), "within must be a region"),
    (lambda: regions.from_dict({"kind": "circle"}), "unknown region kind 'circle'"),
    (lambda: segcam.PostProcess(normalise="l2"), "normalise must be one of"),
    (lambda: segcam.as_classifier(linear_seg(), reduce="max"), "reduce must be one of"),
    (lambda: segcam.as_classifier("model"), "must be a torch.nn.Module"),
])
def test_targets_regions_and_helpers(make, message):
    with pytest.raises(SegcamError, match=message):
        make()


def test_register_checks_what_it_is_given():
    with pytest.raises(MethodError, match="non-empty string"):
        segcam.register("")
    with pytest.raises(MethodError, match="subclass of segcam.Method"):
        segcam.register("not-a-method")(dict)
    with pytest.raises(MethodError, match="already registered"):
        segcam.register("seg-grad-cam")(type("Other", (segcam.CamMethod,), {}))
