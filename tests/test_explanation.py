"""What the engine returns: the one post-processing stage, Explanation's JSON metadata, and the
collection of several targets and layers."""

from __future__ import annotations

import json

import pytest
import torch

import segcam
from segcam import PostProcess, SegcamError, Target, regions
from segcam.models import UNet


def test_postprocess_relu_then_divide_by_the_maximum():
    raw = torch.tensor([[[-2.0, 0.0], [1.0, 4.0]]])
    layer, full = PostProcess()(raw, (2, 2))
    assert layer.tolist() == [[[0.0, 0.0], [0.25, 1.0]]] and torch.equal(full, layer)
    zero = PostProcess()(torch.full((1, 2, 2), -3.0), (4, 4))[1]
    assert zero.shape == (1, 4, 4) and not zero.any() and torch.isfinite(zero).all()


def test_postprocess_without_relu_and_other_normalisations():
    raw = torch.tensor([[[-2.0, 0.0], [1.0, 4.0]]])
    assert PostProcess(relu=False).layer_map(raw).tolist() == [[[-0.5, 0.0], [0.25, 1.0]]]
    assert torch.allclose(PostProcess(relu=False, normalise="minmax").layer_map(raw),
                          torch.tensor([[[0.0, 1 / 3], [0.5, 1.0]]]))
    assert torch.equal(PostProcess(normalise="none").layer_map(raw), raw.clamp_min(0))


def test_the_input_sized_map_peaks_at_one_after_resizing():
    raw = torch.zeros(1, 3, 3)
    raw[0, 1, 1] = 5.0  # a single cell: bilinear upsampling lowers the peak, normalising restores it
    _, full = PostProcess()(raw, (7, 7))
    assert float(full.max()) == pytest.approx(1.0) and full.shape == (1, 7, 7)


def test_an_explainer_uses_the_postprocess_it_is_given():
    model = UNet(3, 3, width=4, depth=2).eval()
    x = torch.rand(3, 16, 16)
    plain = segcam.Explainer(model).explain(x, Target(1), method="seg-hires-cam")
    signed = segcam.Explainer(model, postprocess=PostProcess(relu=False)).explain(x, Target(1), method="seg-hires-cam")
    assert torch.equal(plain.raw, signed.raw)
    peak = plain.raw.abs().max()
    assert torch.allclose(signed.layer_map, plain.raw / peak, atol=1e-6)


@pytest.fixture(scope="module")
def three_by_two():
    model = UNet(3, 3, width=8, depth=2).eval()
    ex = segcam.Explainer(model, layer_names={"bottleneck": "downs.1", "first": "downs.0"})
    targets = [Target(0), Target(1, regions.box(2, 2, 6, 6)), Target(2, regions.box(0, 0, 8, 8), reduce="mean")]
    return ex, ex.explain_many(torch.rand(3, 16, 16), targets, layer=["first", "bottleneck"])


def test_explanations_are_indexed_by_target_and_layer(three_by_two):
    _, exps = three_by_two
    assert exps.layers == ["downs.0", "downs.1"] and len(exps) == 6
    assert [e.target for e in exps.for_layer("downs.1")] == exps.targets
    assert exps[1, "bottleneck"] is exps[1, "downs.1"] is exps[1, 1] is exps.for_target(1)["downs.1"]
    assert [(e.target.cls, e.layer) for e in exps] == [(t, layer) for t in range(3) for layer in exps.layers]
    assert exps[-1, 0].target.reduce == "mean"


@pytest.mark.parametrize("key, message", [
    (1, "hold 2 layers"), ("downs.1", "hold 3 targets"), ((5, 0), "out of range"), ((0, "up"), "no explanation"),
    ((0, 1, 2), "exps\\[target, layer\\]"), ((True, 0), "out of range"),
])
def test_explanations_refuse_ambiguous_or_missing_keys(three_by_two, key, message):
    with pytest.raises(SegcamError, match=message):
        three_by_two[1][key]


def test_metadata_is_plain_json(three_by_two):
    _, exps = three_by_two

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    for exp in exps:
        meta = exp.metadata
        assert plain(meta) and json.loads(exp.to_json()) == meta
        assert set(meta) >= {"method", "options", "layer", "target", "score", "timings_ms"}
        assert meta["timings_ms"]["total"] >= meta["timings_ms"]["method"] >= 0
    meta = exps[2, 0].metadata
    assert meta["target"] == {"cls": 2, "region": {"kind": "box", "start": [0, 0], "stop": [8, 8]}, "reduce": "mean",
                              "class_name": None}
    assert meta["region_pixels"] == [64] and meta["shape"] == [16, 16] and meta["layer_shape"] == [8, 8]


def test_one_target_at_one_layer_is_one_explanation():
    model = UNet(3, 3, width=4, depth=2).eval()
    exp = segcam.Explainer(model, class_names=["a", "b", "c"]).explain(torch.rand(3, 16, 16), Target("b"))
    assert isinstance(exp, segcam.Explanation) and exp.cls == 1 and exp.class_name == "b"
    assert exp.metadata["target"]["cls"] == 1 and exp.metadata["target"]["class_name"] == "b"
