"""The command line and the pictures it writes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from helpers import blank_png
from PIL import Image

from segcam.apps import cli
from segcam.data import SAMPLES, load_image


@pytest.fixture
def scene():
    return SAMPLES / "scene-1.png"


def test_demo_writes_a_figure_and_a_table(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "-o", str(out)]) == 0
    with Image.open(out) as img:
        assert img.size[0] > 1000 and img.size[1] > 600  # 3 scenes × 6 panels
    printed = capsys.readouterr().out
    assert "seg-xres-cam" in printed and "plus" in printed and f"wrote {out}" in printed


@pytest.mark.parametrize(
    "region",
    [["--pixel", "20,22"], ["--box", "5,5,30,40"], ["--polygon", "5,5;5,40;30,20"], ["--all"]],
)
def test_explain_writes_overlay_and_heatmap(tmp_path, scene, region):
    overlay, npy = tmp_path / "overlay.png", tmp_path / "heat.npy"
    argv = ["explain", str(scene), "--class", "2", *region, "--method", "seg-xres-cam",
            "--window", "2x1", "--pool", "mean", "-o", str(overlay), "--save-npy", str(npy)]
    assert cli.main(argv) == 0
    heat = np.load(npy)
    assert heat.shape == (64, 64) and heat.dtype == np.float32
    assert 0 <= heat.min() and heat.max() <= 1 and np.isfinite(heat).all()
    with Image.open(overlay) as img:
        assert img.mode in ("RGB", "RGBA")


def test_explain_with_mask_file_and_several_layers(tmp_path, scene):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    argv = ["explain", str(scene), "--class", "1", "--mask", str(tmp_path / "mask.png"),
            "--layer", "downs.1", "downs.2", "--save-npy", str(tmp_path / "h.npy")]
    assert cli.main(argv) == 0
    assert (tmp_path / "h-downs_1.npy").exists() and (tmp_path / "h-downs_2.npy").exists()


def test_layers_command_names_the_default(capsys):
    assert cli.main(["layers"]) == 0
    out = capsys.readouterr().out
    assert "downs.2" in out and "default layer: downs.2" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--class", "1", "--pixel", "999,5"], "outside the image"),
        (["--class", "9"], "out of range"),
        (["--class", "1", "--layer", "down.2"], "Closest names"),
        (["--class", "1", "--pixel", "3"], "--pixel takes 2 or 3"),
        (["--class", "1", "--window", "2"], "--window applies to seg-xres-cam, not to seg-grad-cam"),
        (["--class", "1", "--method", "rise", "--n-masks", "0"], "--n-masks must be positive, got 0"),
        (["--class", "1", "--method", "rise", "--n-masks", "10.5"], "--n-masks takes an integer"),
        (["--class", "1", "--method", "rise", "--batch-size", "-1"], "--batch-size must be positive"),
        (["--class", "1", "--method", "seg-xres-cam", "--window", "2.5"], "--window takes N, HxW"),
        (["--class", "1", "--model", "resnet"], "unknown model"),
    ],
)
def test_bad_input_gives_a_one_line_error(scene, capsys, argv, message):
    assert cli.main(["explain", str(scene), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_image_file(tmp_path, capsys):
    assert cli.main(["explain", str(tmp_path / "nope.png"), "--class", "1"]) == 2
    assert "no image file" in capsys.readouterr().err


def test_grey_and_npy_images_load(tmp_path):
    Image.fromarray(np.full((8, 9), 128, np.uint8)).save(tmp_path / "g.png")
    grey = load_image(tmp_path / "g.png")
    assert grey.shape == (1, 8, 9) and abs(float(grey.max()) - 128 / 255) < 1e-6
    assert load_image(tmp_path / "g.png", channels=3).shape == (3, 8, 9)
    np.save(tmp_path / "v.npy", np.zeros((1, 4, 5, 6), np.float32))
    assert load_image(tmp_path / "v.npy").shape == (1, 4, 5, 6)


def test_console_script_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "segcam", "demo", "-o", str(tmp_path / "d.png")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d.png").exists()


def test_xres_window_defaults_to_the_api_default_and_full_means_whole_map(tmp_path, scene):
    from segcam import Explainer, Target, regions
    from segcam.models import default

    def cli_map(*extra):
        out = tmp_path / "h.npy"
        argv = ["explain", str(scene), "--class", "2", "--pixel", "20,22",
                "--method", "seg-xres-cam", *extra, "--save-npy", str(out)]
        assert cli.main(argv) == 0
        return np.load(out)

    ex = Explainer(default())
    image = load_image(scene)
    target = Target(2, regions.pixel(20, 22))
    default = ex.explain(image, target, method="seg-xres-cam").heatmap
    whole = ex.explain(image, target, method="seg-xres-cam", window=None).heatmap
    assert np.allclose(cli_map(), default, atol=1e-6)
    assert np.allclose(cli_map("--window", "full"), whole, atol=1e-6)
    assert not np.allclose(default, whole, atol=1e-3)


def test_sweep_writes_a_grid(tmp_path, scene, capsys):
    out = tmp_path / "sweep.png"
    argv = ["sweep", str(scene), "--class", "5", "--pixel", "37,12", "--layers", "stem", "downs.2",
            "ups.2", "--method", "seg-xres-cam", "-o", str(out)]
    assert cli.main(argv) == 0
    assert "3 layers" in capsys.readouterr().out
    with Image.open(out) as img:
        assert img.size[1] > 400  # three rows


def test_train_family_and_progress_grid(tmp_path, scene, monkeypatch, capsys):
    from segcam.apps.train import train_family

    monkeypatch.setenv("SEGCAM_CACHE", str(tmp_path / "cache"))
    paths = train_family("unet", steps=4, checkpoints=2, scenes=8, log=lambda m: None)
    assert [p.name for p in paths] == ["unet-4steps-at2.safetensors", "unet-4steps-at4.safetensors"]
    again = train_family("unet", steps=4, checkpoints=2, scenes=8, log=print)
    assert again == paths and "using cached" in capsys.readouterr().out
    out = tmp_path / "progress.png"
    argv = ["progress", *map(str, paths), "--image", str(scene), "--class", "1", "--box",
            "0,0,32,32", "--layers", "encoder1", "bottleneck", "--data-count", "4", "-o", str(out)]
    assert cli.main(argv) == 0
    assert "2 layers × 2 checkpoints" in capsys.readouterr().out
    assert out.exists()


def test_zoo_models_on_the_command_line(tmp_path, scene, capsys):
    assert cli.main(["layers", "--model", "zoo:unetr"]) == 0  # fixed 64×64 input
    assert "vit.norm" in capsys.readouterr().out
    out = tmp_path / "seg.npy"
    argv = ["explain", str(scene), "--class", "1", "--pixel", "30,30", "--model", "segformer",
            "--layer", "block4.1.mixffn-dwconv", "--save-npy", str(out)]
    assert cli.main(argv) == 0
    assert np.load(out).shape == (64, 64)


def test_rise_on_the_command_line_shows_progress(tmp_path, scene, capsys):
    out = tmp_path / "rise.npy"
    argv = ["explain", str(scene), "--class", "5", "--pixel", "37,12", "--method", "rise",
            "--n-masks", "64", "--save-npy", str(out)]
    assert cli.main(argv) == 0
    assert "64/64" in capsys.readouterr().err
    heat = np.load(out)
    assert heat.shape == (64, 64) and 0 <= heat.min() and heat.max() <= 1


def test_files_a_hostile_user_gave_end_in_one_line(tmp_path, capsys):
    """Found by trying segcam as a hostile user: each of these ended in a traceback or, for the
    11 KB 9500×9500 1-bit PNG (under Pillow's bomb limit), in exhausted memory."""
    huge = blank_png(tmp_path / "huge.png", 9500, 9500)
    bomb = blank_png(tmp_path / "bomb.png", 30000, 30000)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(np.random.default_rng(0).bytes(200))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{}, {}], dtype=object), allow_pickle=True)
    cases = [([str(huge)], "--max-pixels"), ([str(bomb)], "decompression bomb"), ([str(garbage)], "not a readable .npy"),
             ([str(objects)], "dtype object"), ([str(SAMPLES / "scene-1.png"), "--mask", str(huge)], "--max-pixels")]
    for args, message in cases:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning for the bomb
            assert cli.main(["explain", *args[:1], "--class", "1", *args[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
        assert time.perf_counter() - start < 5  # refused from the header, not after decoding


def test_train_by_miou_levels_and_progress_headed_by_level(tmp_path, scene, monkeypatch, capsys):
    from functools import partial

    from segcam.apps import levels, report

    monkeypatch.setenv("SEGCAM_CACHE", str(tmp_path))
    monkeypatch.setattr(levels, "train_levels", partial(levels.train_levels, scenes=8))  # not 1000 scenes: seconds
    argv = ["train", "--family", "unet", "--steps", "4", "--eval-every", "2", "--miou-levels", "0.9,0.0001,0.0005"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out  # a fresh U-Net's mIoU is about 0.001: the two low levels at step 2
    paths = [str(tmp_path / f"unet-4steps-miou{level}.safetensors") for level in ("0.0001", "0.0005")]
    assert out.splitlines()[-2:] == paths
    assert "mIoU levels not reached in 4 steps: 0.90" in out

    headers = []
    drawn = report.progress_grid
    monkeypatch.setattr(report, "progress_grid", lambda path, ckpts, *a, **k: headers.append([c.header for c in ckpts])
                        or drawn(path, ckpts, *a, **k))
    common = ["--image", str(scene), "--class", "1", "--layers", "encoder1", "-o", str(tmp_path / "p.png")]
    assert cli.main(["progress", *reversed(paths), *common]) == 0
    assert "1 layers × 2 checkpoints by mIoU (2 stored in the files, 0 measured" in capsys.readouterr().out
    assert [re.sub(r"0\.\d{3}, ", "M, ", h) for h in headers[0]] == ["mIoU ≥ 0.0001 (M, step 2)",
                                                                   "mIoU ≥ 0.0005 (M, step 2)"]
    assert cli.main(["progress", *paths, *common, "--measure-miou", "--data-count", "4"]) == 0
    assert "0 stored in the files, 2 measured on 4 synthetic scenes" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--miou-levels", "0.5", "--checkpoints", "2"], "drop --checkpoints (fixed steps) and --out"),
    (["--miou-levels", "0.5", "--out", "x.safetensors"], "drop --checkpoints"),
    (["--family", "unet", "--eval-every", "5"], "--eval-every applies with --miou-levels only"),
    (["--miou-levels", "50,70"], "not a number strictly between 0 and 1"),
    (["--miou-levels", ""], "non-empty"),
])
def test_train_flags_that_do_not_fit_end_in_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("SEGCAM_CACHE", str(tmp_path))
    assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
