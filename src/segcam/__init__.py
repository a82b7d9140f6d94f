"""segcam: explain what a semantic-segmentation network looked at.

>>> import segcam
>>> model = segcam.models.default()                                          # doctest: +SKIP
>>> explainer = segcam.Explainer(model)                                      # doctest: +SKIP
>>> target = segcam.Target(cls=4, region=segcam.regions.pixel(30, 20))       # doctest: +SKIP
>>> exp = explainer.explain(image, target, method="seg-xres-cam", window=2)  # doctest: +SKIP
>>> exp.heatmap  # float32 numpy map in [0, 1] of the image's spatial shape    # doctest: +SKIP

The data flow, in folders: ``core`` (model output → logits, regions, the region score,
layers, capture, the context methods see) → ``methods`` (one file per method) →
``explainer`` / ``explanation`` (the engine and what it returns) → ``evaluation``, ``viz``,
``interop`` → ``apps`` (command line, demo, training).  ``models`` and ``data`` stand beside
them and never import the engine.  Names are imported on first use, so ``import segcam``
stays light (no matplotlib, no model loaders, no optional packages).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    ImageError,
    ImageTooLargeError,
    LayerError,
    LayerNotFoundError,
    MethodError,
    ModelError,
    ModelLoadError,
    RegionError,
    SegcamError,
    SegcamWarning,
    TargetError,
    TooLargeError,
    UnsafePickleError,
)

__version__ = "0.1.0"

_LAZY = {  # public name → module that defines it
    "Explainer": "segcam.explainer",
    "explain": "segcam.explainer",
    "Explanation": "segcam.explanation",
    "Explanations": "segcam.explanation",
    "PostProcess": "segcam.explanation",
    "Forward": "segcam.core.context",
    "Context": "segcam.core.context",
    "Target": "segcam.core.target",
    "LayerInfo": "segcam.core.layers",
    "LinearMaps": "segcam.linear",
    "linear_method": "segcam.linear",
    "METHODS": "segcam.methods",
    "Method": "segcam.methods",
    "CamMethod": "segcam.methods",
    "register": "segcam.methods",
    "option": "segcam.methods",
    "load_model": "segcam.models.loaders",
    "LoadedModel": "segcam.models.loaders",
    "as_classifier": "segcam.interop.captum",
    "SegmentationClassifier": "segcam.interop.captum",
}
_SUBPACKAGES = {"regions": "segcam.core.regions", "methods": "segcam.methods", "models": "segcam.models",
                "data": "segcam.data", "evaluation": "segcam.evaluation", "viz": "segcam.viz",
                "interop": "segcam.interop", "core": "segcam.core", "apps": "segcam.apps"}

__all__ = [
    "METHODS",
    "CamMethod",
    "Context",
    "Explainer",
    "Explanation",
    "Explanations",
    "Forward",
    "ImageError",
    "ImageTooLargeError",
    "LayerError",
    "LayerInfo",
    "LayerNotFoundError",
    "LinearMaps",
    "LoadedModel",
    "Method",
    "MethodError",
    "ModelError",
    "ModelLoadError",
    "PostProcess",
    "RegionError",
    "SegcamError",
    "SegcamWarning",
    "SegmentationClassifier",
    "Target",
    "TargetError",
    "TooLargeError",
    "UnsafePickleError",
    "__version__",
    "apps",
    "as_classifier",
    "core",
    "data",
    "evaluation",
    "explain",
    "interop",
    "linear_method",
    "load_model",
    "methods",
    "models",
    "option",
    "regions",
    "register",
    "viz",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(_SUBPACKAGES[name])
    else:
        raise AttributeError(f"module 'segcam' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
