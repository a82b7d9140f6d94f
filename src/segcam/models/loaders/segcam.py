"""segcam's own sources: the bundled default model, the zoo's families, segcam weights files."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ...data.scenes import CLASS_NAMES
from ...errors import ModelLoadError
from .. import zoo
from .._common import show_path
from ..nets import DEFAULT_ARCH
from ..preprocess import Preprocess
from ..weights import DEFAULT_WEIGHTS, load_weights, num_classes_of, read_metadata
from .base import LoadedModel, family_preprocess, loaded, no_classes, no_weights, only_weights, own_family
from .state_dict import build_with_weights, read_weights


def load_default(weights: Path | None, num_classes: int | None) -> LoadedModel:
    """The spec ``default``: segcam's bundled U-Net with its own weights and class names."""
    if weights is not None:
        raise ModelLoadError("the default model comes with its own weights; to load other weights into its "
                             "architecture use the spec 'zoo:unet' with them.")
    model, info = load_weights(DEFAULT_WEIGHTS)
    classes = info["arch"]["num_classes"]
    if num_classes is not None and num_classes != classes:
        raise ModelLoadError(f"the default model has {classes} classes, not {num_classes}; for an untrained U-Net "
                             f"with {num_classes} classes use the spec 'zoo:unet'.")
    preprocess = Preprocess(channels=info["arch"].get("in_channels", DEFAULT_ARCH["in_channels"]))
    return loaded(model, preprocess, info.get("class_names"), f"segcam's default model ({DEFAULT_WEIGHTS.name})",
                  "unet")


def zoo_name(spec: str) -> str | None:
    """The zoo family ``spec`` names (exactly, or in lower case), or ``None``."""
    return next((name for name in (spec, spec.lower()) if name in zoo.FAMILIES), None)


def load_zoo(name: str, weights: Path | None, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    """The spec ``zoo:NAME``: a family built offline, with random weights or those in ``weights``.

    The class count is ``num_classes``, else the weights file's, else the synthetic scenes' 6;
    an untrained model with 6 classes gets the scenes' class names.
    """
    family = zoo.family(zoo_name(name) or name)
    state, meta = read_weights(weights, allow_pickle) if weights is not None else (None, {})
    given = num_classes or num_classes_of(meta)
    classes = given or len(CLASS_NAMES)

    def build(n: int | None) -> nn.Module:
        return zoo.build(family.name, n)

    if state is None:
        model = build(classes)
    else:
        model, classes = build_with_weights(build, classes, given is None, state, weights,
                                            lambda n: f"the zoo model {family.name!r} with {n} classes")
    names = meta.get("class_names")
    if names is None and state is None and classes == len(CLASS_NAMES):
        names = CLASS_NAMES
    how = f"weights from {show_path(weights)}" if weights is not None else "random weights"
    return loaded(model, family.preprocess, names, f"zoo:{family.name} ({classes} classes, {how})", family.name)


def load_segcam_file(path: Path, weights: Path | None, num_classes: int | None) -> LoadedModel:
    """A ``.safetensors`` file as the model spec: segcam's metadata names the architecture."""
    meta = read_metadata(path)
    if not meta:
        raise only_weights(path, "safetensors without segcam's metadata")
    no_weights(weights, "a segcam weights file")
    no_classes(num_classes, "a segcam weights file", num_classes_of(meta))
    model, meta = load_weights(path)
    family = meta.get("family") or own_family(model)
    if "arch" in meta:
        preprocess = Preprocess(channels=meta["arch"].get("in_channels", DEFAULT_ARCH["in_channels"]))
    else:
        preprocess = family_preprocess(family)
    return loaded(model, preprocess, meta.get("class_names"), f"segcam weights file {show_path(path)}", family)
