"""The evaluation plots: mean curves point by point, and the sanity-check curves."""

from __future__ import annotations

import pytest
from PIL import Image

from segcam import SegcamError
from segcam.viz import mean_curves, save_curves, save_sanity


def _points():
    out = []
    for case, ys in (("a", (1.0, 0.5, 0.0)), ("b", (1.0, 0.3, 0.2))):
        for step, y in enumerate(ys):
            out.append({"method": "m", "layer": "L", "case": case, "curve": "deletion", "step": step,
                        "x": step / 2, "y": y})
    out.append({"method": "rise", "layer": "input", "case": "a", "curve": "deletion", "step": 0, "x": 0, "y": 0.9})
    out.append({"method": "m", "layer": "other", "case": "a", "curve": "deletion", "step": 0, "x": 0, "y": 0.0})
    return out


def test_mean_curves_average_each_step_over_cases_at_the_layer():
    means = mean_curves(_points(), "L")["deletion"]
    x, y = means["m"]
    assert x.tolist() == [0, 0.5, 1] and y.tolist() == pytest.approx([1.0, 0.4, 0.1])
    assert means["rise"][1].tolist() == [0.9]  # input methods join every layer


def test_plots_are_written(tmp_path):
    save_curves(tmp_path / "c.png", _points(), "L")
    steps = [{"test": "cascading", "method": "m", "layer": "L", "step": s, "spearman": r, "telling": s == 2}
             for s, r in ((1, 0.9), (2, 0.2), (3, 0.0))]
    save_sanity(tmp_path / "s.png", steps)
    for name in ("c.png", "s.png"):
        assert Image.open(tmp_path / name).size[0] > 500


def test_plots_refuse_what_they_cannot_draw(tmp_path):
    with pytest.raises(SegcamError, match="no curve points"):
        save_curves(tmp_path / "c.png", _points(), "nowhere")
    with pytest.raises(SegcamError, match="list of curve points"):
        save_curves(tmp_path / "c.png", "points", "L")
    with pytest.raises(SegcamError, match="no cascading"):
        save_sanity(tmp_path / "s.png", [])
