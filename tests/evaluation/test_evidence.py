"""Evidence scores: how a heatmap's mass falls on the true evidence, the bias tile, distractors."""

from __future__ import annotations

import math

import pytest
import torch

from segcam.evaluation import evidence_score


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


def test_pointing_game_is_one_when_the_unique_maximum_is_on_the_evidence():
    from segcam.evaluation import pointing_game

    e = torch.zeros(4, 4, dtype=torch.bool)
    e[1, 1] = True
    h = torch.zeros(4, 4)
    h[1, 1] = 0.9
    assert pointing_game(h, e) == 1.0
    h[3, 3] = 1.0
    assert pointing_game(h, e) == 0.0
    h[1, 1] = 1.0  # a tie between a hit and a miss is split, not decided by scan order
    assert pointing_game(h, e) == 0.5
    assert pointing_game(torch.zeros(4, 4), e) == 0.0  # an empty map points nowhere


def test_pointing_game_refuses_bad_maps():
    from segcam import SegcamError
    from segcam.evaluation import pointing_game

    with pytest.raises(SegcamError, match="shape"):
        pointing_game(torch.zeros(4, 4), torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(SegcamError, match="non-finite"):
        pointing_game(torch.full((2, 2), float("nan")), torch.zeros(2, 2, dtype=torch.bool))
