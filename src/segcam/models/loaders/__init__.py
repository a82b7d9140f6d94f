"""Bring your own model: one spec → a model in eval mode, its preprocessing, class names and layers.

:func:`load_model` reads ``spec`` in this order (the first form that fits wins):

``default``
    segcam's bundled U-Net (:func:`segcam.models.default`), trained on :mod:`segcam.data`.
``zoo:NAME`` or plain ``NAME``
    a :mod:`segcam.models.zoo` family (``unet``, ``vgg-unet``, ``deeplabv3-resnet50`` …) built
    offline with ``num_classes`` classes (default: the weights file's, else 6), random weights
    unless ``weights`` is given.  A plain name that is also an existing file or folder is
    refused as ambiguous: write ``zoo:NAME`` or ``./NAME``.
``torchvision:NAME``
    a torchvision segmentation builder (``deeplabv3_resnet50``, ``lraspp_mobilenet_v3_large`` …)
    with nothing downloaded, ``num_classes`` (default torchvision's 21) and optional ``weights``;
    ImageNet preprocessing.  See :mod:`.torchvision`.
``package.module:function``
    a Python factory returning an ``nn.Module``, with optional ``weights``.  See :mod:`.factory`.
``PATH`` (an existing file or folder; the kind is read from the content, not the suffix)
    a Hugging Face model folder (``config.json``, see :mod:`.huggingface`), a TorchScript
    archive, a ``torch.export`` program (``.pt2``, see :mod:`.archives`), a ``.safetensors``
    file written by :func:`segcam.models.save_weights`, or a pickled model (``torch.save(model)``,
    only with ``allow_pickle=True``).  A file of weights only cannot name its architecture:
    pass it as ``weights`` next to a ``zoo:``, ``torchvision:`` or factory spec.

Weights files are described in :mod:`.state_dict`.  Safety: pickles can run arbitrary code when
loaded, so everything is read with ``weights_only=True`` and exported programs are vetted before
``torch.export.load``; a file that needs more raises :class:`UnsafePickleError`, and
``allow_pickle=True`` (CLI: ``--allow-pickle``) loads it: use it only for files you trust.

>>> loaded = load_model("default")                                              # doctest: +SKIP
>>> loaded = load_model("mypkg.nets:build", weights="run3.pt", num_classes=4)    # doctest: +SKIP
>>> explainer = segcam.Explainer.from_loaded(loaded)                            # doctest: +SKIP
>>> explainer.explain(loaded.preprocess(image), segcam.Target(2))               # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from ...checks import check_bool, check_int, shown
from ...errors import ModelLoadError, SegcamError, UnsafePickleError, closest
from .. import zoo
from .._common import existing, show_path
from ..preprocess import Preprocess
from .archives import load_exported, load_pickled, load_torchscript
from .base import FORMS, LoadedModel, forms, no_classes, no_weights
from .factory import PATTERN as FACTORY_SPEC
from .factory import load_factory
from .files import is_exported, is_torchscript, sniff, zip_names
from .huggingface import load_huggingface
from .segcam import load_default, load_segcam_file, load_zoo, zoo_name
from .torchvision import load_torchvision, segmentation_builders

__all__ = ["FORMS", "LoadedModel", "ModelLoadError", "UnsafePickleError", "load_model"]

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_PATH_SUFFIXES = {".pt", ".pth", ".pt2", ".safetensors", ".ts", ".jit", ".bin", ".ckpt", ".pkl", ".pickle",
                  ".zip", ".json"}


def load_model(
    spec: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    preprocess: Preprocess | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load the model ``spec`` names (see the module docstring for the forms), in eval mode.

    ``weights``: a weights file for ``zoo:``, ``torchvision:`` and factory specs.  ``num_classes``:
    the model's output classes, for those specs.  ``preprocess`` replaces the source's usual
    preprocessing.  ``allow_pickle`` lets files you trust run pickle code.
    """
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(text, str):
        more = " To explain a model you already have, give it to segcam.Explainer." if hasattr(spec, "forward") else ""
        raise ModelLoadError(f"the model spec must be a string or a path, got {shown(spec)}.{more}\n{forms()}")
    text = text.strip()
    if not text:
        raise ModelLoadError(f"the model spec is empty.\n{forms()}")
    weights_path = None if weights is None else existing(weights, "weights file")
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", low=1, error=ModelLoadError)
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise SegcamError(f"preprocess must be a segcam.models.Preprocess, got {shown(preprocess)}; build one "
                          "with Preprocess(size=..., mean=..., std=..., channels=...).")
    allow_pickle = check_bool(allow_pickle, "allow_pickle")
    found = _dispatch(text, weights_path, num_classes, allow_pickle)
    return found if preprocess is None else replace(found, preprocess=preprocess)


def _dispatch(spec: str, weights: Path | None, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    if spec == "default":
        return load_default(weights, num_classes)
    prefix, colon, rest = spec.partition(":")
    if colon and prefix.lower() == "zoo":
        return load_zoo(rest.strip(), weights, num_classes, allow_pickle)
    if colon and prefix.lower() == "torchvision":
        return load_torchvision(rest.strip(), weights, num_classes, allow_pickle)
    path, family = Path(spec).expanduser(), zoo_name(spec)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long, or with a NUL byte: not a path
        exists = False
    if exists and family is not None:
        raise ModelLoadError(f"{spec!r} is both a zoo model family and a file or folder here; write 'zoo:{family}' "
                             f"for the family or './{spec}' for the path.")
    if exists:
        return _load_path(path, weights, num_classes, allow_pickle)
    if family is not None:
        return load_zoo(family, weights, num_classes, allow_pickle)
    if FACTORY_SPEC.fullmatch(spec):
        return load_factory(spec, weights, num_classes, allow_pickle)
    if _looks_like_path(spec):
        hint = ""
        if _HUB_ID.fullmatch(spec) and not path.suffix:
            hint = (f" If {spec!r} is a Hugging Face Hub id: segcam never downloads; fetch it first "
                    f"(e.g. `hf download {spec} --local-dir DIR`) and pass DIR.")
        raise ModelLoadError(f"model file not found: {show_path(path)}.{hint} Check the path.\n{forms()}")
    near = closest(spec, _known_specs())
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    raise ModelLoadError(f"unknown model spec {spec!r}.{hint}\n{forms()}")


def _load_path(path: Path, weights: Path | None, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    """An existing file or folder, by what it holds (not by its suffix)."""
    if path.is_dir() or path.name == "config.json":
        folder = path if path.is_dir() else path.parent
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"{show_path(folder)} is a folder without config.json, so not a Hugging Face model folder "
                "(save_pretrained writes config.json and the weights); pass a model file or such a folder."
                f"\n{forms()}"
            )
        no_weights(weights, "a Hugging Face folder")
        return load_huggingface(folder, num_classes, allow_pickle)
    kind = sniff(path)
    if kind == "safetensors":
        return load_segcam_file(path, weights, num_classes)
    if kind == "zip":
        names = zip_names(path)
        if is_torchscript(names):
            no_weights(weights, "a TorchScript file")
            no_classes(num_classes, "a TorchScript file")
            return load_torchscript(path)
        if is_exported(names):
            no_weights(weights, "an exported program")
            no_classes(num_classes, "an exported program")
            return load_exported(path, allow_pickle)
    elif path.suffix.lower() == ".pt2":
        raise ModelLoadError(f"{show_path(path)} is not an exported program (not a .pt2 zip archive); write it "
                             "with torch.export.save(torch.export.export(model, args), path).")
    model = load_pickled(path, allow_pickle)
    no_weights(weights, "a pickled model")
    no_classes(num_classes, "a pickled model")
    return model


def _looks_like_path(spec: str) -> bool:
    """Whether a spec that matches no other form was probably meant as a path."""
    separators = {"/", os.sep, os.altsep or "/"}
    return (any(s in spec for s in separators) or spec.startswith((".", "~"))
            or Path(spec).suffix.lower() in _PATH_SUFFIXES)


def _known_specs() -> list[str]:
    """Every spec that names a model without a path, for "did you mean"."""
    families = list(zoo.FAMILIES)
    return ["default", *(f"zoo:{n}" for n in families), *families,
            *(f"torchvision:{n}" for n in segmentation_builders())]
