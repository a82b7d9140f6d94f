"""A method added outside segcam (here, in this test file) reaches the command line through its
options alone: its flags appear in ``--help`` with their help, and it runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import segcam
from segcam import option
from segcam.apps import cli
from segcam.data import SAMPLES
from segcam.methods import METHODS, CamMethod, Choice, Float, Int, unregister


@pytest.fixture
def toy():
    """``toy-cam``: W = |G|^power (a CAM of gradient magnitudes), registered for one test."""

    @segcam.register("toy-cam")
    class ToyCAM(CamMethod):
        """Toy CAM: W_k = |dS/dA_k|^power, to show that a new method needs no other file."""

        power: float = option(2.0, Float(low=0, open_low=True), "exponent of the gradient magnitude")
        repeats: int = option(1, Int(low=1, high=3), "how often the toy multiplies the map by itself")
        sign: str = option("plus", Choice(("plus", "minus")), "keep the map or flip it")

        def weights(self, activation, gradient):
            w = gradient.abs() ** self.power
            return w if self.sign == "plus" else -w

    yield ToyCAM
    unregister("toy-cam")


def test_a_new_method_shows_up_in_the_help(toy, capsys):
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "toy-cam" in text
    assert "--power POWER exponent of the gradient magnitude (number in (0, inf); default 2.0) [toy-cam]" in text
    assert "--repeats REPEATS how often the toy multiplies the map by itself (integer in [1, 3]; default 1)" in text
    assert "--sign SIGN keep the map or flip it (one of plus, minus; default plus) [toy-cam]" in text
    cli.main(["methods"])
    assert "toy-cam" in capsys.readouterr().out


def test_a_new_method_runs_end_to_end_on_the_command_line(toy, tmp_path, capsys):
    npy, meta = tmp_path / "toy.npy", tmp_path / "toy.json"
    argv = ["explain", str(SAMPLES / "scene-1.png"), "--class", "4", "--pixel", "30,20", "--method", "toy-cam",
            "--power", "3", "--save-npy", str(npy), "--json", str(meta)]
    assert cli.main(argv) == 0
    heat = np.load(npy)
    assert heat.shape == (64, 64) and 0 <= heat.min() and heat.max() <= 1
    assert json.loads(meta.read_text())[0]["options"] == {"power": 3.0, "repeats": 1, "sign": "plus"}
    # the same map as from Python
    loaded = segcam.load_model("default")
    image = loaded.preprocess(segcam.data.load_image(SAMPLES / "scene-1.png"))
    exp = segcam.Explainer.from_loaded(loaded).explain(image, segcam.Target(4, segcam.regions.pixel(30, 20)),
                                                       method="toy-cam", power=3)
    assert np.allclose(exp.heatmap, heat, atol=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--method", "toy-cam", "--power", "0"], "power must be in (0, inf), got 0"),
    (["--method", "toy-cam", "--repeats", "4"], "repeats must be at most 3"),
    (["--method", "toy-cam", "--sign", "both"], "sign must be one of 'plus', 'minus'"),
    (["--power", "2"], "--power applies to toy-cam, not to seg-grad-cam"),
])
def test_a_new_methods_flags_are_checked(toy, capsys, argv, message):
    code = cli.main(["explain", str(SAMPLES / "scene-1.png"), "--class", "4", *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_a_flag_shared_by_methods_is_one_flag_and_a_clashing_name_gets_a_prefix(capsys):
    @segcam.register("clash-cam")
    class Clash(CamMethod):
        """Clash: an option named like a command-line flag."""

        model: int = 1  # kind guessed from the default: an integer

        def weights(self, activation, gradient):
            return gradient * self.model

    try:
        with pytest.raises(SystemExit):
            cli.main(["explain", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--clash-cam-model" in text
        assert text.count("--batch-size BATCH_SIZE masked images per forward pass") == 1
        assert "default none) [rise, score-cam]" in text
    finally:
        unregister("clash-cam")
    assert "clash-cam" not in METHODS


def test_every_method_describes_its_options_as_json():
    for name, cls in METHODS.items():
        for spec in cls.options():
            data = json.loads(json.dumps(spec.to_dict()))
            assert data["name"] == spec.name and data["help"], (name, spec.name)
        assert cls.summary() and json.dumps(cls().to_dict())


def test_the_method_object_can_be_passed_instead_of_a_name():
    model = segcam.models.default()
    x = torch.rand(3, 32, 32)
    xres = segcam.methods.METHODS["seg-xres-cam"](window=4, pool="mean")
    a = segcam.explain(model, x, segcam.Target(1), method=xres)
    b = segcam.explain(model, x, segcam.Target(1), method="seg-xres-cam", window=4, pool="mean")
    assert torch.equal(a.map, b.map) and a.options == {"window": 4, "pool": "mean"}
    with pytest.raises(segcam.MethodError, match="next to a method object"):
        segcam.explain(model, x, segcam.Target(1), method=xres, window=2)


def test_the_methods_listing_shows_the_real_flags(capsys):
    @segcam.register("clash-cam-2")
    class Clash(CamMethod):
        """Clash: an option named like a command-line flag."""

        layer: int = 1

        def weights(self, activation, gradient):
            return gradient

    try:
        cli.main(["methods"])
        out = capsys.readouterr().out
        assert "--clash-cam-2-layer" in out and "--n-masks" in out
    finally:
        unregister("clash-cam-2")
