"""Training is reproducible; IoU arithmetic is exact; weights round-trip through safetensors."""

from __future__ import annotations

import math

import pytest
import torch

from segcam import SegcamError
from segcam.apps.train import MiouLevels, check_levels, class_weights, train
from segcam.data import SceneConfig
from segcam.evaluation import confusion, evaluate_model, iou_from_confusion
from segcam.models import DEFAULT_ARCH, UNet, load_weights, save_weights

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


def tiny() -> UNet:
    return UNet(3, 6, width=4, depth=2)


def scripted(*mious: float):
    """An evaluation that returns these mIoUs in turn."""
    values = iter(mious)
    return lambda model: {"miou": next(values)}


def quick(**options):
    return train(steps=9, batch=2, scenes=4, config=SMALL, log=lambda m: None, build=tiny, **options)


def test_a_level_is_kept_at_the_first_evaluation_that_reaches_it():
    saved = []

    def save(level, step, model, scores):
        saved.append((level, step, scores["miou"], model.training, {k: v.clone() for k, v in model.state_dict().items()}))

    # evaluations at steps 2, 4, 6, 8 and 9 (the last): 0.3 is reached exactly, the drop at
    # step 6 undoes nothing, 0.72 passes 0.5 and 0.7 at once, 0.9 is never reached
    watch = MiouLevels([0.9, 0.5, 0.3, 0.7, 0.5], save, scripted(0.1, 0.3, 0.2, 0.72, 0.8), every=2)
    assert watch.levels == (0.3, 0.5, 0.7, 0.9)
    final = quick(miou_levels=watch)
    assert [s[:4] for s in saved] == [(0.3, 4, 0.3, False), (0.5, 8, 0.72, False), (0.7, 8, 0.72, False)]
    assert watch.pending == [0.9] and watch.best == 0.8 and watch.step == 9

    at_steps = {}
    plain = quick(checkpoint=lambda step, m: at_steps.update({step: {k: v.clone() for k, v in m.state_dict().items()}}),
                  checkpoint_steps=(4, 8))
    for (_, step, _, _, state) in saved:  # the model as it was at that step; evaluating changed nothing
        assert all(torch.equal(state[k], at_steps[step][k]) for k in state)
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), plain.state_dict().values()))


def test_training_stops_once_every_level_is_reached():
    logs, steps = [], []
    watch = MiouLevels((0.2, 0.4), lambda level, step, model, scores: steps.append(step), scripted(0.25, 0.5), every=3)
    model = train(steps=9, batch=2, scenes=4, config=SMALL, log=logs.append, build=tiny, miou_levels=watch)
    assert steps == [3, 6] and watch.step == 6 and watch.pending == [] and not model.training
    assert "every mIoU level reached at step 6 of 9; stopping there" in logs


def test_levels_are_read_from_text_sorted_and_deduplicated():
    assert check_levels("0.7, 0.3,0.5,0.3,") == (0.3, 0.5, 0.7)
    assert check_levels((0.9, 0.25)) == (0.25, 0.9)


@pytest.mark.parametrize("levels, message", [
    ("0.3;0.5", "comma-separated numbers"),
    ("", "non-empty"),
    ([], "non-empty"),
    (0.5, "non-empty list"),
    ([50], "50, not a number strictly between 0 and 1; give mIoU levels strictly between 0 and 1, like 0.3"),
    ("0,0.5", "0.0, not a number strictly between 0 and 1"),
    ([0.3, 1.0], "1.0, not a number"),
    ([float("nan")], "nan, not a number"),
    ([True], "True, not a number"),
    (["0.5"], "'0.5', not a number"),
])
def test_bad_levels_name_the_fix(levels, message):
    with pytest.raises(SegcamError, match=message):
        check_levels(levels, "--miou-levels")


@pytest.mark.parametrize("evaluate, message", [
    (scripted(1.5), "'miou' in \\[0, 1\\], got 'miou' 1.5"),
    (lambda model: 0.5, "a mapping with 'miou' in \\[0, 1\\], got 0.5"),
    (lambda model: {"loss": 0.1}, "got 'miou' None"),
])
def test_a_bad_evaluation_is_refused(evaluate, message):
    with pytest.raises(SegcamError, match=message):
        quick(miou_levels=MiouLevels((0.5,), lambda *a: None, evaluate, every=1))


def test_bad_watch_arguments():
    with pytest.raises(SegcamError, match="every .* must be a positive integer, got 0"):
        MiouLevels((0.5,), lambda *a: None, every=0)
    with pytest.raises(SegcamError, match="save and evaluate must be functions"):
        MiouLevels((0.5,), None)


def test_shuffled_labels_pair_images_with_other_label_maps_deterministically():
    def run(shuffle: bool):
        return train(steps=2, batch=2, scenes=4, log=lambda line: None, shuffle_labels=shuffle,
                     build=lambda: UNet(3, 6, width=2, depth=1)).state_dict()

    plain, shuffled, again = run(False), run(True), run(True)
    assert all(torch.equal(shuffled[k], again[k]) for k in shuffled)  # a fixed permutation
    assert not all(torch.equal(plain[k], shuffled[k]) for k in plain)  # other targets, other weights
