"""Batch target kinds: exact keys and regions on hand-made label maps, specs, and real explanations."""

from __future__ import annotations

import pytest
import torch

import segcam
from segcam import SegcamError, Target, TargetError, regions
from segcam.apps.batch.targets import TargetSpec, components, parse_targets, targets_for

# 2-D: class 1 has three objects (first pixels (0, 1), (2, 0) and the speck (4, 4)); class 2 two
# objects that touch only at a corner, so they are two under face connectivity.
LABELS = torch.tensor([
    [0, 1, 1, 0, 2],
    [0, 0, 1, 2, 0],
    [1, 0, 0, 0, 0],
    [1, 1, 0, 0, 0],
    [0, 0, 0, 0, 1],
])


def masks(pairs, labels):
    """key → the boolean mask ``(*S)`` each target's region resolves to on ``labels``."""
    out = {}
    for key, t in pairs:
        ctx = regions.RegionContext.of_labels(labels[None], t.cls)
        out[key] = t.region.resolve(ctx)[0]
    return out


def grid(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_predicted_classes_skip_the_background_by_default():
    pairs = targets_for(parse_targets("predicted"), LABELS)
    assert [k for k, _ in pairs] == ["c1", "c2"]
    assert all(t.region == regions.predicted() for _, t in pairs)
    assert torch.equal(masks(pairs, LABELS)["c2"], LABELS == 2)
    kept = targets_for(TargetSpec("predicted", skip_background=False), LABELS)
    assert [k for k, _ in kept] == ["c0", "c1", "c2"]
    assert [k for k, _ in targets_for(parse_targets("predicted:2,7"), LABELS)] == ["c2"]  # 7 is absent
    assert [k for k, _ in targets_for(parse_targets("predicted:0"), LABELS)] == ["c0"]  # explicit: as given


def test_instances_are_face_connected_components_in_raster_order():
    pairs = targets_for(parse_targets("instances:2,1"), LABELS)
    assert [k for k, _ in pairs] == ["c1-i0", "c1-i1", "c1-i2", "c2-i0", "c2-i1"]
    assert [t.region for _, t in pairs] == [regions.instance(0, 1), regions.instance(2, 0), regions.instance(4, 4),
                                            regions.instance(0, 4), regions.instance(1, 3)]
    m = masks(pairs, LABELS)
    assert torch.equal(m["c1-i0"], grid([[0, 1, 1, 0, 0], [0, 0, 1, 0, 0], [0] * 5, [0] * 5, [0] * 5]))
    assert torch.equal(m["c1-i1"], grid([[0] * 5, [0] * 5, [1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0] * 5]))
    assert torch.equal(m["c2-i1"], grid([[0] * 5, [0, 0, 0, 1, 0], [0] * 5, [0] * 5, [0] * 5]))


def test_min_pixels_drops_small_objects_and_keeps_the_other_keys():
    pairs = targets_for(parse_targets("instances:1", min_pixels=2), LABELS)
    assert [k for k, _ in pairs] == ["c1-i0", "c1-i1"]
    pairs = targets_for(TargetSpec("instances", (2,), min_pixels=2), LABELS)
    assert pairs == []
    labels = LABELS.clone()
    labels[0, 1] = 0  # c1-i0 shrinks to 2 pixels; with min_pixels=3 only c1-i1 (3 pixels) is left, same key
    assert [k for k, _ in targets_for(parse_targets("instances:1", min_pixels=3), labels)] == ["c1-i1"]
    assert [k for k, _ in targets_for(TargetSpec("predicted", min_pixels=3), LABELS)] == ["c1"]


def test_max_targets_keeps_the_largest_in_order():
    labels = torch.zeros(4, 9, dtype=torch.long)
    labels[0, 0] = 1                 # c1-i0: 1 pixel
    labels[0, 2:5] = 1               # c1-i1: 3 pixels
    labels[2, 0:2] = 1               # c1-i2: 2 pixels
    labels[2, 3:5] = 1               # c1-i3: 2 pixels (ties with i2: the earlier one wins)
    labels[3, 8] = 1                 # c1-i4: 1 pixel
    spec = TargetSpec("instances", (1,), max_targets=2)
    assert [k for k, _ in targets_for(spec, labels)] == ["c1-i1", "c1-i2"]
    spec = TargetSpec("instances", (1,), max_targets=3)
    assert [k for k, _ in targets_for(spec, labels)] == ["c1-i1", "c1-i2", "c1-i3"]
    labels[3, 5:8] = 2               # class 2: 3 pixels; class 1 has 9 pixels
    assert [k for k, _ in targets_for(TargetSpec("predicted", max_targets=1), labels)] == ["c1"]


def test_volumes():
    labels = torch.zeros(3, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = labels[1, 0, 0] = labels[1, 0, 1] = 1  # one object across two slices
    labels[2, 1, 2] = 1                                       # touches the first only at a corner
    labels[2, 3, 3] = 4
    pairs = targets_for(parse_targets("instances:1,4"), labels)
    assert [(k, t.region) for k, t in pairs] == [("c1-i0", regions.instance(0, 0, 0)),
                                                 ("c1-i1", regions.instance(2, 1, 2)),
                                                 ("c4-i0", regions.instance(2, 3, 3))]
    first = torch.zeros(3, 4, 4, dtype=torch.bool)
    first[0, 0, 0] = first[1, 0, 0] = first[1, 0, 1] = True
    assert torch.equal(masks(pairs, labels)["c1-i0"], first)
    assert [k for k, _ in targets_for(parse_targets("predicted"), labels)] == ["c1", "c4"]
    assert [k for k, _ in targets_for(parse_targets("instances:1", min_pixels=2), labels)] == ["c1-i0"]


@pytest.mark.parametrize("shape", [(23, 31), (7, 9, 11)])
def test_components_are_the_flood_fill_objects(shape, rng):
    labels = torch.randint(0, 3, shape, generator=rng)
    firsts, sizes = components(labels, torch.tensor([1, 2]))
    covered = torch.zeros(shape, dtype=torch.bool)
    for first, size in zip(firsts.tolist(), sizes.tolist()):
        seed = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), shape))
        component = regions.flood_fill(labels == labels[seed], seed)
        assert int(component.sum()) == size
        assert int(component.flatten().nonzero()[0]) == first  # the first pixel in raster order
        assert not bool((covered & component).any())
        covered |= component
    assert torch.equal(covered, (labels == 1) | (labels == 2))
    assert firsts.tolist() == sorted(firsts.tolist())


def test_truth_targets_are_the_ground_truth_masks():
    truth = torch.zeros_like(LABELS)
    truth[1:3, 1:4] = 3
    truth[4, 0] = 5
    pairs = targets_for(parse_targets("truth"), LABELS, truth)
    assert [k for k, _ in pairs] == ["t3", "t5"]
    m = masks(pairs, LABELS)
    assert torch.equal(m["t3"], truth == 3) and torch.equal(m["t5"], truth == 5)
    assert [k for k, _ in targets_for(TargetSpec("truth", min_pixels=2, skip_background=False), LABELS, truth)] \
        == ["t0", "t3"]
    with pytest.raises(SegcamError, match="ground-truth mask for each item"):
        targets_for(parse_targets("truth"), LABELS)
    with pytest.raises(SegcamError, match="give a mask of the image's size"):
        targets_for(parse_targets("truth"), LABELS, truth[:4])
    with pytest.raises(SegcamError, match="negative labels"):
        targets_for(parse_targets("truth"), LABELS, truth - 1)


def test_manifest_targets_round_trip():
    written = (Target(2, regions.box(0, 0, 2, 3)).to_dict(), {"cls": "disc"},
               Target(1, regions.instance(0, 1), reduce="mean").to_dict())
    pairs = targets_for(parse_targets("manifest"), LABELS, manifest=written)
    assert [k for k, _ in pairs] == ["m0", "m1", "m2"]
    assert [t for _, t in pairs] == [Target.from_dict(d) for d in written]
    assert [t.to_dict() for _, t in pairs] == [written[0], Target("disc").to_dict(), written[2]]
    assert [k for k, _ in targets_for(TargetSpec("manifest", max_targets=2), LABELS, manifest=written)] == ["m0", "m1"]
    with pytest.raises(SegcamError, match="'targets' column, and this item has none"):
        targets_for(parse_targets("manifest"), LABELS)
    with pytest.raises(SegcamError, match="manifest target 1: .*cannot be turned back into a mask"):
        targets_for(parse_targets("manifest"), LABELS, manifest=(written[0], {"cls": 1, "region": {"kind": "mask"}}))


def test_class_names():
    names = ["background", "disc", "square"]
    pairs = targets_for(parse_targets("instances:square"), LABELS, class_names=names)
    assert [(k, t.cls) for k, t in pairs] == [("c2-i0", 2), ("c2-i1", 2)]
    with pytest.raises(TargetError, match="did you mean 'square'"):
        targets_for(parse_targets("instances:squares"), LABELS, class_names=names)
    with pytest.raises(TargetError, match="unknown class name 'disc'; use class indices"):
        targets_for(parse_targets("predicted:disc"), LABELS)
    with pytest.raises(TargetError, match="the model has 3 classes, so use 0..2"):
        targets_for(parse_targets("predicted:4"), LABELS, class_names=names)


def test_parse_targets():
    assert parse_targets("predicted") == TargetSpec("predicted")
    assert parse_targets(" Instances: 1, disc ,3") == TargetSpec("instances", (1, "disc", 3))
    assert parse_targets("truth", min_pixels=5, max_targets=2, skip_background=False) \
        == TargetSpec("truth", None, False, 5, 2)
    for text in ("predicted", "instances:1,disc", "truth:0", "manifest"):
        assert parse_targets(text).text == text


@pytest.mark.parametrize(("make", "message"), [
    (lambda: parse_targets("objects"), "unknown target kind 'objects'; use one of predicted, instances, truth"),
    (lambda: parse_targets(""), "targets must be one of"),
    (lambda: parse_targets("instances"), "name them, e.g. instances:1,3"),
    (lambda: parse_targets("instances:1,,2"), "has an empty class"),
    (lambda: parse_targets("manifest:1"), "drop the classes"),
    (lambda: TargetSpec("predicted", classes=3), "non-empty list of class indices or names"),
    (lambda: TargetSpec("predicted", classes=()), "non-empty list"),
    (lambda: TargetSpec("predicted", classes=(-1,)), "index ≥ 0 or a name"),
    (lambda: TargetSpec("predicted", classes=(True,)), "index ≥ 0 or a name"),
    (lambda: TargetSpec("predicted", skip_background=1), "skip_background must be True or False"),
    (lambda: TargetSpec("predicted", min_pixels=0), "min_pixels must be a positive integer"),
    (lambda: TargetSpec("predicted", max_targets=2.0), "max_targets must be a positive integer"),
])
def test_bad_specs(make, message):
    with pytest.raises(SegcamError, match=message):
        make()


@pytest.mark.parametrize(("labels", "message"), [
    (LABELS.float(), "must be an integer tensor"),
    (LABELS > 0, "must be an integer tensor"),
    (LABELS[None, None], "without the batch axis"),
    (LABELS.numpy(), "got ndarray"),
])
def test_bad_label_maps(labels, message):
    with pytest.raises(SegcamError, match=message):
        targets_for(parse_targets("predicted"), labels)


def test_a_spec_is_needed():
    with pytest.raises(SegcamError, match="spec must be a TargetSpec"):
        targets_for("predicted", LABELS)


def test_every_kind_explains_with_the_default_model():
    loaded = segcam.load_model("default")
    explainer = segcam.Explainer.from_loaded(loaded)
    scene = segcam.data.sample_scenes()[0]
    predicted = explainer.forward(scene.image).predicted[0]
    truth = torch.as_tensor(scene.labels)
    names = loaded.class_names

    pairs = targets_for(parse_targets("predicted"), predicted, class_names=names)
    assert [k for k, _ in pairs] == [f"c{c}" for c in torch.unique(predicted).tolist() if c != 0]
    for _, t in pairs:
        exp = explainer.explain(scene.image, t)
        assert torch.equal(exp.score, explainer.explain(scene.image, Target(t.cls, regions.predicted())).score)
        assert torch.equal(exp.region[0], predicted == t.cls)

    objects = targets_for(parse_targets("instances:disc,3"), predicted, class_names=names)
    covered = torch.zeros_like(predicted, dtype=torch.bool)
    for _, t in objects:
        region = explainer.explain(scene.image, t).region[0]
        assert not bool((covered & region).any())
        covered |= region
    assert torch.equal(covered, (predicted == 1) | (predicted == 3))  # the objects tile the two classes

    for _, t in targets_for(parse_targets("truth"), predicted, truth, class_names=names):
        exp = explainer.explain(scene.image, t)
        assert torch.equal(exp.region[0], truth == t.cls)
        assert torch.isfinite(exp.map).all()
