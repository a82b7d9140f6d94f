"""Model files that carry their own architecture: TorchScript, torch.export programs, pickled models.

``torch.export.load`` unpickles some archive members without restriction, so an exported
program is vetted first (:func:`vet_exported`) and loaded from the very bytes that were vetted.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ModelLoadError, SegcamWarning, UnsafePickleError
from .._common import show_path
from ..preprocess import Preprocess
from .base import LoadedModel, family_preprocess, forms, loaded, only_weights, own_family
from .files import PICKLE_FIX, pickled_global, torch_load
from .state_dict import state_dict_of

_DATA = ("data/weights/", "data/constants/")  # archive folders of tensors and constants


def load_torchscript(path: Path) -> LoadedModel:
    """A TorchScript archive (``torch.jit.save``); it runs, but hooks cannot see inside it."""
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - TorchScript's loader raises many kinds
        raise ModelLoadError(f"cannot load the TorchScript file {show_path(path)}: {e}") from None
    warnings.warn(
        f"{show_path(path)} is TorchScript: PyTorch runs no Python forward hooks on TorchScript modules, so "
        "segcam can predict with it but cannot read its layers to explain it. Export it with torch.export.save "
        "(.pt2) or load its weights into the Python model (spec package.module:function with weights) to "
        "explain it.",
        SegcamWarning, stacklevel=5,  # the caller of load_model
    )
    return loaded(model, Preprocess(), None, f"TorchScript file {show_path(path)}")


def load_exported(path: Path, allow_pickle: bool) -> LoadedModel:
    """An exported program (``torch.export.save``), unflattened so that its layers keep their names."""
    data = path.read_bytes()
    if not allow_pickle:
        vet_exported(data, path)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - torch.export's loader raises many kinds
        raise ModelLoadError(f"cannot load the exported program {show_path(path)}: {type(e).__name__}: {e}") from None
    try:
        model: nn.Module = torch.export.unflatten(program)
    except Exception as e:  # noqa: BLE001 - the flat module still runs: warn and use it
        model = program.module()
        warnings.warn(f"{show_path(path)} could not be unflattened ({type(e).__name__}: {e}); its layers run as one "
                      "flat graph, so segcam cannot hook them to explain the model.", SegcamWarning, stacklevel=5)
    return loaded(model, _exported_preprocess(program), None, f"exported program {show_path(path)}")


def _exported_preprocess(program: Any) -> Preprocess:
    """The exported input's size and channels, where static (exports are specialised to shapes)."""
    try:
        inputs = set(program.graph_signature.user_inputs)
        vals = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in inputs]
    except (AttributeError, KeyError, TypeError):
        return Preprocess()
    if len(vals) != 1 or not isinstance(vals[0], Tensor) or vals[0].ndim not in (4, 5):
        return Preprocess()
    shape = list(vals[0].shape)
    size = tuple(shape[2:]) if all(type(s) is int for s in shape[2:]) else None
    return Preprocess(size=size, channels=shape[1] if type(shape[1]) is int else None)


def vet_exported(data: bytes, path: Path) -> None:
    """Refuse the ``.pt2`` archive ``data`` if ``torch.export.load`` would unpickle anything but
    tensors from it: custom objects, pickled weights or constants, sample inputs."""
    risky: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name.split("/", 1)[-1]: name for name in archive.namelist()}  # without the archive's top folder
        raw: set[str] = set()  # members stored as raw tensor bytes, which are never unpickled
        for rel, name in members.items():
            folder = next((d for d in _DATA if rel.startswith(d)), None)
            if folder is None or not rel.endswith("_config.json"):
                continue
            try:
                config = json.loads(archive.read(name)).get("config", {})
            except (ValueError, AttributeError):
                continue
            for fqn, entry in config.items():
                file = entry.get("path_name", "") if isinstance(entry, Mapping) else ""
                if file.startswith(("custom_obj_", "opaque_obj_")):
                    risky.append(f"{fqn} (a pickled object)")
                    raw.add(folder + file)  # reported already
                elif not entry.get("use_pickle", False):
                    raw.add(folder + file)
        for rel, name in members.items():
            if not rel.startswith((*_DATA, "data/sample_inputs/")) or rel.endswith(".json") or rel in raw:
                continue
            try:
                torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:
                found = pickled_global(e)
                risky.append(f"{rel} (asks for {found})" if found else rel)
            except Exception as e:  # noqa: BLE001 - what the safe loader cannot read is not safe either
                risky.append(f"{rel} (unreadable by the safe loader: {type(e).__name__})")
    if risky:
        more = " …" if len(risky) > 3 else ""
        raise UnsafePickleError(
            f"{show_path(path)} is an exported program whose archive holds pickled Python objects "
            f"({', '.join(risky[:3])}{more}), which torch.export.load unpickles without restriction: that could "
            f"run arbitrary code. {PICKLE_FIX}"
        )


def load_pickled(path: Path, allow_pickle: bool) -> LoadedModel:
    """A whole model saved with ``torch.save(model)`` (only with ``allow_pickle``: it runs code)."""
    found = torch_load(path, allow_pickle)
    model = found
    if isinstance(found, Mapping):  # a checkpoint dict holding the model object
        model = next((found[k] for k in ("model", "module", "net") if isinstance(found.get(k), nn.Module)), found)
    if not isinstance(model, nn.Module):
        if state_dict_of(found) is not None:
            raise only_weights(path, "a state dict")
        raise ModelLoadError(f"{show_path(path)} holds a {type(found).__name__}, not a model or weights; save the "
                             f"model with torch.jit.save, torch.export.save or save_pretrained, or its state_dict."
                             f"\n{forms()}")
    family = own_family(model)
    return loaded(model, family_preprocess(family), None,
                  f"pickled model {show_path(path)} (loaded with allow_pickle)", family)
