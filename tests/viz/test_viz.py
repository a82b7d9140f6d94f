"""Figures and overlays: file sizes, 3-D slicing, exact overlay values, argument checks, no global
matplotlib state, and several threads drawing at once."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from segcam import SegcamError
from segcam.data import CLASS_NAMES, SceneConfig, make_scene
from segcam.viz import (
    Row,
    centre_slice,
    class_colormap,
    display_image,
    overlay,
    save_grid,
    save_overlay,
    save_rows,
    save_scene_gallery,
    to_2d,
)

INFERNO_0 = (0.001462, 0.000466, 0.013866)  # matplotlib's inferno at 0 and at 1
INFERNO_1 = (0.988362, 0.998364, 0.644924)


def case(seed: int, spatial: tuple[int, ...] = (16, 20)):
    """An image, a heatmap and a region of shape ``spatial``."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(3, *spatial, generator=gen)
    heat = torch.rand(*spatial, generator=gen).numpy()
    region = torch.zeros(spatial, dtype=torch.bool)
    region[(slice(2, 9),) * len(spatial)] = True
    return image, heat, region


def assert_png_size(path, width_inches: float, height_inches: float, dpi: int) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG"
        width, height = img.size
    assert abs(width - width_inches * dpi) <= 1 and abs(height - height_inches * dpi) <= 1, img.size


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_overlay_values_are_exact():
    image = torch.tensor([[[0.0, 2.0]]])  # grey, stretched to [0, 1]
    out = overlay(image, np.array([[0.0, 1.0]]))
    assert out.shape == (1, 2, 3)
    assert np.allclose(out[0, 0], 0.55 * np.array(INFERNO_0), atol=1e-6)
    assert np.allclose(out[0, 1], 0.45 + 0.55 * np.array(INFERNO_1), atol=1e-6)
    assert np.allclose(overlay(image, np.array([[-3.0, 7.0]])), out)  # the heatmap is clipped to [0, 1]
    rgb = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 0.4]]])  # RGB averaged after stretching
    assert np.allclose(overlay(rgb, torch.tensor([[0.0, 0.0]]), alpha=0)[0, :, 0], [0.0, 0.8])


def test_display_image_stretches_and_picks_channels():
    assert np.allclose(display_image(torch.tensor([[[1.0, 3.0]], [[9.0, 9.0]]])), [[0.0, 1.0]])  # first channel
    rgb = display_image(np.arange(12, dtype=np.float32).reshape(3, 2, 2))
    assert rgb.shape == (2, 2, 3) and rgb.min() == 0 and rgb.max() == 1
    assert not display_image(torch.full((1, 3, 3), 5.0)).any()  # flat: all zeros


def test_3d_cases_are_cut_at_the_regions_centre_slice():
    image, heat, region = case(0, (10, 12, 12))
    region[:] = False
    region[3:7, 4, 4] = True  # touches slices 3, 4, 5, 6: the median is 5
    assert centre_slice(region) == 5 and centre_slice(torch.zeros(10, 2, 2)) == 5
    img, [cut], reg, z = to_2d(image.numpy(), [heat], region.numpy())
    assert z == 5 and np.array_equal(img, image[:, 5].numpy()) and np.array_equal(cut, heat[5])
    assert np.array_equal(reg, region[5].numpy())
    assert to_2d(image[:, 0].numpy(), [heat[0]], region[0].numpy())[3] is None


def test_save_overlay_writes_a_png_of_the_figure_size(tmp_path):
    for spatial in ((16, 20), (8, 16, 20)):
        image, heat, region = case(1, spatial)
        save_overlay(tmp_path / f"o{len(spatial)}.png", image, heat, region, title="a title")
        assert_png_size(tmp_path / f"o{len(spatial)}.png", 9, 4.4, 110)
    image, heat, region = case(1)  # tensors and arrays draw alike
    save_overlay(tmp_path / "arrays.png", image.numpy(), heat, region.numpy())
    save_overlay(str(tmp_path / "tensors.png"), image, torch.from_numpy(heat), region)
    assert np.array_equal(pixels(tmp_path / "arrays.png"), pixels(tmp_path / "tensors.png"))


def test_save_grid_writes_a_png_of_the_figure_size(tmp_path):
    for spatial in ((16, 20), (8, 16, 20)):
        image, heat, region = case(2, spatial)
        cells = {"layer a": {"step 1": heat, "step 2": 1 - heat}, "layer b": {"step 1": heat, "step 2": heat}}
        save_grid(tmp_path / "g.png", image, region, cells, title="grid")
        assert_png_size(tmp_path / "g.png", 2.3 * 3, 2.3 * 2 + 0.5, 90)


def test_save_rows_writes_a_png_of_the_figure_size(tmp_path):
    image, heat, region = case(3)
    predicted = torch.randint(0, 4, (16, 20), generator=torch.Generator().manual_seed(0))
    rows = [
        Row(image, predicted, region, {"a": (heat, "caption"), "b": (1 - heat, "")}, title="with truth",
            truth=predicted, evidence={"cue": region, "bias tile": ~region}),
        Row(image, predicted, region, {"a": (heat, "")}),  # no truth, one heatmap fewer
    ]
    save_rows(tmp_path / "r.png", rows, 4, ["w", "x", "y", "z"])
    assert_png_size(tmp_path / "r.png", 2.5 * 6, 2.75 * 2 + 0.6, 100)
    volume, heat3, region3 = case(4, (6, 16, 20))
    save_rows(tmp_path / "r3.png", [Row(volume, torch.zeros(6, 16, 20), region3, {"a": (heat3, "")})], 2)
    assert_png_size(tmp_path / "r3.png", 2.5 * 4, 2.75 + 0.6, 100)


@pytest.mark.parametrize("config", [SceneConfig(), SceneConfig(size=32, dims=3, tile=8, radius=(4, 6), cue_size=4)],
                         ids=["2d", "3d"])
def test_save_scene_gallery_writes_a_png_of_the_figure_size(tmp_path, config):
    scenes = [make_scene(i, 1, config) for i in range(3)]
    save_scene_gallery(tmp_path / "s.png", scenes, CLASS_NAMES)
    assert_png_size(tmp_path / "s.png", 2.4 * 3, 5.2, 90)


def test_class_colormap_gives_distinct_colours():
    colours = class_colormap(12).colors
    assert len(colours) == 12 and len({tuple(c) for c in colours}) == 12


@pytest.mark.parametrize("call, message", [
    (lambda d, i, h, r: save_overlay(d / "missing" / "o.png", i, h, r), "does not exist"),
    (lambda d, i, h, r: save_overlay(d / "o.docx", i, h, r), "cannot write a figure as '.docx'"),
    (lambda d, i, h, r: save_overlay(d / "o.png", i, h[:, :5], r), r"map 0 has shape \(16, 5\)"),
    (lambda d, i, h, r: save_overlay(d / "o.png", i[:, :4], h, r), "does not fit the region"),
    (lambda d, i, h, r: save_overlay(d / "o.png", i, h, r[None, None]), "region must be"),
    (lambda d, i, h, r: save_overlay(d / "o.png", i, h, r, title=3), "title must be a string"),
    (lambda d, i, h, r: save_overlay(d / "o.png", i, np.full_like(h, np.nan), r), "NaN or inf"),
    (lambda d, i, h, r: save_overlay(d / "o.png", i, h.astype(str), r), "array of numbers"),
    (lambda d, i, h, r: save_grid(d / "g.png", i, r, {}), "non-empty dict"),
    (lambda d, i, h, r: save_grid(d / "g.png", i, r, {"a": {"x": h}, "b": {"y": h}}), "same columns"),
    (lambda d, i, h, r: save_rows(d / "r.png", [], 2), "non-empty list of Row"),
    (lambda d, i, h, r: save_rows(d / "r.png", [Row(i, r, r, {"a": (h, "")})], 3, ["a", "b"]), "one name per class"),
    (lambda d, i, h, r: save_rows(d / "r.png", [Row(i, r, r, {"a": h})], 2), r"\(map, caption\) pair"),
    (lambda d, i, h, r: save_rows(d / "r.png", [Row(i, r, r, {})], 0), "n_classes must be positive"),
    (lambda d, i, h, r: save_scene_gallery(d / "s.png", [i], CLASS_NAMES), "list of Scene"),
    (lambda d, i, h, r: overlay(i, h, alpha=1.5), r"alpha must be in \[0, 1\]"),
    (lambda d, i, h, r: display_image(i[None]), r"\(C, H, W\) image"),
    (lambda d, i, h, r: centre_slice(r), "3-D region"),
])
def test_arguments_are_checked(tmp_path, call, message):
    image, heat, region = case(5)
    with pytest.raises(SegcamError, match=message):
        call(tmp_path, image, heat, region)


def test_importing_and_drawing_leave_the_matplotlib_backend_alone(tmp_path):
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.rcParams['backend']\n"
        "import torch, segcam.viz\n"
        "segcam.viz.save_overlay(sys.argv[1], torch.rand(1, 8, 8), torch.rand(8, 8), torch.ones(8, 8) > 0)\n"
        "print(before, matplotlib.rcParams['backend'], 'matplotlib.pyplot' in sys.modules)\n"
    )
    for backend in ("svg", "pdf"):
        env = {**os.environ, "MPLBACKEND": backend}
        result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.png")], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [backend, backend, "False"]
        assert_png_size(tmp_path / "o.png", 9, 4.4, 110)


def test_four_threads_drawing_at_once_write_the_right_files(tmp_path):
    def draw(job: tuple[int, int]) -> None:
        seed, round_ = job
        image, heat, region = case(seed)
        save_overlay(tmp_path / f"o-{seed}-{round_}.png", image, heat, region, title=f"case {seed}")
        save_grid(tmp_path / f"g-{seed}-{round_}.png", image, region, {"l": {"a": heat, "b": heat**2}})

    for seed in range(4):  # serial references
        draw((seed, -1))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(draw, [(seed, r) for r in range(3) for seed in range(4)]))
    for seed in range(4):
        for kind in "og":
            reference = pixels(tmp_path / f"{kind}-{seed}--1.png")
            assert not np.array_equal(reference, pixels(tmp_path / f"{kind}-{(seed + 1) % 4}--1.png"))
            for r in range(3):
                assert np.array_equal(pixels(tmp_path / f"{kind}-{seed}-{r}.png"), reference), (kind, seed, r)
