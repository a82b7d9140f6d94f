"""One contract every registered method keeps, in 2-D and 3-D, whatever it computes.

Shape of the input (and of the layer's grid), values in [0, 1], no NaN, JSON metadata, the same
maps one target at a time as several at once, no parameter gradient, and the model's modes,
flags, gradients, hooks and weights exactly as they were.  A method registered later is tested
too: the list is read from the registry when the tests are collected.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_untouched, hook_count, snapshot

import segcam
from segcam import Target, regions
from segcam.methods import METHODS
from segcam.models import UNet

SHAPES = {2: (12, 16), 3: (8, 8, 12)}


def lived_in_model(dims: int) -> UNet:
    """A U-Net as a user has it mid-training: train mode, one frozen part, a stale gradient."""
    model = UNet(2, 3, width=4, depth=2, dims=dims)
    model.train()
    model.stem[1].eval()
    model.head.weight.requires_grad_(False)
    model.ups[0].up.weight.grad = torch.ones_like(model.ups[0].up.weight)
    return model


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_keeps_the_contract(name, dims):
    model = lived_in_model(dims)
    before, hooks = snapshot(model), hook_count(model)
    shape = SHAPES[dims]
    x = torch.randn(2, 2, *shape)
    centre = tuple(s // 2 for s in shape)
    targets = [Target(1, regions.pixel(*centre)), Target(2, regions.box(*([1] * dims), *[s - 3 for s in shape]),
                                                          reduce="mean")]
    ex = segcam.Explainer(model)
    many = ex.explain_many(x, targets, method=name)
    assert len(many) == 2 and len(many.layers) == 1
    for k, exp in enumerate(many):
        assert exp.method == name and exp.target == targets[k]
        assert exp.map.shape == (2, *shape) and exp.heatmap.shape == (2, *shape)
        assert exp.layer_map.shape[0] == 2 and exp.layer_map.ndim == dims + 1
        for t in (exp.map, exp.layer_map, exp.raw, exp.score):
            assert bool(torch.isfinite(t).all()) and t.grad_fn is None
        assert float(exp.map.min()) >= 0 and float(exp.map.max()) <= 1
        assert exp.map.amax(dim=tuple(range(1, dims + 1))).tolist() in ([1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0])
        assert json.loads(json.dumps(exp.metadata))["method"] == name
        single = ex.explain(x, targets[k], method=name)
        assert torch.allclose(single.map, exp.map, atol=1e-5)
    assert_untouched(model, before)
    assert hook_count(model) == hooks
    assert torch.is_grad_enabled()


def choices() -> list[tuple[str, str, str]]:
    """(method, option, value) for every value of every choice option but the default."""
    found = []
    for name, cls in sorted(METHODS.items()):
        for spec in cls.options():
            for value in getattr(spec.kind, "choices", ()):
                if value != spec.default:
                    found.append((name, spec.name, value))
    return found


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name, option, value", choices())
def test_every_choice_of_every_option_keeps_the_contract(name, option, value, dims):
    model = UNet(1, 3, width=4, depth=2, dims=dims).eval()
    shape = SHAPES[dims]
    exp = segcam.Explainer(model).explain(torch.randn(1, *shape), Target(1, regions.pixel(*[s // 2 for s in shape])),
                                          method=name, **{option: value})
    assert exp.heatmap.shape == shape and bool(torch.isfinite(exp.map).all())
    assert 0 <= float(exp.map.min()) and float(exp.map.max()) <= 1 and exp.options[option] == value
