"""NIfTI volumes: the (C, Z, Y, X) convention, affines written back exactly, and every file that
should not load — too big by its header, gzip streams, broken headers — refused before its voxels."""

from __future__ import annotations

import gzip
import struct
import sys
import time
import zlib

import nibabel as nib
import numpy as np
import pytest
import torch

from segcam import ImageError, ImageTooLargeError, TooLargeError
from segcam.data import load_image, load_labels, load_mask, load_nifti_affine, save_nifti

AFFINE = np.array([[0.5, 0, 0, -10], [0, 0.75, 0, 5], [0, 0, 2, 1], [0, 0, 0, 1]])  # float32-exact
DIMS, SCALING, OFFSET = 40, 112, 108  # NIfTI-1 header fields: dim[8] int16, scl_slope/inter float32, vox_offset


def coded(shape=(4, 3, 2)) -> np.ndarray:
    """Voxel (i, j, k) holds 100·i + 10·j + k: where a value lands shows the axis order."""
    i, j, k = np.indices(shape)
    return (100 * i + 10 * j + k).astype(np.int16)


def saved(path, array, affine=AFFINE, kind=nib.Nifti1Image):
    nib.save(kind(array, affine), str(path))
    return path


def patched(path, offset, fmt, *values):
    """Rewrite header fields of an uncompressed .nii file in place."""
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz", "V.NII.GZ"])
def test_a_volume_reads_as_c_z_y_x(tmp_path, name):
    data = coded()
    image = load_image(saved(tmp_path / name, data))
    assert image.dtype == torch.float32 and image.shape == (1, 2, 3, 4) and image.is_contiguous()
    assert image[0, 1, 2, 3] == 100 * 3 + 10 * 2 + 1  # [c, k, j, i] = voxel (i, j, k)
    for k in range(2):  # slices along D are the file's k-slices (axial for an axial scan), each (Y, X)
        assert torch.equal(image[0, k], torch.from_numpy(data[:, :, k].T.astype(np.float32)))


def test_the_fourth_axis_and_a_vector_fifth_are_channels(tmp_path):
    data = np.random.default_rng(0).random((4, 3, 2, 3)).astype(np.float32)
    image = load_image(saved(tmp_path / "t.nii.gz", data))
    assert image.shape == (3, 2, 3, 4)
    assert torch.equal(image, torch.from_numpy(data.transpose(3, 2, 1, 0).copy()))
    assert load_image(tmp_path / "t.nii.gz", channels=3).shape == (3, 2, 3, 4)
    with pytest.raises(ImageError, match="holds 3 channels, not channels=1"):
        load_image(tmp_path / "t.nii.gz", channels=1)
    vector = load_image(saved(tmp_path / "vec.nii", data[:, :, :, None, :2]))  # (X, Y, Z, 1, C)
    assert torch.equal(vector, image[:2])
    with pytest.raises(ImageError, match=r"keep one value axis after Z"):
        load_image(saved(tmp_path / "two.nii", np.zeros((2, 2, 2, 2, 3), np.float32)))


def test_a_two_d_file_reads_as_one_y_x_image_and_nifti2_reads_too(tmp_path):
    flat = coded((4, 3, 1))[:, :, 0]
    assert torch.equal(load_image(saved(tmp_path / "flat.nii", flat))[0], torch.from_numpy(flat.T.astype(np.float32)))
    two = load_image(saved(tmp_path / "v2.nii", coded().astype(np.float64), kind=nib.Nifti2Image))
    assert torch.equal(two, load_image(saved(tmp_path / "v1.nii", coded())))


def test_header_scaling_is_applied(tmp_path):
    path = patched(saved(tmp_path / "ct.nii", coded()), SCALING, "<ff", 2.0, -1024.0)
    assert torch.equal(load_image(path)[0], torch.from_numpy(coded().T * 2.0 - 1024.0).float())
    assert load_labels(saved(tmp_path / "plain.nii", coded())).dtype == torch.int64  # identity: integers stay


def test_affine_round_trip_and_maps_written_back_on_the_input_grid(tmp_path):
    source = saved(tmp_path / "in.nii.gz", coded())
    affine = load_nifti_affine(source)
    assert affine.dtype == np.float64 and np.array_equal(affine, AFFINE)
    heatmap = load_image(source)[0] / 321  # (D, H, W) = (Z, Y, X), as a map from segcam would be
    save_nifti(tmp_path / "map.nii.gz", heatmap, affine)
    written = nib.load(str(tmp_path / "map.nii.gz"))
    assert written.shape == (4, 3, 2) and np.array_equal(written.affine, AFFINE)  # the input's grid
    assert np.allclose(written.get_fdata(), coded() / 321)
    assert (tmp_path / "map.nii.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert torch.equal(load_image(tmp_path / "map.nii.gz")[0], heatmap)
    channels = torch.rand(2, 2, 3, 4)
    save_nifti(tmp_path / "c.nii", channels.numpy(), affine)  # (C, D, H, W) → (X, Y, Z, C)
    assert nib.load(str(tmp_path / "c.nii")).shape == (4, 3, 2, 2) and torch.equal(load_image(tmp_path / "c.nii"),
                                                                                     channels)


def test_save_nifti_picks_types_viewers_read(tmp_path):
    save_nifti(tmp_path / "m.nii", np.ones((2, 3, 4), bool), AFFINE)
    save_nifti(tmp_path / "l.nii", torch.arange(24).reshape(2, 3, 4), AFFINE)  # int64 labels
    save_nifti(tmp_path / "h.nii", torch.ones(2, 3, 4, dtype=torch.bfloat16), torch.from_numpy(AFFINE))
    assert nib.load(str(tmp_path / "h.nii")).get_data_dtype() == np.float32
    assert nib.load(str(tmp_path / "m.nii")).get_data_dtype() == np.uint8
    assert nib.load(str(tmp_path / "l.nii")).get_data_dtype() == np.int32
    assert torch.equal(load_labels(tmp_path / "l.nii"), torch.arange(24).reshape(2, 3, 4))


@pytest.mark.parametrize("path, array, affine, message", [
    ("m.png", np.zeros((2, 2, 2)), AFFINE, "writes .nii or .nii.gz files"),
    ("m.nii", np.zeros((1, 1, 2, 2, 2)), AFFINE, r"\(D, H, W\), \(C, D, H, W\) or \(H, W\).*array\[b\]"),
    ("m.nii", np.zeros((2, 0, 2)), AFFINE, "got shape"),
    ("m.nii", np.full((2, 2, 2), np.nan), AFFINE, "array has NaN or inf"),
    ("m.nii", np.zeros((2, 2, 2)), np.eye(3), r"\(4, 4\) voxel-to-world matrix.*load_nifti_affine"),
    ("m.nii", np.zeros((2, 2, 2)), np.ones((4, 4)), r"ending in the row \(0, 0, 0, 1\)"),
    ("m.nii", np.full((2, 2, 2), 2**40), AFFINE, "beyond int32's range"),
    ("m.nii", [[0.5]], AFFINE, "torch.Tensor or numpy array of numbers"),
    ("m.nii", torch.zeros(2, 2, 2, dtype=torch.complex64), AFFINE, "torch.Tensor or numpy array of numbers"),
    ("no/such/m.nii", np.zeros((2, 2, 2)), AFFINE, "check the folder exists"),
])
def test_save_nifti_checks_its_arguments(tmp_path, path, array, affine, message):
    with pytest.raises(ImageError, match=message):
        save_nifti(tmp_path / path, array, affine)


def test_masks_and_label_maps(tmp_path):
    labels = (coded() % 3).astype(np.uint8)
    path = saved(tmp_path / "seg.nii.gz", labels)
    assert torch.equal(load_labels(path), torch.from_numpy(labels.T.astype(np.int64)))
    mask = load_mask(path)
    assert mask.dtype == bool and mask.shape == (2, 3, 4) and np.array_equal(mask, labels.T != 0)
    with pytest.raises(ImageError, match="holds 2 channels; a mask or label map holds one value per voxel"):
        load_labels(saved(tmp_path / "two.nii", np.zeros((4, 3, 2, 2), np.uint8)))


def header_only(path, shape, kind=nib.Nifti1Header):
    """A .nii.gz of a few hundred bytes whose header claims ``shape``: a gzip bomb if it were read."""
    header = kind()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header["vox_offset"] = kind.single_vox_offset
    path.write_bytes(gzip.compress(header.binaryblock + bytes(4) + bytes(64)))
    return path


def test_a_header_claiming_too_many_voxels_is_refused_before_reading(tmp_path):
    bomb = header_only(tmp_path / "bomb.nii.gz", (2000, 2000, 2000))
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"2000×2000×2000 = 8,000,000,000 pixels, over the limit") as error:
        load_image(bomb)
    assert time.perf_counter() - start < 1 and isinstance(error.value, (ImageError, TooLargeError))
    with pytest.raises(ImageTooLargeError):
        load_mask(bomb)
    absurd = header_only(tmp_path / "absurd.nii.gz", (2**40,) * 3, kind=nib.Nifti2Header)  # 64-bit lengths
    with pytest.raises(ImageTooLargeError, match=f"{2**120:,} pixels, over the limit"):
        load_image(absurd, max_pixels=2**62)
    with pytest.raises(ImageError, match="damaged"):  # lifting the limit reads the (missing) voxels
        load_image(header_only(tmp_path / "lifted.nii.gz", (64, 64, 64)), max_pixels=None)


def test_channels_count_towards_memory(tmp_path):
    many = header_only(tmp_path / "fmri.nii.gz", (16, 16, 16, 1000))  # 4096 voxels, 1000 time points
    with pytest.raises(ImageTooLargeError, match=r"1000 channels of 4,096 voxels = 4,096,000 values, over 4 × "
                                                 r"max_pixels = 400,000.*max_pixels=1024000"):
        load_image(many, max_pixels=100_000)
    data = np.ones((8, 8, 8, 4), np.float32)
    assert load_image(saved(tmp_path / "four.nii", data), max_pixels=512).shape == (4, 8, 8, 8)  # 4 × limit: fine
    with pytest.raises(ImageTooLargeError, match="8×8×8 = 512 pixels, over the limit of 511"):
        load_image(tmp_path / "four.nii", max_pixels=511)


def test_a_stream_that_goes_on_past_its_voxels_is_read_only_that_far(tmp_path):
    nii = saved(tmp_path / "v.nii", coded()).read_bytes()
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    stream = packer.compress(nii + bytes(1 << 20)) + packer.flush(zlib.Z_SYNC_FLUSH)
    (tmp_path / "long.nii.gz").write_bytes(stream + np.random.default_rng(0).bytes(4096))  # then garbage
    assert torch.equal(load_image(tmp_path / "long.nii.gz"), load_image(tmp_path / "v.nii"))


def broken_files(folder):
    """Name → (file, expected message) of NIfTI files that must be refused."""
    good = saved(folder / "good.nii", coded())
    data = good.read_bytes()

    def written(name, content):
        (folder / name).write_bytes(content)
        return folder / name

    pair = bytearray(data)
    pair[344:348] = b"ni1\0"
    return {
        "garbage": (written("g.nii", np.random.default_rng(1).bytes(600)), "not a NIfTI file"),
        "text gz": (written("t.nii.gz", gzip.compress(b"hello" * 200)), "not a NIfTI file"),
        "bad gzip": (written("b.nii.gz", b"\x1f\x8b\x08\x00" + bytes(40)), "cannot read .* as a NIfTI volume"),
        "truncated": (written("cut.nii", data[:-10]), "damaged .* header's shape"),
        "cut header": (written("stub.nii", data[:200]), r"ends inside its NIfTI header \(200 of 348 bytes\)"),
        "truncated gz": (written("cut.nii.gz", gzip.compress(data)[:-30]), "damaged"),
        "pair": (written("pair.nii", bytes(pair)), r"not a single-file NIfTI volume .*\.hdr/\.img"),
        "negative": (patched(written("neg.nii", data), DIMS, "<4h", 3, 4, -3, 2), "negative axis lengths"),
        "nine axes": (patched(written("nine.nii", data), DIMS, "<h", 9), "has 9 axes; segcam reads NIfTI images of 2"),
        "empty": (patched(written("empty.nii", data), DIMS, "<4h", 3, 4, 0, 2), "empty .* at least one pixel"),
        "offset": (patched(written("far.nii", data), OFFSET, "<f", 1e12), "puts its voxels at byte"),
        "nan offset": (patched(written("nan.nii", data), OFFSET, "<f", float("nan")), "broken NIfTI header"),
        "bad scaling": (patched(written("inf.nii", data), SCALING, "<ff", 2.0, float("inf")), "broken NIfTI header"),
        "rgb": (saved(folder / "rgb.nii", np.zeros((2, 2, 2), [("R", "u1"), ("G", "u1"), ("B", "u1")])),
                "voxels of type .*as channels on the fourth axis"),
        "complex": (saved(folder / "c.nii", np.zeros((2, 2, 2), np.complex64)), "voxels of type complex64"),
        "one axis": (saved(folder / "line.nii", np.zeros(5, np.float32)), "has 1 axes"),
    }


@pytest.mark.parametrize("case", ["garbage", "text gz", "bad gzip", "truncated", "cut header", "truncated gz", "pair", "negative",
                                  "nine axes", "empty", "offset", "nan offset", "bad scaling", "rgb", "complex",
                                  "one axis"])
def test_broken_files_give_one_image_error(tmp_path, case):
    path, message = broken_files(tmp_path)[case]
    with pytest.raises(ImageError, match=message):
        load_image(path)
    with pytest.raises(ImageError):
        load_labels(path)


def test_a_nan_affine_is_refused_but_the_voxels_still_load(tmp_path):
    path = saved(tmp_path / "v.nii", coded())
    patched(path, 280, "<f", float("nan"))  # srow_x[0]; sform_code is set, so the sform is the affine
    with pytest.raises(ImageError, match="NaN or inf in its affine"):
        load_nifti_affine(path)
    assert load_image(path).shape == (1, 2, 3, 4)
    (tmp_path / "zeros.nii").write_bytes(bytes(400))
    with pytest.raises(ImageError, match="not a NIfTI file"):
        load_nifti_affine(tmp_path / "zeros.nii")
    with pytest.raises(ImageError, match="no image file at"):
        load_nifti_affine(tmp_path / "missing.nii")


def test_without_nibabel_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    path = saved(tmp_path / "v.nii", coded())
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel now raises ImportError
    for call in (lambda: load_image(path), lambda: load_nifti_affine(path),
                 lambda: save_nifti(tmp_path / "o.nii", np.zeros((2, 2, 2)), AFFINE)):
        with pytest.raises(ImageError, match=r"needs nibabel.*pip install 'segcam\[web\]' or pip install nibabel"):
            call()
