"""Images, volumes and masks from files, with bounded memory: for the command line and examples.

Files may come from anyone, so nothing is decoded before its size is known: the spatial size
(``H·W``, or ``D·H·W`` for a volume) is read from the file's header and compared with
``max_pixels`` (:data:`DEFAULT_MAX_PIXELS` = 2**24, e.g. 4096² or 256³).  Every problem — a
missing file, a folder, a file Pillow cannot decode, a broken or pickled ``.npy``, an array of
strings — ends in one :class:`~segcam.errors.ImageError` naming the fix; a file over the limit,
or a decompression bomb, in an :class:`~segcam.errors.ImageTooLargeError` (an ImageError too).

Image formats are those Pillow reads (PNG, JPEG, TIFF, BMP, …), decoded to 8 bits per channel
and scaled to [0, 1]; 16-bit grey images (Pillow modes ``I;16`` and ``I``, common in medical
imaging) are divided by 65535 instead, and floating-point grey images (mode ``F``, float TIFF)
are read as stored.  ``.npy`` files hold numbers (float, integer or bool, converted to float32
as stored, not scaled); they are not compressed, so their decoded size is at most 4 times their
size on disk.  NIfTI volumes (``.nii``, ``.nii.gz``, needs nibabel) read as ``(C, Z, Y, X)``:
see :mod:`segcam.data.nifti` for the axes; as their channels are not bounded by the file's
size, ``C·D·H·W`` must also stay within :data:`MAX_CHANNELS` · ``max_pixels``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageMode
from torch import Tensor

from ..checks import check_int, check_path, shown
from ..errors import ImageError, ImageTooLargeError
from . import nifti

DEFAULT_MAX_PIXELS = 2**24
MAX_CHANNELS = 4  # a NIfTI volume may hold C·D·H·W ≤ MAX_CHANNELS · max_pixels values, as RGBA images do
NPY_KINDS = "biuf"  # numpy dtype kinds read from .npy files: bool, int, unsigned, float
DEEP_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": 1.0}  # mode → divisor

_IMAGE_AXES = {2: 0, 3: 1, 4: 1}  # .npy image: number of axes → leading channel axes
_MASK_AXES = {2: 0, 3: 0}
_IMAGE_LAYOUT = "(H, W), (C, H, W) or (C, D, H, W)"
_MASK_LAYOUT = "(H, W) or (D, H, W)"


def load_image(path: str | Path, *, channels: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """An image or volume file as a float32 tensor ``(C, *S)``.

    Image files (Pillow) give ``(C, H, W)`` in [0, 1]: grey images one channel, others three
    (RGB, alpha dropped); ``channels`` (1 or 3) forces grey or RGB.  ``.npy`` files give the
    array as stored in float32: ``(H, W)`` is read as one channel, ``(C, H, W)`` and
    ``(C, D, H, W)`` as they are.  NIfTI files give ``(C, D, H, W) = (C, Z, Y, X)`` in float32,
    scaled by the header (a 2-D one ``(1, Y, X)``).  For both, ``channels``, if given, must match
    ``C``.  Files with more than ``max_pixels`` spatial elements are refused before decoding
    (``None``: no limit).
    """
    path = _check_file(path)
    if channels is not None:
        channels = check_int(channels, "channels", error=ImageError)
        if channels not in (1, 3):
            raise ImageError(f"channels must be 1 (grey), 3 (RGB) or None (as stored), got {channels}.")
    max_pixels = _check_max_pixels(max_pixels)
    if nifti.is_nifti(path) or path.suffix.lower() == ".npy":
        array = (_read_nifti(path, max_pixels) if nifti.is_nifti(path)
                 else _read_npy(path, _IMAGE_AXES, _IMAGE_LAYOUT, max_pixels))
        array = array[None] if array.ndim == 2 else array
        if channels is not None and array.shape[0] != channels:
            raise ImageError(f"{str(path)!r} holds {array.shape[0]} channels, not channels={channels}; "
                             "leave channels out to read .npy and NIfTI files as stored.")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    with _open_image(path, max_pixels) as img:
        if img.mode in DEEP_MODES:  # 16-bit or float grey: read at full depth, not through 8 bits
            scale = DEEP_MODES[img.mode]
            array = _decode(path, lambda: np.asarray(img, dtype=np.float32) / scale)[None]
            return torch.from_numpy(np.ascontiguousarray(array)).expand(channels or 1, *array.shape[1:]).clone()
        grey = ImageMode.getmode(img.mode).basemode == "L"
        mode = {1: "L", 3: "RGB"}.get(channels or 0) or ("L" if grey else "RGB")
        array = _decode(path, lambda: np.asarray(img.convert(mode), dtype=np.float32) / 255.0)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def load_mask(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A boolean mask ``(H, W)`` or ``(D, H, W)``: the non-zero pixels of an image file (read as
    grey) or the non-zero elements of a ``.npy`` array or one-channel NIfTI volume (axes as in
    :func:`load_image`).  ``max_pixels`` as in :func:`load_image`."""
    path = _check_file(path)
    max_pixels = _check_max_pixels(max_pixels)
    if nifti.is_nifti(path):
        return _read_nifti(path, max_pixels, one_channel=True) != 0
    if path.suffix.lower() == ".npy":
        return _read_npy(path, _MASK_AXES, _MASK_LAYOUT, max_pixels).astype(bool)
    with _open_image(path, max_pixels) as img:
        if img.mode in DEEP_MODES:
            return _decode(path, lambda: np.asarray(img) != 0)
        return _decode(path, lambda: np.asarray(img.convert("L")) > 0)


def load_labels(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """A ground-truth label map ``(H, W)`` or ``(D, H, W)`` of class indices (int64): the pixel
    values of a grey or palette image file (not converted: a palette index is the class), an
    integer ``.npy`` array or a one-channel NIfTI volume.  ``max_pixels`` as in :func:`load_image`."""
    path = _check_file(path)
    max_pixels = _check_max_pixels(max_pixels)
    if nifti.is_nifti(path):
        array = _read_nifti(path, max_pixels, one_channel=True)
    elif path.suffix.lower() == ".npy":
        array = _read_npy(path, _MASK_AXES, _MASK_LAYOUT, max_pixels)
    else:
        with _open_image(path, max_pixels) as img:
            if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                raise ImageError(f"{str(path)!r} is a {img.mode} image; a label map is a grey or palette image "
                                 "whose values are class indices (or an integer .npy array).")
            array = _decode(path, lambda: np.asarray(img))
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)) or array.dtype.kind == "c":
        raise ImageError(f"{str(path)!r} holds non-integer values; a label map holds class indices.")
    if array.size and array.min() < 0:
        raise ImageError(f"{str(path)!r} holds negative labels; a label map holds class indices 0, 1, 2, ...")
    return torch.from_numpy(np.ascontiguousarray(array).astype(np.int64))


def save_image(path: str | Path, image: Tensor | np.ndarray) -> None:
    """Write a ``(C, H, W)`` image (C = 1 or 3) in [0, 1] as 8 bits per channel:
    ``round(255 · clamp(x, 0, 1))``; the format follows the suffix (``.png`` keeps it exact)."""
    path = check_path(path, "path", error=ImageError)
    if isinstance(image, np.ndarray) and image.dtype.kind in NPY_KINDS:
        image = torch.from_numpy(np.asarray(image, dtype=np.float32))
    if not isinstance(image, Tensor) or image.is_complex():
        raise ImageError(f"image must be a torch.Tensor or numpy array of numbers, got {shown(image)}.")
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.shape[1] == 0 or image.shape[2] == 0:
        raise ImageError(f"save_image takes a (C, H, W) image with C = 1 or 3, got shape {tuple(image.shape)}; "
                         "for a volume save one slice, image[:, z].")
    pixels = image.detach().float().cpu()
    if not torch.isfinite(pixels).all():
        raise ImageError("the image has NaN or inf values; replace them first, e.g. torch.nan_to_num(image).")
    array = (pixels.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    try:
        Image.fromarray(array).save(path)
    except (OSError, ValueError, KeyError) as error:
        raise ImageError(f"cannot write {str(path)!r} ({error}); check the folder exists and the suffix "
                         "names an image format (e.g. .png).") from error


def load_nifti_affine(path: str | Path) -> np.ndarray:
    """The voxel-to-world matrix ``(4, 4)`` (float64, millimetres) of a NIfTI file, read from its
    header alone: ``world = A · (i, j, k, 1)`` for voxel ``(i, j, k)``, which :func:`load_image`
    puts at ``[:, k, j, i]``.  Give it to :func:`save_nifti` to write maps on the input's grid."""
    path = _check_file(path)
    return nifti.affine(path, nifti.read_header(path))


def save_nifti(path: str | Path, array: Tensor | np.ndarray, affine: Tensor | np.ndarray) -> None:
    """Write ``array`` — ``(D, H, W)``, ``(C, D, H, W)`` or ``(H, W)`` in segcam's order, as
    :func:`load_image` gives — as a NIfTI file with the voxel-to-world ``affine`` ``(4, 4)``: the
    axes are reversed back to ``(X, Y, Z[, C])``, so with ``load_nifti_affine(input)`` the file lies
    on the input's grid in any viewer.  Floats are written as float32, booleans as uint8,
    integers as int32; a ``.nii.gz`` name compresses the file."""
    path = check_path(path, "path", error=ImageError)
    if not nifti.is_nifti(path):
        raise ImageError(f"save_nifti writes .nii or .nii.gz files, not {path.name!r}; name it e.g. map.nii.gz.")
    values, matrix = _numbers(array, "array"), _numbers(affine, "affine").astype(np.float64)
    if values.ndim not in (2, 3, 4) or 0 in values.shape:
        raise ImageError(f"save_nifti takes a (D, H, W), (C, D, H, W) or (H, W) array, got shape {values.shape}; "
                         "for a batch of maps save each one, array[b].")
    if matrix.shape != (4, 4) or not np.array_equal(matrix[3], [0, 0, 0, 1]):
        raise ImageError(f"affine must be a (4, 4) voxel-to-world matrix ending in the row (0, 0, 0, 1), got "
                         f"shape {matrix.shape}; read it from the input with load_nifti_affine(path).")
    if values.dtype.kind in "iu" and values.size and (values.min() < -(2**31) or values.max() >= 2**31):
        raise ImageError("the array holds integers beyond int32's range; NIfTI viewers read int32: rescale them.")
    kind = {"b": np.uint8, "i": np.int32, "u": np.int32}.get(values.dtype.kind, np.float32)
    nifti.write(path, values.astype(kind), matrix)


def _numbers(value: Any, name: str) -> np.ndarray:
    """``value`` (a tensor or numpy array of finite numbers) as a numpy array."""
    if isinstance(value, Tensor) and not value.is_complex():
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() else value).numpy()  # numpy has no bfloat16
    if not isinstance(value, np.ndarray) or value.dtype.kind not in NPY_KINDS:
        raise ImageError(f"{name} must be a torch.Tensor or numpy array of numbers, got {shown(value)}.")
    if not np.isfinite(value).all():
        raise ImageError(f"{name} has NaN or inf values; replace them first, e.g. numpy.nan_to_num({name}).")
    return value


def _check_file(path: Any) -> Path:
    path = check_path(path, "path", error=ImageError)
    if path.is_dir():
        raise ImageError(f"{str(path)!r} is a folder; give the path of an image file in it.")
    if not path.is_file():
        raise ImageError(f"no image file at {str(path)!r}; check the path.")
    return path


def _check_max_pixels(max_pixels: Any) -> int | None:
    return None if max_pixels is None else check_int(max_pixels, "max_pixels", low=1, error=ImageError)


def _check_size(path: Path, shape: tuple[int, ...], max_pixels: int | None) -> None:
    """Refuse a spatial ``shape`` with no elements, or more than ``max_pixels``."""
    count = math.prod(shape)
    size = "×".join(map(str, shape))
    if count == 0:
        raise ImageError(f"{str(path)!r} is empty ({size}); give a file with at least one pixel.")
    if max_pixels is not None and count > max_pixels:
        raise ImageTooLargeError(
            f"{str(path)!r} is {size} = {count:,} pixels, over the limit of {max_pixels:,}; if you trust the "
            f"file, raise the limit: max_pixels={count} (on the command line --max-pixels {count}), "
            "or max_pixels=None for no limit."
        )


def _open_image(path: Path, max_pixels: int | None) -> Image.Image:
    """Open an image file with Pillow and check its size; nothing is decoded yet."""
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"Pillow refuses {str(path)!r} as a possible decompression bomb ({error}); "
                         "use a smaller image (Pillow's limit is PIL.Image.MAX_IMAGE_PIXELS).") from error
    except Exception as error:  # Pillow's plugins raise many kinds of error on broken files
        raise ImageError(f"cannot read {str(path)!r} as an image ({error}); give a PNG, JPEG, TIFF or "
                         ".npy file.") from error
    try:
        _check_size(path, (img.height, img.width), max_pixels)
    except ImageError:
        img.close()
        raise
    return img


def _decode(path: Path, decode: Callable[[], np.ndarray]) -> np.ndarray:
    """Run ``decode()`` (which makes Pillow decode), turning its failures into an ImageError."""
    try:
        return decode()
    except Exception as error:  # a truncated or corrupt file fails here, in any of many ways
        raise ImageError(f"cannot decode {str(path)!r} ({type(error).__name__}: {error}); the file is "
                         "damaged or not an image Pillow reads.") from error


def _read_npy(path: Path, axes: Mapping[int, int], layout: str, max_pixels: int | None) -> np.ndarray:
    """The array in a ``.npy`` file, checked from its header before its data are read.

    ``axes`` maps each accepted number of axes to the number of leading non-spatial axes.
    """
    with path.open("rb") as file:
        try:
            version = np.lib.format.read_magic(file)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
            shape, _, dtype = read_header(file)
        except (ValueError, OSError, EOFError, SyntaxError) as error:
            raise ImageError(f"{str(path)!r} is not a readable .npy file ({error}); save arrays with "
                             "numpy.save(path, array).") from error
        if dtype.hasobject or dtype.kind not in NPY_KINDS:
            raise ImageError(f"{str(path)!r} holds an array of dtype {dtype}; save a float (or integer, bool) "
                             "array instead, e.g. numpy.save(path, array.astype(numpy.float32)).")
        if len(shape) not in axes:
            raise ImageError(f"{str(path)!r} holds an array of shape {shape}; it must be {layout}.")
        _check_size(path, shape[axes[len(shape)]:], max_pixels)
        file.seek(0)
        try:
            return np.lib.format.read_array(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ImageError(f"{str(path)!r} is damaged ({error}); save the array again with "
                             "numpy.save(path, array).") from error


def _read_nifti(path: Path, max_pixels: int | None, *, one_channel: bool = False) -> np.ndarray:
    """The voxels ``(C, *S)`` of a NIfTI file (``S`` if ``one_channel``), checked from its header
    before any is read: ``S`` within ``max_pixels``, and ``C·prod(S)`` within ``MAX_CHANNELS · max_pixels``."""
    header = nifti.read_header(path)
    _check_size(path, header.spatial, max_pixels)
    if one_channel and header.channels != 1:
        raise ImageError(f"{str(path)!r} holds {header.channels} channels; a mask or label map holds one value "
                         f"per voxel, {_MASK_LAYOUT}: save one channel.")
    values = header.channels * math.prod(header.spatial)
    if max_pixels is not None and values > MAX_CHANNELS * max_pixels:
        raise ImageTooLargeError(
            f"{str(path)!r} holds {header.channels} channels of {math.prod(header.spatial):,} voxels = {values:,} "
            f"values, over {MAX_CHANNELS} × max_pixels = {MAX_CHANNELS * max_pixels:,}; keep only the channels "
            f"the model needs, or raise the limit: max_pixels={math.ceil(values / MAX_CHANNELS)} (on the command "
            "line --max-pixels N)."
        )
    voxels = nifti.read_voxels(path, header)
    return voxels[0] if one_channel else voxels
