"""Uploaded files, bytes from anyone: images and volumes to explain, weights files to serve.

An upload is checked before anything is decoded: first its size against the server's limit
(:class:`~segcam.errors.TooLargeError`, HTTP 413), then its format from its first bytes — PNG,
JPEG, TIFF, ``.npy``, NIfTI (``.nii``, or gzip-compressed ``.nii.gz``) — never from its name, so a
misnamed file still loads and no other decoder ever sees an upload.  It is then written to a
temporary file that :func:`segcam.data.load_image` reads (which checks the pixel count in the
file's header before decoding: :class:`~segcam.errors.ImageTooLargeError`, also a 413), and the
file is deleted whatever happens.  Error messages name the upload, not the temporary file.

Model uploads (``segcam serve --allow-model-upload``) are ``.safetensors`` files only: tensors
and a JSON header, never a pickle, which could run code on the server.  Before the model is
built for real, :func:`check_model_size` builds it on torch's meta device (no memory) and
refuses a file whose metadata describes a model much larger than the tensors it holds; and
:func:`loading_model` turns any failure of the load into a :class:`~segcam.errors.ModelLoadError`
that names the upload:

>>> with model_upload(name, data, limit) as path:                            # doctest: +SKIP
...     check_model_size(path, family, num_classes, name)
...     with loading_model(name, path):
...         loaded = segcam.load_model(f"zoo:{family}", weights=path, num_classes=num_classes)
"""

from __future__ import annotations

import json
import math
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...data import load_image
from ...errors import ImageError, ModelLoadError, SegcamError, TooLargeError, UnsafePickleError
from ...models import UNet, read_metadata, zoo

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
_PICKLES = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")  # pickle protocols 2-5, zip
SIZE_MARGIN = (1.05, 2**20)  # a model may take 1.05 × its file's tensors (as float32) + 1 MiB


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
    """Refuse ``data`` unless it is laid out as safetensors (:func:`safetensors_header`); a file
    that is not, and starts like a pickle or a zip (``torch.save``), is named a pickle."""
    if safetensors_header(data) is not None:
        return
    if data.startswith(_PICKLES):
        raise UnsafePickleError(
            f"{name!r} is a pickle (torch.save) file; pickles can run code, so the server takes only .safetensors "
            "files. Convert it on your machine: safetensors.torch.save_file(torch.load(path, weights_only=True), "
            "'model.safetensors'), or segcam.models.save_weights(model, 'model.safetensors', metadata)."
        )
    raise ModelLoadError(f"{name!r} is not a .safetensors file (no JSON header of tensors after its first 8 bytes); "
                         "save the weights with segcam.models.save_weights or safetensors.torch.save_file.")


def safetensors_header(data: bytes) -> dict[str, Any] | None:
    """The JSON header of ``data`` when it is laid out as safetensors, else ``None``: an 8-byte
    little-endian length ``n``, ``n`` bytes of a JSON object whose entries (but ``__metadata__``)
    each give a tensor's ``shape`` and ``data_offsets`` within the ``len(data) - 8 - n`` bytes after."""
    length = int.from_bytes(data[:8], "little")
    if len(data) < 10 or not 2 <= length <= len(data) - 8:
        return None
    try:
        header = json.loads(data[8:8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    if not isinstance(header, dict):
        return None
    size = len(data) - 8 - length
    for key, entry in header.items():
        if key == "__metadata__" or _tensor_entry(entry, size):
            continue
        return None
    return header


def _tensor_entry(entry: Any, size: int) -> bool:
    """Whether ``entry`` describes a tensor: a list of sizes ≥ 0 and offsets ``0 ≤ a ≤ b ≤ size``."""
    if not isinstance(entry, dict):
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    return (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
            and isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
            and 0 <= offsets[0] <= offsets[1] <= size)


def check_model_size(path: Path, family: str | None, num_classes: int | None, name: str) -> None:
    """Refuse the uploaded weights at ``path`` (``name``: the upload's name) before they are
    loaded when the model they describe would need much more memory than they hold.

    The model that ``segcam.load_model`` would build — zoo ``family`` with ``num_classes`` (else
    the file's class count), or, without a family, the architecture in the file's segcam metadata
    — is built on torch's meta device, which allocates nothing.  With ``B`` its parameters and
    buffers as float32 bytes and ``N`` the elements of the file's tensors (each counted at most
    once per byte it takes), it is refused when ``B > 1.05 · 4N + 1 MiB``, or when it cannot be
    built on the meta device.  A file without metadata and without a family is left to the load.
    """
    name = _name(name)
    with loading_model(name, path):
        data = path.read_bytes()
        header = safetensors_header(data)
        if header is None:
            raise ModelLoadError(f"{name!r} is not a .safetensors file; save the weights with "
                                 "segcam.models.save_weights or safetensors.torch.save_file.")
        model = _model_on_meta(path, family, num_classes, name)
    if model is None:
        return
    need = 4 * sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    held = 4 * sum(min(math.prod(e["shape"]), e["data_offsets"][1] - e["data_offsets"][0])
                   for k, e in header.items() if k != "__metadata__")
    factor, extra = SIZE_MARGIN
    if need > factor * held + extra:
        what = f"the zoo model {family!r}" if family else "the model its metadata describes"
        raise ModelLoadError(
            f"{name!r} holds {_sized_text(held)} of weights (as float32), but {what} needs {_sized_text(need)}; "
            "the file's weights cannot fill it. Check the "
            f"{'family and num_classes' if family else 'metadata (segcam.models.read_metadata)'}, or save the "
            "model again with segcam.models.save_weights(model, path, metadata)."
        )


def _sized_text(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def _model_on_meta(path: Path, family: str | None, num_classes: int | None, name: str) -> nn.Module | None:
    """The model ``segcam.load_model`` would build for the upload, on the meta device; ``None``
    for plain weights without a family (the load refuses them)."""
    meta = read_metadata(path)
    if not family and not meta:
        return None
    classes = num_classes or (meta.get("arch", meta)["num_classes"] if meta else None)
    try:
        with torch.device("meta"):
            if family:
                return zoo.build(family, classes) if classes else zoo.build(family)
            if "arch" in meta:
                return UNet(**meta["arch"])
            return zoo.build(meta["family"], meta["num_classes"], meta.get("in_channels", 3), meta.get("dims"))
    except SegcamError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the model's code raises on the meta device
        raise ModelLoadError(
            f"cannot check the size of the model in {name!r} before loading it: building it on torch's meta "
            f"device failed ({type(e).__name__}: {e}); serve it with segcam serve --model instead."
        ) from None


@contextmanager
def loading_model(name: str, path: Path) -> Iterator[None]:
    """Run the body — loading the upload ``name`` from its temporary file ``path`` — so that any
    failure is a :class:`~segcam.errors.ModelLoadError` (an :class:`UnsafePickleError` stays one)
    that names the upload, not the temporary file."""
    name = _name(name)
    try:
        yield
    except ModelLoadError as e:
        raise type(e)(_renamed(str(e), path, name)) from None
    except SegcamError as e:
        raise ModelLoadError(f"cannot load the model in {name!r}: {_renamed(str(e), path, name)}") from None
    except MemoryError:
        raise ModelLoadError(f"the model in {name!r} needs more memory than the server has; serve a smaller "
                             "model, or serve it with segcam serve --model on a larger machine.") from None
    except Exception as e:  # noqa: BLE001 - an upload's model may fail in any way; the server answers each
        raise ModelLoadError(
            f"cannot load the model in {name!r} ({type(e).__name__}: {_renamed(str(e), path, name)}); check that "
            "it was saved with segcam.models.save_weights, or that the family and num_classes fit its weights."
        ) from None


def _renamed(text: str, path: Path, name: str) -> str:
    """``text`` with the temporary file ``path`` (as given, and resolved; quoted or not) replaced
    by ``name``, quoted."""
    for shown in sorted({str(path.resolve()), str(path)}, key=len, reverse=True):
        text = text.replace(repr(shown), repr(name)).replace(shown, repr(name))
    return text


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
