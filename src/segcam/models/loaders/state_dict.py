"""Weights files (``weights=``): reading them, unwrapping checkpoints, and fitting them to a model.

A weights file is a ``.safetensors`` file or a ``torch.save`` file of a state dict, possibly
wrapped in a checkpoint dict under ``"state_dict"``, ``"model_state_dict"`` or ``"model"``.  A
key prefix added by ``DataParallel`` (``module.``), ``torch.compile`` (``_orig_mod.``) or
Lightning (``model.``) is removed when that makes the keys fit the model, and torchvision's
training-only ``aux_classifier.*`` is dropped when the model has none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ...errors import ModelLoadError
from .._common import few, show_path
from ..weights import load_state, read_metadata, read_state
from .files import is_exported, is_torchscript, sniff, torch_load, zip_names

WRAPPERS = ("state_dict", "model_state_dict", "model")  # checkpoint keys that hold the state dict
PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel, torch.compile, Lightning


def read_weights(path: Path, allow_pickle: bool) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict in the weights file ``path``, and segcam's metadata (``{}`` when none)."""
    if path.is_dir():
        raise ModelLoadError(f"the weights {show_path(path)} are a folder, not a file; a Hugging Face model folder "
                             "is passed as the model spec itself.")
    kind = sniff(path)
    if kind == "safetensors":
        meta = read_metadata(path)
        return read_state(path), meta
    if kind == "zip":
        names = zip_names(path)
        if is_torchscript(names) or is_exported(names):
            what = "a TorchScript model" if is_torchscript(names) else "an exported program"
            raise ModelLoadError(f"{show_path(path)} is {what}, which carries its own architecture: pass it as the "
                                 "model spec, not as weights.")
    found = torch_load(path, allow_pickle)
    state = state_dict_of(found)
    if state is None:
        keys = f" with keys {few([str(k) for k in found])}" if isinstance(found, Mapping) else ""
        raise ModelLoadError(
            f"{show_path(path)} holds a {type(found).__name__}{keys}, not a state dict (parameter names → "
            f"tensors), nor one wrapped under {', '.join(map(repr, WRAPPERS))}; save model.state_dict()."
        )
    return state, {}


def state_dict_of(found: Any, depth: int = 0) -> dict[str, Tensor] | None:
    """The state dict that a loaded object is or wraps (a whole model's too), or ``None``."""
    if isinstance(found, nn.Module):
        return dict(found.state_dict())
    if not isinstance(found, Mapping) or not found:
        return None
    if depth < 2:
        for key in WRAPPERS:
            inner = state_dict_of(found[key], depth + 1) if key in found else None
            if inner is not None:
                return inner
    if not all(isinstance(k, str) for k in found):
        return None
    odd = [k for k, v in found.items() if not isinstance(v, Tensor) and not k.endswith("_extra_state")]
    return dict(found) if not odd and any(isinstance(v, Tensor) for v in found.values()) else None


def fit_keys(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``state`` without a wrapper's key prefix or torchvision's aux head, where that makes it fit ``model``."""
    own = set(model.state_dict())
    if not any(k.startswith("aux_classifier.") for k in own):
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    if set(state) == own:
        return state
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) == own:
                return stripped
    return state


def infer_num_classes(model: nn.Module, state: Mapping[str, Any]) -> int | None:
    """The file's class count when ``state`` differs from ``model``'s tensors only in the size of
    their first dimension, the same in all of them (the classifier's outputs); else ``None``."""
    own_counts, file_counts = set(), set()
    for key, own in model.state_dict().items():
        theirs = state.get(key)
        if not isinstance(theirs, Tensor) or theirs.shape == own.shape:
            continue
        if own.ndim == 0 or theirs.shape[1:] != own.shape[1:]:
            return None  # another kind of mismatch: the strict load reports it
        own_counts.add(own.shape[0])
        file_counts.add(int(theirs.shape[0]))
    return file_counts.pop() if len(own_counts) == 1 and len(file_counts) == 1 else None


def build_with_weights(build: Callable[[int | None], nn.Module], num_classes: int | None, infer: bool,
                       state: dict[str, Tensor], path: Path,
                       what: Callable[[int | None], str]) -> tuple[nn.Module, int | None]:
    """``build(num_classes)`` with the weights ``state`` from ``path`` loaded into it.

    With ``infer``, a file whose classifier has another class count re-builds the model with the
    file's count.  Returns the model and its class count (``None``: the builder's default);
    ``what(count)`` describes the model in errors.
    """
    model = build(num_classes)
    state = fit_keys(state, model)
    found = infer_num_classes(model, state) if infer else None
    if found is not None and found != num_classes:
        num_classes, model = found, build(found)
    load_state(model, state, path, what(num_classes))
    return model, num_classes
