"""Reading model files safely: what kind of file it is, and ``torch.load`` without running code.

Pickles can run arbitrary code when loaded, so :func:`torch_load` uses ``weights_only=True``
(tensors and plain containers only) and raises :class:`UnsafePickleError` for anything more,
unless the caller trusts the file (``allow_pickle``).
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelLoadError, UnsafePickleError
from .._common import show_path

TRUST = ("If you trust this file (you made it, or it comes from someone you trust), load it with "
         "allow_pickle=True (CLI: --allow-pickle).")
PICKLE_FIX = (f"{TRUST} Safer: save only the weights (torch.save(model.state_dict(), path) or a .safetensors "
              "file) and pass them as weights with an architecture spec.")


def sniff(path: Path) -> str:
    """``'zip'``, ``'safetensors'``, ``'pickle'`` or ``'unknown'``, from a file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise ModelLoadError(f"cannot read {show_path(path)}: {e.strerror or e}; check its permissions.") from None
    if head[:4] == b"PK\x03\x04":
        return "zip"
    # safetensors: an 8-byte little-endian header length, then the JSON header
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= path.stat().st_size - 8:
        return "safetensors"
    if path.suffix.lower() == ".safetensors":
        return "safetensors"  # a damaged one: safetensors' reader says what is wrong
    return "pickle" if head[:1] == b"\x80" else "unknown"


def zip_names(path: Path) -> list[str]:
    """The member names of a zip archive (TorchScript, torch.export and torch.save files are zips)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except zipfile.BadZipFile as e:
        raise ModelLoadError(f"{show_path(path)} looks like a zip archive but cannot be read ({e}); it may be "
                             "truncated: save it again.") from None


def is_torchscript(names: list[str]) -> bool:
    """Whether zip members ``names`` are a TorchScript archive's (``torch.jit.save``)."""
    return any("/code/__torch__/" in n or n.endswith("/constants.pkl") for n in names)


def is_exported(names: list[str]) -> bool:
    """Whether zip members ``names`` are an exported program's (``torch.export.save``, ``.pt2``)."""
    return any(n.endswith("/archive_format") or "/models/" in n and n.endswith(".json") for n in names)


def pickled_global(error: Exception) -> str | None:
    """The Python object a refused pickle asked for, from ``torch.load``'s message."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else None


def torch_load(path: Path, allow_pickle: bool) -> Any:
    """``torch.load`` of ``path`` on the CPU: tensors and plain containers only unless ``allow_pickle``."""
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4" is noise for plain pickles
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_pickle:
            found = pickled_global(e)
            asks = f" (it asks for {found})" if found else ""
            raise UnsafePickleError(
                f"{show_path(path)} holds pickled Python objects{asks}, not just tensors; unpickling them could "
                f"run arbitrary code, so segcam refuses by default. {PICKLE_FIX}"
            ) from None
    except Exception as e:  # noqa: BLE001 - anything else: not a file torch can read
        first = str(e).splitlines()[0] if str(e) else "unreadable"
        raise ModelLoadError(
            f"{show_path(path)} is not a file PyTorch can read ({type(e).__name__}: {first}); pass a torch.save, "
            ".safetensors, TorchScript or .pt2 file, or a Hugging Face folder."
        ) from None
    try:  # the caller trusts this file
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - e.g. a class the pickle names is not importable
        raise ModelLoadError(f"cannot unpickle {show_path(path)}: {type(e).__name__}: {e} (the classes it "
                             "names must be importable).") from None
