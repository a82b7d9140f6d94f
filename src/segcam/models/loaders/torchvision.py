"""The spec ``torchvision:NAME``: a torchvision segmentation builder, offline, with optional weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ...errors import ModelLoadError, closest
from .._common import show_path
from ..preprocess import Preprocess
from ..weights import num_classes_of
from .base import LoadedModel, loaded
from .state_dict import build_with_weights, read_weights

_FAMILIES = {  # torchvision builder → the zoo family of exactly that model
    "deeplabv3_resnet50": "deeplabv3-resnet50",
    "deeplabv3_mobilenet_v3_large": "deeplabv3-mobilenet",
    "fcn_resnet50": "fcn-resnet50",
}


def segmentation_builders() -> list[str]:
    """The names of torchvision's segmentation builders (``[]`` without torchvision)."""
    try:
        import torchvision.models as tvm
        from torchvision.models import segmentation
    except ImportError:
        return []
    return tvm.list_models(module=segmentation)


def load_torchvision(name: str, weights: Path | None, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    """torchvision's builder ``name`` with ``weights=None, weights_backbone=None`` (nothing is
    downloaded) and ``num_classes`` (default: the weights file's, else torchvision's 21)."""
    try:
        import torchvision.models as tvm
    except ImportError:
        raise ModelLoadError(f"the spec 'torchvision:{name}' needs torchvision; install it with "
                             "pip install torchvision.") from None
    builders = segmentation_builders()
    key = name.replace("-", "_").lower()
    if key not in builders:
        near = closest(key, builders)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ModelLoadError(f"unknown torchvision segmentation model {name!r}.{hint} Known: {', '.join(builders)}.")
    builder = tvm.get_model_builder(key)

    def build(n: int | None) -> nn.Module:
        return builder(weights=None, weights_backbone=None, num_classes=n)

    state, meta = read_weights(weights, allow_pickle) if weights is not None else (None, {})
    given = num_classes or num_classes_of(meta)
    if state is None:
        model = build(given)
    else:
        model, given = build_with_weights(build, given, given is None, state, weights,
                                          lambda n: f"torchvision's {key} with {n or 'its default'} classes")
    classes = given or _head_classes(model)
    names = meta.get("class_names")
    if names is None and state is not None:  # torchvision's own checkpoints are trained on VOC's categories
        categories = _categories(tvm, key)
        if categories and len(categories) == classes:
            names = [c.strip("_") for c in categories]
    how = f"weights from {show_path(weights)}" if weights is not None else "random weights"
    return loaded(model, Preprocess.imagenet(), names, f"torchvision:{key} ({classes} classes, {how})",
                  _FAMILIES.get(key, key.replace("_", "-")))


def _categories(tvm: Any, key: str) -> list[str] | None:
    """The class names in the metadata of torchvision's pretrained weights for ``key`` (nothing is downloaded)."""
    try:
        return list(next(iter(tvm.get_model_weights(key))).meta["categories"])
    except (AttributeError, KeyError, StopIteration, TypeError, ValueError):
        return None


def _head_classes(model: nn.Module) -> int | None:
    """The class count of a torchvision model: the last classifier convolution's outputs."""
    classifier = getattr(model, "classifier", None)
    convs = [m for m in classifier.modules() if isinstance(m, nn.Conv2d)] if isinstance(classifier, nn.Module) else []
    return convs[-1].out_channels if convs else None
