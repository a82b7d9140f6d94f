"""segcam's weights files: a model's tensors and what it is, in one ``.safetensors`` file.

A safetensors file holds tensors only, so reading one runs no code.  segcam keeps one JSON
object in the file's header metadata, under the key ``"segcam"``, with this schema:

``arch`` or ``family`` (exactly one): which model the tensors belong to
    ``arch`` is an object of :class:`~segcam.models.UNet`'s arguments: ``num_classes``
    (required), ``in_channels``, ``width``, ``depth``, ``dims`` (positive integers) and
    ``global_context`` (true/false).  ``family`` names a :mod:`segcam.models.zoo` family and
    comes with ``num_classes`` (required), ``in_channels`` and ``dims`` beside it.
``class_names`` (optional)
    a list of distinct names, one per class.
``step``, ``steps`` (optional)
    for a training checkpoint: the step it was saved at, of how many (integers ≥ 0).
``train``, ``test``, ``unbiased`` (optional)
    objects: how the model was trained, and its scores on the test and unbiased splits.
Any other key is a free-form note, kept as it is.

:func:`save_weights` checks the metadata against this schema before writing, and
:func:`read_metadata` checks it again when reading, so a file either loads or says exactly
what is wrong with it.  :func:`load_weights` rebuilds the model the metadata names;
:func:`default` is segcam's bundled model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..checks import check_path
from ..errors import ModelLoadError, SegcamError
from ._common import existing, few, show_path
from .nets import UNet

DEFAULT_WEIGHTS = Path(__file__).parent / "pretrained" / "default_unet.safetensors"
METADATA_KEY = "segcam"
UNET_ARGS = {"in_channels": int, "num_classes": int, "width": int, "depth": int, "dims": int, "global_context": bool}
FAMILY_ARGS = {"num_classes": int, "in_channels": int, "dims": int}
UNET_MAX_DEPTH = 16  # each level halves the image; more levels only make a file hang its reader
_SAVE_AGAIN = "save the file again with segcam.models.save_weights (the schema is in segcam.models.weights)"


def _schema_problem(meta: Any) -> str | None:
    """What keeps ``meta`` from being segcam's weights metadata, or ``None`` when it fits."""
    if not isinstance(meta, dict):
        return f"it is a {type(meta).__name__}, not a JSON object"
    if ("arch" in meta) == ("family" in meta):
        return "it must name the model by exactly one of 'arch' (UNet's arguments) and 'family' (a zoo family)"
    if "arch" in meta:
        args, allowed, where = meta["arch"], UNET_ARGS, "'arch'"
        if not isinstance(args, dict):
            return "'arch' must be an object of UNet's arguments"
        unknown = sorted(set(args) - set(UNET_ARGS))
        if unknown:
            return f"'arch' has keys UNet does not take ({few(unknown)})"
    else:
        args, allowed, where = meta, FAMILY_ARGS, "the metadata"
        if not isinstance(meta["family"], str) or not meta["family"]:
            return "'family' must be the name of a zoo family"
    if "num_classes" not in args:
        return f"{where} lacks 'num_classes'"
    for key, kind in allowed.items():
        if key in args and not (type(args[key]) is kind and (kind is bool or args[key] >= 1)):
            return f"{key!r} must be {'true or false' if kind is bool else 'a positive integer'}, got {args[key]!r}"
    if "arch" in meta and args.get("depth", 1) > UNET_MAX_DEPTH:
        return f"'depth' must be at most {UNET_MAX_DEPTH} (each level halves the image), got {args['depth']!r}"
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
                              or len(set(names)) != len(names) or len(names) != args["num_classes"]):
        return f"'class_names' must be {args['num_classes']} distinct names (one per class), got {names!r}"
    for key in ("step", "steps"):
        if key in meta and not (type(meta[key]) is int and meta[key] >= 0):
            return f"{key!r} must be an integer ≥ 0, got {meta[key]!r}"
    for key in ("train", "test", "unbiased"):
        if key in meta and not isinstance(meta[key], dict):
            return f"{key!r} must be an object, got {meta[key]!r}"
    return None


def num_classes_of(meta: Mapping[str, Any]) -> int | None:
    """The class count that checked metadata gives; ``None`` for no metadata (``{}``)."""
    if not meta:
        return None
    return int(meta.get("arch", meta)["num_classes"])


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: Mapping[str, Any]) -> None:
    """Write ``model``'s weights and ``metadata`` (see the module docstring) to a ``.safetensors`` file."""
    if not isinstance(model, nn.Module):
        raise SegcamError(f"save_weights needs a torch nn.Module, got a {type(model).__name__}.")
    path = check_path(path, "path")
    try:
        text = json.dumps(dict(metadata) if isinstance(metadata, Mapping) else metadata)
    except (TypeError, ValueError) as e:
        raise SegcamError(f"the weights metadata must be JSON-serialisable ({e}); keep to dicts, lists, "
                          "strings, numbers and booleans.") from None
    problem = _schema_problem(json.loads(text))  # checked as it will be read back
    if problem:
        raise SegcamError(f"cannot save weights with this metadata: {problem}. The schema is in "
                          "segcam.models.weights.")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={METADATA_KEY: text})


def _unreadable(path: Path, error: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"{show_path(path)} is not a readable .safetensors file ({error}); it may be truncated, damaged "
        "or another kind of file. Save it again (segcam.models.save_weights or safetensors.torch.save_file)."
    )


def _safetensors_file(path: str | os.PathLike) -> Path:
    found = existing(path, "weights file")
    if found.is_dir():
        raise ModelLoadError(f"{show_path(found)} is a folder, not a .safetensors file; pass the file.")
    return found


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """segcam's metadata in the ``.safetensors`` file ``path``, checked against the schema;
    ``{}`` when the file is readable but has none (plain weights saved by another tool)."""
    path = _safetensors_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise _unreadable(path, e) from None
    if METADATA_KEY not in header:
        return {}
    try:
        meta = json.loads(header[METADATA_KEY])
    except (ValueError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise ModelLoadError(f"segcam's metadata in {show_path(path)} is not valid JSON ({e}); "
                             f"{_SAVE_AGAIN}.") from None
    problem = _schema_problem(meta)
    if problem:
        raise ModelLoadError(f"{show_path(path)} has segcam metadata that does not fit segcam's schema: "
                             f"{problem}; {_SAVE_AGAIN}.")
    return meta


def read_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors in the ``.safetensors`` file ``path``, on the CPU."""
    path = _safetensors_file(path)
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise _unreadable(path, e) from None


def load_state(model: nn.Module, state: Mapping[str, Any], path: Path, what: str) -> None:
    """Load ``state`` (read from ``path``) into ``model`` (described by ``what``) strictly; a
    mismatch raises one :class:`ModelLoadError` listing the missing, unexpected and misshapen keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
              if isinstance(state.get(k), Tensor) and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys the model needs are missing from the file ({few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} keys in the file are not in the model ({few(unexpected)})")
        if shapes:
            listed = ", ".join(f"{k}: file {a} vs model {b}" for k, a, b in shapes[:3])
            parts.append(f"{len(shapes)} tensors have other shapes ({listed}{' …' if len(shapes) > 3 else ''})")
        hint = "Check that the weights were saved from this architecture"
        counts = {a[0] for _, a, b in shapes if a and a[1:] == b[1:]}
        if not missing and not unexpected and len(counts) == 1 and all(a and a[1:] == b[1:] for _, a, b in shapes):
            hint += f"; if the file's model has {counts.pop()} classes, pass num_classes (CLI: --num-classes)"
        raise ModelLoadError(f"the weights in {show_path(path)} do not fit {what}: {'; '.join(parts)}. {hint}.")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise ModelLoadError(f"loading the weights in {show_path(path)} into {what} failed: {e}") from e


def _build(meta: Mapping[str, Any], path: Path) -> nn.Module:
    """The model with random weights that checked metadata names."""
    try:
        if "arch" in meta:
            return UNet(**meta["arch"])
        from .zoo import build

        return build(meta["family"], meta["num_classes"], meta.get("in_channels", 3), meta.get("dims"))
    except SegcamError as e:
        raise ModelLoadError(f"cannot build the model that {show_path(path)} describes: {e}") from None


def load_weights(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The model a segcam weights file describes, with its weights, in eval mode; and its metadata."""
    path = _safetensors_file(path)
    meta = read_metadata(path)
    if not meta:
        raise ModelLoadError(
            f"{show_path(path)} holds weights without segcam's metadata, so it does not say which "
            "architecture they belong to; load it with segcam.load_model(SPEC, weights=...) and an "
            "architecture spec (zoo:NAME, torchvision:NAME or package.module:function)."
        )
    model = _build(meta, path)
    load_state(model, read_state(path), path, f"the {type(model).__name__} its metadata describes")
    return model.eval(), meta


def default() -> UNet:
    """segcam's default model: a small 2-D U-Net (:data:`~segcam.models.DEFAULT_ARCH`) trained on
    :mod:`segcam.data`'s biased synthetic scenes, in eval mode.

    Input ``(3, H, W)`` RGB in [0, 1] (64×64 in training; sizes divisible by 8 work best); six
    classes (``default_info()["class_names"]``).  Loaded offline from the package.
    """
    return load_weights(DEFAULT_WEIGHTS)[0]


def default_info() -> dict[str, Any]:
    """The default model's metadata: architecture, class names, how it was trained, its scores."""
    return read_metadata(DEFAULT_WEIGHTS)
