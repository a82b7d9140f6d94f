"""What the benchmark explains: three region kinds per image, with the evidence when known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcam import Explainer, SegcamError
from segcam.core.regions import Instance, Pixels, Predicted
from segcam.data import make_scene
from segcam.evaluation import image_cases, scene_cases
from segcam.models import default


class Threshold(nn.Module):
    """Three classes from the first channel: 1 where x > 0.3, 2 where x > 0.7, else 0."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()

    def forward(self, x):
        a = self.conv(x[:, :1])
        return torch.cat([torch.zeros_like(a), 10 * (a - 0.3), 100 * (a - 0.7)], dim=1)


def test_scene_cases_take_the_first_correctly_predicted_object():
    explainer = Explainer(default())
    [item] = list(scene_cases(explainer, 1, seed=3))
    scene = make_scene(0, 3)
    k = next(k for k, c in enumerate(scene.classes, 1) if int(item.predicted[scene.centre_of(k)]) == c)
    centre, cls = scene.centre_of(k), scene.classes[k - 1]
    kinds = {c.kind: c for c in item.cases}
    assert list(kinds) == ["pixel", "object", "class"]
    assert all(c.target.cls == cls for c in item.cases)
    assert isinstance(kinds["pixel"].target.region, Pixels) and kinds["pixel"].caption == f"pixel {centre}"
    assert isinstance(kinds["object"].target.region, Instance) and kinds["object"].target.region.point == centre
    assert isinstance(kinds["class"].target.region, Predicted)
    for key, mask in scene.evidence(k).items():
        assert torch.equal(kinds["pixel"].evidence[key], mask)
    for key, mask in scene.class_evidence(cls).items():
        assert torch.equal(kinds["class"].evidence[key], mask)
    assert torch.equal(item.truth, scene.labels)


def test_image_cases_use_the_largest_predicted_object_and_ground_truth():
    image = torch.zeros(1, 12, 12)
    image[0, 1:3, 1:3] = 0.5  # small class-1 object
    image[0, 6:11, 5:10] = 0.9  # large class-2 object, centre (8, 7)
    truth = torch.zeros(12, 12, dtype=torch.long)
    truth[6:10, 5:9] = 2
    truth[0, 0] = 2  # another class-2 object elsewhere: not this object's evidence
    [item] = list(image_cases(Explainer(Threshold()), [("a.png", image, truth)], kinds=["object", "class"]))
    obj, whole = item.cases
    assert obj.target.cls == 2 and obj.target.region.point == (8, 7)
    expected = torch.zeros(12, 12, dtype=torch.bool)
    expected[6:10, 5:9] = True
    assert torch.equal(obj.evidence["object"], expected)
    assert torch.equal(whole.evidence["object"], truth == 2)  # the whole class: every class-2 pixel
    assert not obj.evidence["context"].any()


def test_images_where_only_background_is_predicted_are_skipped():
    blank = torch.zeros(1, 8, 8)
    assert list(image_cases(Explainer(Threshold()), [("blank", blank, None)])) == []
    [item] = list(image_cases(Explainer(Threshold()), [("x", blank + 0.5, None)], background=None))
    assert item.cases[0].evidence is None and item.cases[0].target.cls == 1


def test_unknown_region_kinds_are_refused():
    with pytest.raises(SegcamError, match="region kind"):
        list(scene_cases(Explainer(default()), 1, 3, kinds=["everywhere"]))
    with pytest.raises(SegcamError, match="non-empty list"):
        list(image_cases(Explainer(Threshold()), [], kinds="pixel"))


def test_a_preprocessing_that_resizes_the_scenes_is_refused():
    with pytest.raises(SegcamError, match="evaluate this model on your own images"):
        list(scene_cases(Explainer(default()), 1, 3, preprocess=lambda x: x[:, :32, :32]))


def test_ground_truth_is_checked_against_the_image_and_the_classes():
    image = torch.full((1, 6, 6), 0.5)
    with pytest.raises(SegcamError, match="image's size"):
        list(image_cases(Explainer(Threshold()), [("a.png", image, torch.zeros(5, 5, dtype=torch.long))]))
    with pytest.raises(SegcamError, match=r"'b.png' holds labels 255..255 .* class indices"):
        list(image_cases(Explainer(Threshold()), [("b.png", image, torch.full((6, 6), 255))]))
