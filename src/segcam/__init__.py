"""segcam: explain what a semantic-segmentation network looked at.

>>> import segcam
>>> explainer = segcam.Explainer(model)                                    # doctest: +SKIP
>>> target = segcam.Target(cls=3, region=segcam.regions.pixel(120, 64))    # doctest: +SKIP
>>> exp = explainer.explain(image, target, method="seg-xres-cam", window=2)  # doctest: +SKIP
>>> exp.heatmap  # float32 numpy map in [0, 1] of the image's spatial shape  # doctest: +SKIP
"""

from . import models, perturbation, regions  # noqa: F401  (perturbation registers "rise")
from .adapter import SegmentationClassifier, as_classifier
from .errors import (
    ImageError,
    LayerError,
    LayerNotFoundError,
    ModelError,
    ModelLoadError,
    RegionError,
    SegcamError,
    SegcamWarning,
    TargetError,
)
from .explainer import Explainer, Explanation, Forward, explain
from .layers import LayerInfo
from .loading import LoadedModel, load_model
from .methods import METHODS, CamMethod, register
from .targets import Target

__version__ = "0.1.0"

__all__ = [
    "models",
    "Explainer",
    "Explanation",
    "Forward",
    "Target",
    "LayerInfo",
    "LoadedModel",
    "load_model",
    "regions",
    "explain",
    "as_classifier",
    "SegmentationClassifier",
    "METHODS",
    "CamMethod",
    "register",
    "SegcamError",
    "SegcamWarning",
    "ImageError",
    "LayerError",
    "LayerNotFoundError",
    "ModelError",
    "ModelLoadError",
    "RegionError",
    "TargetError",
    "__version__",
]
