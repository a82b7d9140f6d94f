"""Training is reproducible; IoU arithmetic is exact; weights round-trip through safetensors."""

from __future__ import annotations

import math

import torch

from segcam.apps.train import class_weights, train
from segcam.data import SceneConfig
from segcam.evaluation import confusion, evaluate_model, iou_from_confusion
from segcam.models import DEFAULT_ARCH, load_weights, save_weights

SMALL = SceneConfig(size=32, tile=8, radius=(4, 6), cue_size=4)


def test_iou_exact():
    truth = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 0]])
    conf = confusion(pred, truth, 4)
    assert conf.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    iou = iou_from_confusion(conf)
    assert iou[:3].tolist() == [2 / 4, 2 / 3, 2 / 3]
    assert math.isnan(iou[3])  # absent everywhere: not counted


def test_training_is_reproducible_and_round_trips(tmp_path):
    a = train(steps=3, batch=2, scenes=6, config=SMALL, log=lambda m: None)
    b = train(steps=3, batch=2, scenes=6, config=SMALL, log=lambda m: None)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name
    save_weights(a, tmp_path / "w.safetensors", {"arch": DEFAULT_ARCH, "note": "x"})
    c, meta = load_weights(tmp_path / "w.safetensors")
    assert meta["note"] == "x" and not c.training
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(a.eval()(x), c(x))


def test_evaluate_reports_every_class():
    model = train(steps=1, batch=2, scenes=2, config=SMALL, log=lambda m: None)
    result = evaluate_model(model, seed=5, count=4, config=SMALL)
    assert set(result["iou"]) == {"background", "disc", "spotted disc", "square",
                                  "plus (red cue)", "plus (blue cue)"}
    assert 0 <= result["miou"] <= 1 and result["scenes"] == 4 and model.training is False


def test_class_weights_follow_the_square_root_of_median_frequency():
    labels = torch.tensor([0] * 16 + [1] * 4 + [2] * 1)  # frequencies 16/21, 4/21, 1/21
    w = class_weights(labels, 3)
    assert torch.allclose(w, torch.tensor([0.5, 1.0, 2.0]))
