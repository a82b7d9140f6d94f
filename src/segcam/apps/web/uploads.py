"""Uploaded files, bytes from anyone: images and volumes to explain, weights files to serve.

An upload is checked before anything is decoded: first its size against the server's limit
(:class:`~segcam.errors.TooLargeError`, HTTP 413), then its format from its first bytes — PNG,
JPEG, TIFF, ``.npy``, NIfTI (``.nii``, or gzip-compressed ``.nii.gz``) — never from its name, so a
misnamed file still loads and no other decoder ever sees an upload.  It is then written to a
temporary file that :func:`segcam.data.load_image` reads (which checks the pixel count in the
file's header before decoding: :class:`~segcam.errors.ImageTooLargeError`, also a 413), and the
file is deleted whatever happens.  Error messages name the upload, not the temporary file.

Model uploads (``segcam serve --allow-model-upload``) are ``.safetensors`` files only: tensors
and a JSON header, never a pickle, which could run code on the server.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor

from ...data import load_image
from ...errors import ImageError, ModelLoadError, SegcamError, TooLargeError, UnsafePickleError

FORMATS = "PNG, JPEG, TIFF, .npy, .nii or .nii.gz"
_MAGIC = (  # first bytes → suffix of the temporary file
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"\x93NUMPY", ".npy"),
)
_GZIP = b"\x1f\x8b"
_NIFTI_HEAD = 548  # bytes that hold a NIfTI-1 or NIfTI-2 magic string


def decode_upload(filename: str, data: bytes, *, max_bytes: int, max_pixels: int | None) -> Tensor:
    """The uploaded image or volume ``data`` as :func:`segcam.data.load_image` reads it:
    ``(C, H, W)`` or ``(C, D, H, W)`` float32.  Refused: more than ``max_bytes`` bytes or
    ``max_pixels`` pixels (``TooLargeError``, before decoding), formats other than
    :data:`FORMATS`, damaged files (``ImageError``).  ``filename`` only names the upload in messages."""
    name = _name(filename)
    data = _sized(name, data, max_bytes, " (crop or downsample it; compress a volume as .nii.gz)")
    suffix = sniff(data)
    if suffix is None:
        raise ImageError(f"{name!r} is not an image or volume segcam reads (it starts with {data[:8]!r}); "
                         f"upload a {FORMATS} file.")
    with tempfile.TemporaryDirectory(prefix="segcam-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return load_image(path, max_pixels=max_pixels)
        except SegcamError as error:
            raise type(error)(str(error).replace(str(path), name)) from None


def sniff(data: bytes) -> str | None:
    """The suffix (``.png``, ``.jpg``, ``.tif``, ``.npy``, ``.nii``, ``.nii.gz``) of the format
    ``data`` starts with, or ``None``; a gzip stream is inflated only as far as a NIfTI header."""
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    if _is_nifti_header(data):
        return ".nii"
    if data.startswith(_GZIP):
        try:
            head = zlib.decompressobj(wbits=31).decompress(data, _NIFTI_HEAD)
        except zlib.error:
            return None
        return ".nii.gz" if _is_nifti_header(head) else None
    return None


def _is_nifti_header(head: bytes) -> bool:
    """Whether ``head`` starts like a single-file NIfTI-1 (magic at byte 344) or NIfTI-2 (at byte 4)."""
    return head[344:348] == b"n+1\0" or head[4:8] == b"n+2\0"


@contextmanager
def model_upload(filename: str, data: bytes, max_bytes: int) -> Iterator[Path]:
    """The uploaded weights ``data``, checked to be a ``.safetensors`` file (never a pickle), in a
    temporary file that is deleted when the ``with`` block ends.  Load it inside the block:

    >>> with model_upload(name, data, limit) as path:                          # doctest: +SKIP
    ...     loaded = segcam.load_model(path)  # a file written by segcam.models.save_weights
    ...     loaded = segcam.load_model("zoo:unet", weights=path)  # plain weights of a zoo family
    """
    name = _name(filename)
    data = _sized(name, data, max_bytes)
    _check_safetensors(name, data)
    with tempfile.TemporaryDirectory(prefix="segcam-model-") as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(data)
        yield path


def _check_safetensors(name: str, data: bytes) -> None:
    """Refuse ``data`` unless it is laid out as safetensors: an 8-byte little-endian length ``n``,
    then ``n`` bytes of a JSON object, then the tensors."""
    if data.startswith((b"\x80", b"PK\x03\x04")):
        raise UnsafePickleError(
            f"{name!r} is a pickle (torch.save) file; pickles can run code, so the server takes only .safetensors "
            "files. Convert it on your machine: safetensors.torch.save_file(torch.load(path, weights_only=True), "
            "'model.safetensors'), or segcam.models.save_weights(model, 'model.safetensors', metadata)."
        )
    length = int.from_bytes(data[:8], "little")
    header: Any = None
    if len(data) >= 8 and 2 <= length <= len(data) - 8:
        try:
            header = json.loads(data[8:8 + length].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            header = None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{name!r} is not a .safetensors file (no JSON header after its first 8 bytes); "
                             "save the weights with segcam.models.save_weights or safetensors.torch.save_file.")


def _name(filename: Any) -> str:
    if not isinstance(filename, str):
        raise SegcamError(f"the upload's filename must be a string, got {type(filename).__name__}.")
    return filename.strip() or "upload"


def _sized(name: str, data: Any, max_bytes: Any, how: str = "") -> bytes:
    """``data`` as bytes, refused when empty or over ``max_bytes`` (``how``: how to make it smaller)."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise SegcamError(f"max_bytes must be a positive integer, got {max_bytes!r}.")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SegcamError(f"the upload {name!r} must be bytes, got {type(data).__name__}.")
    data = bytes(data)
    if not data:
        raise SegcamError(f"the upload {name!r} is empty; choose the file again.")
    if len(data) > max_bytes:
        raise TooLargeError(
            f"{name!r} is {len(data):,} bytes, over the server's upload limit of {max_bytes:,} bytes "
            f"({max_bytes / 2**20:.3g} MB); upload a smaller file{how}, or start the server with a larger "
            "--max-upload-mb."
        )
    return data
