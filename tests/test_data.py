"""The synthetic scenes: determinism, labels consistent with evidence, the bias rules, scoring."""

from __future__ import annotations

import math

import pytest
import torch

from segcam.data import (
    BIASED_CLASS,
    CONTEXT_CLASSES,
    CUE_COLOURS,
    SceneConfig,
    evidence_score,
    load_scene,
    make_batch,
    make_scene,
    pick_samples,
    sample_scenes,
    save_scene,
)

CONFIG_3D = SceneConfig(size=32, dims=3, tile=8, radius=(4, 6), cue_size=4)
SCENES = [make_scene(i, 11) for i in range(60)]


@pytest.mark.parametrize("config", [SceneConfig(), CONFIG_3D], ids=["2d", "3d"])
def test_same_seed_and_index_give_the_same_scene(config):
    a, b = make_scene(5, 7, config), make_scene(5, 7, config)
    for name in ("image", "labels", "instances", "cue", "bias_tile", "distractors"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.classes == b.classes
    assert not torch.equal(make_scene(6, 7, config).image, a.image)
    assert not torch.equal(make_scene(5, 8, config).image, a.image)
    assert a.image.shape == (3, *(config.size,) * config.dims)
    assert a.image.min() >= 0 and a.image.max() <= 1


def test_batches_are_the_scenes():
    x, y = make_batch(3, 4, 11)
    assert torch.equal(x[1], SCENES[4].image) and torch.equal(y[3], SCENES[6].labels)


@pytest.mark.parametrize("scene", SCENES[:30] + [make_scene(i, 2, CONFIG_3D) for i in range(8)])
def test_labels_agree_with_instances_and_evidence(scene):
    assert torch.equal(scene.instances > 0, scene.labels > 0)
    assert sorted(scene.instances.unique().tolist()) == list(range(len(scene.classes) + 1))
    for k, cls in enumerate(scene.classes, start=1):
        ev = scene.evidence(k)
        assert (scene.labels[ev["object"]] == cls).all()
        for name in ("context", "bias", "distractors"):  # context never overlaps objects
            assert not (ev[name] & (scene.labels > 0)).any(), name
        assert ev["context"].any() == (cls in CONTEXT_CLASSES)
        assert ev["bias"].any() == (cls == BIASED_CLASS)
    plus = {c for c in scene.classes if c in CONTEXT_CLASSES}
    assert len(plus) <= 1  # one cue colour per scene, so all its pluses share a label
    if plus:
        colour = scene.image[(slice(None), *torch.nonzero(scene.cue)[0])]
        assert torch.allclose(colour, torch.tensor(CUE_COLOURS[plus.pop()]))
    else:
        assert not scene.cue.any()


def test_strong_bias_tile_appears_exactly_with_the_biased_class():
    with_bias = [s for s in SCENES if BIASED_CLASS in s.classes]
    assert len(with_bias) >= 5
    for s in SCENES:
        assert s.bias_tile.any() == (BIASED_CLASS in s.classes)
        assert not (1 in s.classes and BIASED_CLASS in s.classes)  # never meet when biased


def test_checkerboard_texture_appears_only_in_the_bias_tile():
    yellow = torch.tensor([0.95, 0.85, 0.1])[:, None, None]
    for s in SCENES[:20]:
        is_yellow = (s.image - yellow).abs().amax(0) < 1e-6
        assert torch.equal(is_yellow, is_yellow & s.bias_tile)
        assert is_yellow.any() == s.bias_tile.any()


@pytest.mark.parametrize("bias, lone, together", [("weak", True, False), ("none", True, True)])
def test_weak_and_no_bias(bias, lone, together):
    scenes = [make_scene(i, 11, SceneConfig(bias=bias)) for i in range(80)]
    tile_without_class = any(s.bias_tile.any() and BIASED_CLASS not in s.classes for s in scenes)
    both_discs = any(1 in s.classes and BIASED_CLASS in s.classes for s in scenes)
    assert tile_without_class == lone and both_discs == together
    if bias == "none":
        assert any(BIASED_CLASS in s.classes and not s.bias_tile.any() for s in scenes)


def test_class_evidence_and_centre():
    s = next(s for s in SCENES if s.classes.count(s.classes[0]) >= 2)
    cls = s.classes[0]
    ev = s.class_evidence(cls)
    assert torch.equal(ev["object"], s.labels == cls)
    centre = s.centre_of(1)
    assert s.instances[centre] == 1
    with pytest.raises(ValueError, match="no object of class"):
        s.class_evidence(99)
    with pytest.raises(ValueError, match="objects 1.."):
        s.evidence(0)


def test_evidence_score_exact_values():
    m = torch.zeros(4, 4, dtype=torch.bool)
    obj, cue, bias = m.clone(), m.clone(), m.clone()
    obj[0, :2] = True  # 2 px
    cue[3, 3] = True  # 1 px
    bias[2, :] = True  # 4 px
    evidence = {"object": obj, "context": cue, "bias": bias, "distractors": m}
    uniform = evidence_score(torch.ones(4, 4), evidence)
    assert uniform["share_true"] == pytest.approx(3 / 16) and uniform["lift_true"] == pytest.approx(1)
    assert uniform["share_bias"] == pytest.approx(4 / 16)
    h = torch.zeros(4, 4)
    h[0, 0], h[3, 3], h[2, 0] = 2.0, 1.0, 1.0
    s = evidence_score(h, evidence)
    assert s["share_object"] == pytest.approx(0.5) and s["share_context"] == pytest.approx(0.25)
    assert s["share_true"] == pytest.approx(0.75) and s["lift_true"] == pytest.approx(0.75 / (3 / 16))
    assert s["share_bias"] == pytest.approx(0.25)
    assert math.isnan(s["lift_distractors"])  # no distractor pixels: no baseline
    assert math.isnan(evidence_score(torch.zeros(4, 4), evidence)["share_true"])


def test_bundled_samples_are_the_picked_scenes(tmp_path):
    bundled, picked = sample_scenes(), pick_samples()
    assert len(bundled) == 3
    for a, b in zip(bundled, picked):
        assert torch.equal(a.image, b.image) and torch.equal(a.labels, b.labels)
        assert a.classes == b.classes and (a.seed, a.index) == (b.seed, b.index)
    save_scene(picked[0], tmp_path / "s.npz")
    again = load_scene(tmp_path / "s.npz")
    assert torch.equal(again.cue, picked[0].cue) and again.classes == picked[0].classes
