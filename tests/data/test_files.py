"""Image, volume and mask files: what loads, and one ImageError (naming the fix) for everything
that should not — huge images, decompression bombs, broken or pickled .npy files, non-images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import blank_png
from PIL import Image

from segcam import ImageError
from segcam.data import DEFAULT_MAX_PIXELS, load_image, load_mask, save_image

BOMB_WARNING = "ignore::PIL.Image.DecompressionBombWarning"  # Pillow warns above 89 M pixels


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    return blank_png(tmp_path_factory.mktemp("huge") / "huge.png", 9500, 9500)


def test_grey_colour_and_one_bit_images_load(tmp_path):
    Image.fromarray(np.full((8, 9), 128, np.uint8)).save(tmp_path / "g.png")
    grey = load_image(tmp_path / "g.png")
    assert grey.dtype == torch.float32 and grey.shape == (1, 8, 9)
    assert torch.allclose(grey, torch.full_like(grey, 128 / 255))
    assert load_image(tmp_path / "g.png", channels=3).shape == (3, 8, 9)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    colour = load_image(str(tmp_path / "c.png"))
    assert torch.equal(colour, torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255))
    assert load_image(tmp_path / "c.png", channels=1).shape == (1, 5, 7)
    small = blank_png(tmp_path / "b.png", 10, 4)
    assert Image.open(small).mode == "1" and load_image(small).shape == (1, 4, 10)


def test_npy_arrays_load_as_stored_in_float32(tmp_path):
    volume = np.random.default_rng(1).random((2, 4, 5, 6))
    np.save(tmp_path / "v.npy", volume)
    assert torch.equal(load_image(tmp_path / "v.npy"), torch.from_numpy(volume.astype(np.float32)))
    np.save(tmp_path / "u8.npy", np.array([[0, 255], [7, 1]], np.uint8))
    as_float = load_image(tmp_path / "u8.npy")  # integers are converted, not scaled
    assert as_float.dtype == torch.float32 and as_float.tolist() == [[[0.0, 255.0], [7.0, 1.0]]]
    np.save(tmp_path / "b.npy", np.eye(3, dtype=bool)[None])
    assert load_image(tmp_path / "b.npy", channels=1).sum() == 3
    np.save(tmp_path / "big-endian.npy", np.ones((3, 2, 2), ">f8"))
    assert load_image(tmp_path / "big-endian.npy", channels=3).dtype == torch.float32
    with pytest.raises(ImageError, match="holds 2 channels, not channels=3"):
        load_image(tmp_path / "v.npy", channels=3)


def test_save_image_round_trips_exactly(tmp_path):
    levels = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 4, 5) * 4 / 255
    save_image(tmp_path / "x.png", levels)
    assert torch.equal(load_image(tmp_path / "x.png"), levels)
    save_image(tmp_path / "g.png", np.full((1, 2, 3), 2.0))  # clamped to 1
    assert load_image(tmp_path / "g.png").tolist() == [[[1.0] * 3] * 2]


@pytest.mark.parametrize("image, message", [
    (torch.zeros(2, 4, 4), "C = 1 or 3"),
    (torch.zeros(1, 3, 4, 4), "for a volume save one slice"),
    (torch.full((1, 2, 2), float("nan")), "NaN or inf"),
    ([[0.5]], "torch.Tensor or numpy array"),
])
def test_save_image_checks_the_image(tmp_path, image, message):
    with pytest.raises(ImageError, match=message):
        save_image(tmp_path / "x.png", image)


def test_save_image_checks_the_path(tmp_path):
    with pytest.raises(ImageError, match="folder exists"):
        save_image(tmp_path / "no" / "such" / "x.png", torch.zeros(1, 2, 2))
    with pytest.raises(ImageError, match="suffix"):
        save_image(tmp_path / "x.unknown", torch.zeros(1, 2, 2))
    with pytest.raises(ImageError, match="file path"):
        save_image(None, torch.zeros(1, 2, 2))


@pytest.mark.filterwarnings(BOMB_WARNING)
def test_a_huge_one_bit_png_is_refused_before_decoding_without_using_memory(huge_png):
    assert huge_png.stat().st_size < 20_000  # 11 KB on disk, 90 M pixels decoded
    script = (
        "import resource, time, sys\n"
        "from segcam import ImageError\n"
        "from segcam.data import load_image\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    load_image(sys.argv[1])\n"
        "except ImageError as error:\n"
        "    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak\n"
        "    print(time.perf_counter() - start, grown, error, sep='\\n')\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script, str(huge_png)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seconds, grown_kib, message = result.stdout.split("\n", 2)
    assert float(seconds) < 2 and int(grown_kib) < 50_000  # decoding would take ≥ 90 MB, RGB floats 1 GB
    assert "9500×9500 = 90,250,000 pixels" in message and f"{DEFAULT_MAX_PIXELS:,}" in message
    assert "max_pixels=90250000" in message and "--max-pixels" in message
    with pytest.raises(ImageError, match="over the limit"):
        load_mask(huge_png)


def test_the_limit_counts_spatial_elements_and_can_be_raised_or_lifted(tmp_path):
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png", max_pixels=72).shape == (1, 8, 9)
    with pytest.raises(ImageError, match="8×9 = 72 pixels, over the limit of 71"):
        load_image(tmp_path / "g.png", max_pixels=71)
    assert load_image(tmp_path / "g.png", max_pixels=None).shape == (1, 8, 9)
    np.save(tmp_path / "v.npy", np.zeros((3, 4, 5, 6), np.float32))  # channels do not count
    assert load_image(tmp_path / "v.npy", max_pixels=120).shape == (3, 4, 5, 6)
    with pytest.raises(ImageError, match="4×5×6 = 120 pixels"):
        load_image(tmp_path / "v.npy", max_pixels=119)
    np.save(tmp_path / "m.npy", np.ones((2, 3, 4), bool))
    with pytest.raises(ImageError, match="2×3×4 = 24 pixels"):
        load_mask(tmp_path / "m.npy", max_pixels=23)


@pytest.mark.filterwarnings(BOMB_WARNING)
@pytest.mark.parametrize("max_pixels", [DEFAULT_MAX_PIXELS, None])
def test_a_decompression_bomb_gives_one_image_error(tmp_path, max_pixels):
    bomb = blank_png(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb, max_pixels=max_pixels)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_mask(bomb, max_pixels=max_pixels)


def broken_npy_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Name → (file, expected message) of .npy files that must be refused."""
    def saved(name: str, array: np.ndarray, **kwargs) -> Path:
        np.save(folder / name, array, **kwargs)
        return folder / name

    garbage = folder / "garbage.npy"
    garbage.write_bytes(np.random.default_rng(2).bytes(300))
    truncated = saved("truncated.npy", np.ones((3, 16, 16), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:500])
    bad_header = folder / "bad-header.npy"
    bad_header.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4 }\n")
    fix = "numpy.save"
    return {
        "garbage": (garbage, f"not a readable .npy file .* {fix}"),
        "bad header": (bad_header, f"not a readable .npy file .* {fix}"),
        "truncated": (truncated, f"damaged .* {fix}"),
        "objects": (saved("objects.npy", np.array([{}], dtype=object), allow_pickle=True), f"dtype object.*{fix}"),
        "strings": (saved("strings.npy", np.array([["a", "b"], ["c", "d"]])), f"dtype <U1.*{fix}"),
        "complex": (saved("complex.npy", np.zeros((4, 4), np.complex64)), f"dtype complex64.*{fix}"),
        "structured": (saved("structured.npy", np.zeros((4, 4), [("a", "f4")])), f"dtype.*{fix}"),
        "empty": (saved("empty.npy", np.zeros((1, 0, 4), np.float32)), "empty .* at least one pixel"),
        "one axis": (saved("flat.npy", np.zeros(16, np.float32)), r"shape \(16,\); it must be"),
        "five axes": (saved("five.npy", np.zeros((1, 1, 2, 2, 2), np.float32)), r"shape \(1, 1, 2, 2, 2\); it must"),
    }


@pytest.mark.parametrize("case", ["garbage", "bad header", "truncated", "objects", "strings", "complex",
                                  "structured", "empty", "one axis", "five axes"])
def test_broken_npy_files_give_one_image_error(tmp_path, case):
    path, message = broken_npy_files(tmp_path)[case]
    with pytest.raises(ImageError, match=message):
        load_image(path)
    with pytest.raises(ImageError):
        load_mask(path)


def test_files_pillow_cannot_decode_give_one_image_error(tmp_path):
    (tmp_path / "text.png").write_text("this is not an image")
    with pytest.raises(ImageError, match="cannot read .* as an image"):
        load_image(tmp_path / "text.png")
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    for load in (load_image, load_mask):
        with pytest.raises(ImageError, match="cannot decode .* damaged"):
            load(tmp_path / "cut.png")


def test_missing_files_and_folders(tmp_path):
    for load in (load_image, load_mask):
        with pytest.raises(ImageError, match="no image file at"):
            load(tmp_path / "nope.png")
        with pytest.raises(ImageError, match="is a folder"):
            load(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 2}, "channels must be 1 .grey., 3 .RGB. or None"),
    ({"channels": "3"}, "channels must be an integer"),
    ({"max_pixels": 0}, "max_pixels must be positive"),
    ({"max_pixels": -5}, "max_pixels must be positive"),
    ({"max_pixels": 2.5}, "max_pixels must be an integer"),
    ({"max_pixels": True}, "max_pixels must be an integer"),
])
def test_arguments_are_checked(tmp_path, kwargs, message):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "g.png")
    with pytest.raises(ImageError, match=message):
        load_image(tmp_path / "g.png", **kwargs)
    with pytest.raises(ImageError, match="file path"):
        load_image(42)
    with pytest.raises(TypeError):
        load_image(tmp_path / "g.png", 3)  # channels is keyword-only


def test_masks_load_as_booleans(tmp_path):
    grey = np.zeros((6, 7), np.uint8)
    grey[2:4, 1:5] = 9
    Image.fromarray(grey).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.dtype == bool and mask.shape == (6, 7) and mask.sum() == 8
    np.save(tmp_path / "m.npy", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    volume = load_mask(tmp_path / "m.npy")
    assert isinstance(volume, np.ndarray) and volume.dtype == bool and volume.sum() == 23
    np.save(tmp_path / "m4.npy", np.ones((1, 2, 3, 4), bool))
    with pytest.raises(ImageError, match=r"it must be \(H, W\) or \(D, H, W\)"):
        load_mask(tmp_path / "m4.npy")


def test_sixteen_bit_and_float_grey_images_keep_their_depth(tmp_path):
    deep = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 4096 levels up to 65520
    Image.fromarray(deep).save(tmp_path / "ct.png")
    image = load_image(tmp_path / "ct.png")
    assert image.shape == (1, 64, 64) and len(torch.unique(image)) == 4096
    assert torch.allclose(image[0], torch.from_numpy(deep / 65535.0).float())
    assert load_image(tmp_path / "ct.png", channels=3).shape == (3, 64, 64)
    values = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    Image.fromarray(values).save(tmp_path / "map.tif")
    assert torch.equal(load_image(tmp_path / "map.tif")[0], torch.from_numpy(values))  # as stored
    assert load_mask(tmp_path / "ct.png").sum() == 64 * 64 - 1 and load_mask(tmp_path / "map.tif").all()


def test_label_maps_load_as_class_indices(tmp_path):
    from segcam.data import load_labels

    labels = np.array([[0, 1, 2], [5, 4, 3]], dtype=np.uint8)
    Image.fromarray(labels, mode="L").save(tmp_path / "grey.png")
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([255, 0, 0] * 256)
    palette.save(tmp_path / "palette.png")  # a palette index is the class, whatever its colour
    np.save(tmp_path / "labels.npy", labels.astype(np.int32))
    for name in ("grey.png", "palette.png", "labels.npy"):
        out = load_labels(tmp_path / name)
        assert out.dtype == torch.int64 and out.tolist() == labels.tolist()


@pytest.mark.parametrize("array, message", [
    (np.full((2, 2), 0.5, dtype=np.float32), "non-integer"),
    (np.array([[-1, 0]], dtype=np.int16), "negative"),
])
def test_bad_label_maps_are_refused(tmp_path, array, message):
    from segcam.data import load_labels

    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ImageError, match=message):
        load_labels(tmp_path / "bad.npy")
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageError, match="grey or palette"):
        load_labels(tmp_path / "rgb.png")
