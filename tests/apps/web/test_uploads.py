"""Uploads: every supported format decodes as segcam.data.load_image reads the file; bombs, oversized,
damaged and unknown files are refused with the upload's name; model uploads are safetensors only."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tempfile
import time
import zlib

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from segcam import ImageError, ImageTooLargeError, ModelLoadError, SegcamError, TooLargeError, UnsafePickleError
from segcam.apps.web.uploads import check_model_size, decode_upload, loading_model, model_upload, sniff
from segcam.data import load_image
from segcam.errors import TooLargeError as TooLarge
from segcam.models import UNet, load_model, save_weights, zoo

LIMITS = {"max_bytes": 2**20, "max_pixels": 2**16}


@pytest.fixture(autouse=True)
def temporary_folder(tmp_path, monkeypatch):
    """Temporary files go to a folder of their own, which every test leaves empty."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def nifti(array: np.ndarray, compressed: bool) -> bytes:
    data = nib.Nifti1Image(array, np.diag([0.5, 0.5, 2.0, 1.0])).to_bytes()
    return gzip.compress(data) if compressed else data


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width × height`` grey pixels but carries one row of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
            + chunk(b"IEND", b""))


RGB = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
VOLUME = np.random.default_rng(1).random((5, 4, 3)).astype(np.float32)  # (X, Y, Z)
FILES = {
    "scan.png": (encoded(Image.fromarray(RGB), "PNG"), ".png"),
    "photo.JPG": (encoded(Image.fromarray(RGB), "JPEG", quality=95), ".jpg"),
    "map.tiff": (encoded(Image.fromarray(VOLUME[:, :, 0]), "TIFF"), ".tif"),
    "deep.tif": (encoded(Image.fromarray((VOLUME[:, :, 1] * 65535).astype(np.uint16)), "TIFF"), ".tif"),
    "array.npy": (npy(VOLUME[None]), ".npy"),
    "brain.nii": (nifti(VOLUME, compressed=False), ".nii"),
    "brain.nii.gz": (nifti(VOLUME, compressed=True), ".nii.gz"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_format_decodes_as_load_image_reads_the_file(tmp_path, name):
    data, suffix = FILES[name]
    assert sniff(data) == suffix
    (tmp_path / name).write_bytes(data)
    decoded = decode_upload(name, data, **LIMITS)
    assert decoded.dtype == torch.float32 and torch.equal(decoded, load_image(tmp_path / name))


def test_formats_are_read_from_the_content_not_the_name():
    png, _ = FILES["scan.png"]
    volume, _ = FILES["brain.nii.gz"]
    assert torch.equal(decode_upload("scan.jpg", png, **LIMITS), torch.from_numpy(RGB.transpose(2, 0, 1) / 255).float())
    assert torch.equal(decode_upload("", volume, **LIMITS)[0], torch.from_numpy(VOLUME.T.copy()))  # (1, Z, Y, X)


def test_too_many_bytes_are_refused_before_anything_else():
    with pytest.raises(TooLargeError, match=r"'huge.png' is 1,048,577 bytes, over the server's upload limit of "
                                            r"1,048,576 bytes \(1 MB\); upload a smaller file \(crop.*--max-upload-mb") as error:
        decode_upload("huge.png", bytes(2**20 + 1), **LIMITS)
    assert isinstance(error.value, TooLarge) and not isinstance(error.value, ImageError)


@pytest.mark.parametrize("width, height, message", [
    (50_000, 50_000, "decompression bomb"),  # 2.5 G pixels: Pillow refuses it on opening
    (300, 300, r"300×300 = 90,000 pixels, over the limit of 65,536.*max_pixels=90000"),
])
def test_a_png_claiming_too_many_pixels_is_refused_from_its_header(width, height, message):
    data = png_header(width, height)
    assert len(data) < 500  # decoding would fail on the missing rows, not on the size
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=message) as error:
        decode_upload("bomb.png", data, **LIMITS)
    assert time.perf_counter() - start < 1 and isinstance(error.value, TooLarge)
    assert "'bomb.png'" in str(error.value) and "segcam-upload" not in str(error.value)


def test_a_nifti_header_claiming_too_many_voxels_is_refused_before_inflating():
    header = nib.Nifti1Header()
    header.set_data_shape((1000, 1000, 1000))
    header["vox_offset"] = 352
    data = gzip.compress(header.binaryblock + bytes(4))
    with pytest.raises(ImageTooLargeError, match=r"'head.nii.gz' is 1000×1000×1000 = 1,000,000,000 pixels"):
        decode_upload("head.nii.gz", data, **LIMITS)


@pytest.mark.parametrize("name, data, error, message", [
    ("cut.png", FILES["scan.png"][0][:60], ImageError, "cannot (read|decode) 'cut.png'"),
    ("cut.nii.gz", FILES["brain.nii.gz"][0][:-40], ImageError, "'cut.nii.gz' is damaged"),
    ("cut.npy", FILES["array.npy"][0][:-10], ImageError, "'cut.npy' is damaged"),
    ("anim.gif", encoded(Image.fromarray(RGB), "GIF"), ImageError, r"'anim.gif' is not an image or volume segcam "
     r"reads \(it starts with b'GIF8.*PNG, JPEG, TIFF, \.npy, \.nii or \.nii\.gz"),
    ("notes.png", b"just some text", ImageError, "'notes.png' is not an image"),
    ("logs.gz", gzip.compress(b"text" * 200), ImageError, "'logs.gz' is not an image"),
    ("bad.gz", b"\x1f\x8b" + bytes(30), ImageError, "'bad.gz' is not an image"),
    ("empty.png", b"", SegcamError, "'empty.png' is empty; choose the file again"),
])
def test_damaged_and_unknown_files_are_refused_by_name(name, data, error, message):
    with pytest.raises(error, match=message) as raised:
        decode_upload(name, data, **LIMITS)
    assert not isinstance(raised.value, TooLargeError) and "segcam-upload" not in str(raised.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_bytes": 0, "max_pixels": 10}, "max_bytes must be a positive integer"),
    ({"max_bytes": True, "max_pixels": 10}, "max_bytes must be a positive integer"),
    ({"max_bytes": 10**6, "max_pixels": 0}, "max_pixels must be positive"),
])
def test_limits_are_checked(kwargs, message):
    with pytest.raises(SegcamError, match=message):
        decode_upload("scan.png", FILES["scan.png"][0], **kwargs)
    with pytest.raises(SegcamError, match="must be bytes"):
        decode_upload("scan.png", "not bytes", **LIMITS)
    with pytest.raises(SegcamError, match="filename must be a string"):
        decode_upload(None, FILES["scan.png"][0], **LIMITS)


def small_unet() -> UNet:
    return UNet(3, 4, width=4, depth=2).eval()


def test_a_segcam_weights_file_loads_and_is_deleted_after_the_block(tmp_path, temporary_folder):
    original = small_unet()
    save_weights(original, tmp_path / "w.safetensors", {"arch": {"num_classes": 4, "width": 4, "depth": 2}})
    with model_upload("w.safetensors", (tmp_path / "w.safetensors").read_bytes(), 2**20) as path:
        assert path.exists() and path.parent.parent == temporary_folder
        loaded = load_model(path)
    assert not path.exists()
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded.model(x), original(x))


def test_plain_safetensors_weights_load_with_a_family(tmp_path):
    original = zoo.build("unet", 4)
    save_file(original.state_dict(), str(tmp_path / "plain.safetensors"))
    with model_upload("model.bin", (tmp_path / "plain.safetensors").read_bytes(), max_bytes=2**23) as path:
        with pytest.raises(ModelLoadError, match="holds only weights"):
            load_model(path)
        loaded = load_model("zoo:unet", weights=path, num_classes=4)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded.model(x), original.eval()(x))


@pytest.mark.parametrize("make", ["torch.save", "pickle"])
def test_pickles_are_refused_before_they_touch_the_disk(tmp_path, make):
    if make == "torch.save":
        torch.save(small_unet().state_dict(), tmp_path / "w.pt")
        data = (tmp_path / "w.pt").read_bytes()
    else:
        data = pickle.dumps({"weight": [1.0, 2.0]}, protocol=4)
    with pytest.raises(UnsafePickleError, match=r"'w.pt' is a pickle.*only .safetensors.*save_file"), model_upload("w.pt", data, 2**22):
        pytest.fail("a pickle reached the block")


def header_file(header: str, data: bytes = b"") -> bytes:
    """A file laid out as safetensors: the 8-byte length of ``header``, ``header``, ``data``."""
    return len(header).to_bytes(8, "little") + header.encode() + data


@pytest.mark.parametrize("data", [
    b"short", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    (2**40).to_bytes(8, "little") + b"{}", (4).to_bytes(8, "little") + b"[1,2]",
    header_file("[" * 100_000 + "]" * 100_000),  # JSON nested too deep for Python's parser
    header_file('{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', bytes(8)),  # past the end
    header_file('{"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 4]}}', bytes(4)),
    header_file('{"w": [0, 4]}', bytes(4)),
    b"\x80\x00" + bytes(40),  # starts with 0x80 but is neither a pickle nor safetensors
])
def test_other_files_are_not_safetensors(data):
    with pytest.raises(ModelLoadError, match=r"'m.safetensors' is not a .safetensors file.*save_weights"), model_upload("m.safetensors", data, 2**20):
        pytest.fail("a broken file reached the block")


def test_model_uploads_have_a_size_limit(tmp_path):
    save_file(small_unet().state_dict(), str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    with pytest.raises(TooLargeError, match=r"limit of 1,000 bytes \(0.000954 MB\); upload a smaller file, or "), model_upload("w.safetensors", data, 1000):
        pytest.fail("an oversized file reached the block")


def test_a_safetensors_header_of_128_bytes_is_not_taken_for_a_pickle(tmp_path):
    # the length 128 is written 0x80 0x00 …, as a pickle starts with 0x80 and its protocol
    name = next(n for n in ("w" * k for k in range(1, 100))
                if len(json.dumps({n: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                                  separators=(",", ":"))) in range(121, 129))
    save_file({name: torch.arange(2.0)}, str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    assert data[:8] == b"\x80" + bytes(7)
    with model_upload("w.safetensors", data, 2**20) as path:
        assert path.read_bytes() == data


def saved(tmp_path, arch: dict | None = None, meta: dict | None = None, **kwargs) -> tuple[str, bytes]:
    """A small U-Net's weights (``UNet(3, 4, width=4, depth=2)``), with segcam metadata ``{"arch": arch}``
    or ``meta`` written as it is (so it may break the schema), as ``(filename, bytes)``."""
    meta = {"arch": arch} if arch is not None else meta
    save_file(small_unet().state_dict(), str(tmp_path / "w.safetensors"),
              metadata=None if meta is None else {"segcam": json.dumps(meta)})
    return "evil.safetensors", (tmp_path / "w.safetensors").read_bytes()


@pytest.mark.parametrize("arch, message", [
    ({"num_classes": 2, "width": 1_000_000, "depth": 1}, r"'evil.safetensors' holds 30.2 KiB of weights \(as float32\), "
     r"but the model its metadata describes needs 373,840,568.5 MiB; .*Check the metadata"),
    ({"num_classes": 4, "width": 64, "depth": 2}, r"needs 7.1 MiB"),  # 240× the file: refused, not built
    ({"num_classes": 10**30, "width": 4, "depth": 2}, "building it on torch's meta device failed.*Overflow"),
    ({"num_classes": 4, "width": 4, "depth": 1_000_000}, r"'depth' must be at most 16.*got 1000000"),
])
def test_metadata_describing_a_huge_model_is_refused_before_it_is_built(tmp_path, arch, message):
    filename, data = saved(tmp_path, arch)
    with model_upload(filename, data, 2**20) as path:
        start = time.perf_counter()
        with pytest.raises(ModelLoadError, match=message) as error:
            check_model_size(path, None, None, filename)
        assert time.perf_counter() - start < 1
    assert "'evil.safetensors'" in str(error.value) and str(path.parent) not in str(error.value)


def test_a_family_with_a_huge_class_count_is_refused(tmp_path):
    save_file(zoo.build("unet", 4).state_dict(), str(tmp_path / "plain.safetensors"))
    with model_upload("plain.safetensors", (tmp_path / "plain.safetensors").read_bytes(), 2**23) as path:
        with pytest.raises(ModelLoadError, match=r"'plain.safetensors' holds 1.9 MiB .* but the zoo model 'unet' "
                                                 r"needs .* family and num_classes"):
            check_model_size(path, "unet", 10**7, "plain.safetensors")
        with pytest.raises(ModelLoadError, match="unknown model family 'unett'"):
            check_model_size(path, "unett", None, "plain.safetensors")


def test_files_that_fit_their_model_pass_and_load(tmp_path):
    original = small_unet()
    save_weights(original, tmp_path / "w.safetensors", {"arch": {"num_classes": 4, "width": 4, "depth": 2}})
    with model_upload("w.safetensors", (tmp_path / "w.safetensors").read_bytes(), 2**20) as path:
        check_model_size(path, None, None, "w.safetensors")
        with loading_model("w.safetensors", path):
            loaded = load_model(path)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded.model(x), original(x))
    half = {k: v.half() if v.is_floating_point() else v for k, v in zoo.build("unet", 4).state_dict().items()}
    save_file(half, str(tmp_path / "half.safetensors"))  # float16: half the bytes, as many weights
    with model_upload("half.safetensors", (tmp_path / "half.safetensors").read_bytes(), 2**23) as path:
        for family, classes in (("unet", None), ("unet", 4)):
            check_model_size(path, family, classes, "half.safetensors")
        with loading_model("half.safetensors", path):
            assert load_model("zoo:unet", weights=path).model.head.out_channels == 4


def test_plain_weights_without_a_family_are_left_to_the_load(tmp_path):
    filename, data = saved(tmp_path)
    with model_upload(filename, data, 2**20) as path:
        check_model_size(path, None, None, filename)
        with pytest.raises(ModelLoadError, match=r"'evil.safetensors' holds only weights.*weights='evil.safetensors'\)") as error, \
                loading_model(filename, path):
            load_model(path)
    assert "segcam-model" not in str(error.value)


def test_weights_that_do_not_fit_their_metadata_name_the_upload(tmp_path):
    filename, data = saved(tmp_path, {"num_classes": 4, "width": 8, "depth": 2})
    with model_upload(filename, data, 2**20) as path:
        check_model_size(path, None, None, filename)  # a few kB more than the file: within the margin
        with pytest.raises(ModelLoadError, match=r"the weights in 'evil.safetensors' do not fit the UNet its metadata "
                                                 r"describes: .*other shapes") as error, loading_model(filename, path):
            load_model(path)
    assert "segcam-model" not in str(error.value) and str(tempfile.gettempdir()) not in str(error.value)


@pytest.mark.parametrize("raised, message", [
    (RuntimeError("size mismatch in {path}"), r"cannot load the model in 'm.safetensors' \(RuntimeError: size "
     r"mismatch in 'm.safetensors'\); check that it was saved with segcam.models.save_weights"),
    (KeyError("stem.0.weight"), r"\(KeyError: 'stem.0.weight'\)"),
    (TypeError("bad"), r"\(TypeError: bad\)"),
    (MemoryError(), "'m.safetensors' needs more memory than the server has"),
    (SegcamError("model family 'unet' is 2-D, not 3-D"), "cannot load the model in 'm.safetensors': model family"),
    (UnsafePickleError("{path} is a pickle"), "^'m.safetensors' is a pickle$"),
])
def test_any_failure_while_loading_is_a_model_load_error_naming_the_upload(tmp_path, raised, message):
    path = tmp_path / "segcam-model-x" / "model.safetensors"
    raised.args = tuple(a.format(path=path) if isinstance(a, str) else a for a in raised.args)
    with pytest.raises(ModelLoadError, match=message) as error, loading_model("m.safetensors", path):
        raise raised
    assert type(error.value) is (UnsafePickleError if isinstance(raised, UnsafePickleError) else ModelLoadError)
    assert "segcam-model-x" not in str(error.value)
