"""NIfTI volumes (``.nii``, ``.nii.gz``): the header first, then the voxels, in segcam's layout.

Axes.  NIfTI stores voxel ``(i, j, k)`` along the file's X, Y, Z axes, then time or vector
components.  segcam reads a file as ``(C, D, H, W) = (C, Z, Y, X)``: a plain transpose,
``array[c, k, j, i]`` = voxel ``(i, j, k)`` of channel ``c`` — the order SimpleITK and nnU-Net
give — with no reorientation and no resampling.  So slices along ``D`` (axis 0 of a volume,
the web tool's default view axis) are the file's k-slices, the axial slices of an axial scan,
each an ``(H, W) = (Y, X)`` image; and a map computed on the array lies on the input's voxel
grid, so ``save_nifti(out, heatmap, load_nifti_affine(input))`` writes a file any viewer
overlays on the input.  On screen a slice keeps the file's storage orientation; reorient a
file first (``nibabel.as_closest_canonical``) if the model was trained on RAS volumes.

Channels: a 3-D file is one channel; the fourth axis (time points or modalities) gives the
channels, as does the fifth of an ``(X, Y, Z, 1, C)`` vector file.  A 2-D file ``(X, Y)`` reads
as ``(1, Y, X)``.  Voxel values are scaled by the header's ``scl_slope`` and ``scl_inter``.

Safety.  The 348-byte (NIfTI-1) or 540-byte (NIfTI-2) header is read and checked before any
voxel: the shape, the voxel type and the data offset.  Voxels are then read from that offset,
exactly as many bytes as the shape needs, so a ``.nii.gz`` stream that inflates to more is
never read further, and header extensions are skipped unread.  Compression is recognised
from the content, not the name.  nibabel is optional: ``pip install 'segcam[web]'``.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np

from ..errors import ImageError

SUFFIXES = (".nii", ".nii.gz")
MAX_DATA_OFFSET = 2**24  # bytes of header extensions tolerated before the voxels (16 MiB)
_LAYOUTS = {size.to_bytes(4, order): (size, endian)  # first 4 bytes (sizeof_hdr) → header size, byte order
            for size in (348, 540) for order, endian in (("little", "<"), ("big", ">"))}  # NIfTI-1, NIfTI-2
_SINGLE_FILE_MAGIC = {b"n+1\0", b"n+2\0"}
_SAVE_AS_NII = "save it again as one .nii or .nii.gz file, e.g. nibabel.save(nibabel.load(path), 'volume.nii.gz')"


@dataclass(frozen=True)
class NiftiHeader:
    """What a NIfTI header says, checked: ``spatial`` in segcam's order ``(D, H, W)`` or ``(H, W)``."""

    shape: tuple[int, ...]  # as stored: (X, Y[, Z[, T[, ...]]])
    spatial: tuple[int, ...]
    channels: int
    raw: Any  # the nibabel header, for the data type, offset, scaling and affine


def is_nifti(path: Path) -> bool:
    """Whether ``path`` is named like a NIfTI file (``.nii`` or ``.nii.gz``, any case)."""
    return path.name.lower().endswith(SUFFIXES)


def nibabel() -> ModuleType:
    """The nibabel module, or an ImageError saying how to install it."""
    try:
        import nibabel as nib
    except ImportError:
        raise ImageError("reading or writing NIfTI files (.nii, .nii.gz) needs nibabel; install it with "
                         "pip install 'segcam[web]' or pip install nibabel.") from None
    return nib


def read_header(path: Path) -> NiftiHeader:
    """The checked header of the NIfTI file ``path``; no voxel is read."""
    nib = nibabel()
    with _open(path) as file:
        start = _read(path, file, 4)
        if start not in _LAYOUTS:
            raise ImageError(f"{str(path)!r} is not a NIfTI file (it does not start with a NIfTI-1 or NIfTI-2 "
                             "header); give a .nii or .nii.gz volume.")
        size, endian = _LAYOUTS[start]
        head = start + _read(path, file, size - 4)
    if len(head) < size:
        raise ImageError(f"{str(path)!r} ends inside its NIfTI header ({len(head)} of {size} bytes); the file is "
                         f"cut off: {_SAVE_AS_NII}.")
    kind = nib.Nifti1Header if size == 348 else nib.Nifti2Header
    return _checked(path, kind(binaryblock=head, endianness=endian, check=False))


def _checked(path: Path, header: Any) -> NiftiHeader:
    """Refuse headers segcam cannot read safely: pairs, odd shapes, voxel types and offsets."""
    if bytes(header["magic"])[:4] not in _SINGLE_FILE_MAGIC:
        raise ImageError(f"{str(path)!r} is not a single-file NIfTI volume (an .hdr/.img pair's header, or a "
                         f"damaged one); {_SAVE_AS_NII}.")
    ndim = int(header["dim"][0])
    try:
        shape = tuple(int(n) for n in header.get_data_shape()) if 2 <= ndim <= 7 else ()
        dtype = header.get_data_dtype()
        offset = header.get_data_offset()
        header.get_slope_inter()
    except Exception as error:  # nibabel raises HeaderDataError, ValueError … on broken fields
        raise ImageError(f"{str(path)!r} has a broken NIfTI header ({error}); {_SAVE_AS_NII}.") from error
    if not shape:
        raise ImageError(f"{str(path)!r} has {ndim} axes; segcam reads NIfTI images of 2 to 7 axes, (X, Y[, Z, …]).")
    if min(shape) < 0:
        raise ImageError(f"{str(path)!r} has a broken NIfTI header: negative axis lengths {shape}; {_SAVE_AS_NII}.")
    if dtype.kind not in "biuf" or dtype.fields:
        raise ImageError(f"{str(path)!r} holds voxels of type {dtype}; segcam reads numbers (int, uint, float), "
                         "one per channel: store RGB or complex parts as channels on the fourth axis.")
    if not header.single_vox_offset <= offset <= MAX_DATA_OFFSET:
        raise ImageError(f"{str(path)!r} puts its voxels at byte {offset:,}, outside [{header.single_vox_offset}, "
                         f"{MAX_DATA_OFFSET:,}] (right after the header and its extensions, if any); {_SAVE_AS_NII}.")
    extra = [n for n in shape[3:] if n != 1]
    if len(extra) > 1:
        raise ImageError(f"{str(path)!r} holds a {len(shape)}-D array {shape}; segcam reads (X, Y, Z) with "
                         "channels on one more axis: keep one value axis after Z.")
    return NiftiHeader(shape, tuple(reversed(shape[:3])), math.prod(shape[3:]), header)


def read_voxels(path: Path, header: NiftiHeader) -> np.ndarray:
    """The voxels of ``path`` as ``(C, *spatial)`` (see the module docstring), scaled by the header.

    Integers stay integers when the scaling is the identity; scaled values are float32 (float64
    for 32- and 64-bit types).  Call only after checking ``header``'s size."""
    raw = header.raw
    array_from_file = nibabel().volumeutils.array_from_file
    try:
        with _open(path) as file:
            array = array_from_file(header.shape, raw.get_data_dtype(), file, raw.get_data_offset(), mmap=False)
    except (OSError, EOFError, ValueError, zlib.error) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageError(f"{str(path)!r} is damaged ({detail}); its voxels end before the header's shape "
                         f"{header.shape} is filled: {_SAVE_AS_NII}.") from error
    slope, inter = raw.get_slope_inter()
    if slope is not None and (slope, inter) != (1.0, 0.0):
        kind = np.result_type(array.dtype, np.float32)
        array = array.astype(kind) * kind.type(slope) + kind.type(inter)
    return array.reshape(*header.shape[:3], header.channels, order="F").T


def affine(path: Path, header: NiftiHeader) -> np.ndarray:
    """The header's voxel-to-world matrix ``(4, 4)`` float64 (sform if set, else qform, else the
    voxel sizes), for voxel ``(i, j, k)`` in the file's axis order."""
    matrix = np.asarray(header.raw.get_best_affine(), dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ImageError(f"{str(path)!r} has NaN or inf in its affine (sform/qform); {_SAVE_AS_NII}.")
    return matrix


def write(path: Path, array: np.ndarray, matrix: np.ndarray) -> None:
    """Write ``array`` ((H, W), (D, H, W) or (C, D, H, W), segcam's order) with the affine ``matrix``;
    its axes are reversed back to NIfTI's (X, Y[, Z[, C]]).  ``.nii.gz`` is compressed."""
    nib = nibabel()
    try:
        nib.save(nib.Nifti1Image(array.T, matrix), str(path))
    except Exception as error:  # nibabel raises HeaderDataError (an axis over NIfTI-1's 32767), OSError …
        raise ImageError(f"cannot write {str(path)!r} ({error}); check the folder exists, you may write there "
                         "and no axis is longer than 32767.") from error


def _open(path: Path) -> IO[bytes]:
    """``path`` opened for reading, through gzip when its first bytes say it is compressed."""
    try:
        with path.open("rb") as file:
            compressed = file.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if compressed else path.open("rb")
    except OSError as error:
        raise ImageError(f"cannot read {str(path)!r} ({error}); check the file's permissions.") from error


def _read(path: Path, file: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes from the start of ``file`` (a gzip stream is inflated that far only)."""
    try:
        return file.read(size)
    except (OSError, EOFError, zlib.error) as error:
        raise ImageError(f"cannot read {str(path)!r} as a NIfTI volume ({error}); the file is damaged or not "
                         "a .nii/.nii.gz file.") from error
