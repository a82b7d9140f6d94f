"""Models: segcam's own networks and weights, the zoo of known families, and loading any model.

* :mod:`~segcam.models.nets` — :class:`UNet`, :class:`VGGUNet`, :data:`DEFAULT_ARCH`;
* :mod:`~segcam.models.weights` — segcam's ``.safetensors`` weights files (one metadata
  schema), :func:`default` (the bundled model) and :func:`default_info`;
* :mod:`~segcam.models.preprocess` — :class:`Preprocess`, what a model expects of an image;
* :mod:`~segcam.models.zoo` — model families built offline, with readable layer names;
* :mod:`~segcam.models.loaders` — :func:`load_model`: one spec string → a model in eval mode.

The zoo and the loaders are imported on first use, so ``import segcam.models`` needs only
torch and safetensors.  Nothing here imports segcam's explanation engine.
"""

from __future__ import annotations

import importlib
from typing import Any

from .nets import DEFAULT_ARCH, UNet, VGGUNet
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .weights import DEFAULT_WEIGHTS, default, default_info, load_weights, read_metadata, save_weights

_LAZY = {"zoo": "segcam.models.zoo", "loaders": "segcam.models.loaders", "load_model": "segcam.models.loaders",
         "LoadedModel": "segcam.models.loaders"}

__all__ = ["DEFAULT_ARCH", "DEFAULT_WEIGHTS", "IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "Preprocess", "UNet",
           "VGGUNet", "default", "default_info", "load_model", "load_weights", "loaders", "read_metadata",
           "save_weights", "zoo"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'segcam.models' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__.endswith(f".{name}") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
