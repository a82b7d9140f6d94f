"""Make a segmentation model look like a classifier, so classifier explainers apply unchanged.

``as_classifier(model, region)`` returns a module mapping an image batch ``(B, C_in, *S)`` to one
score per class ``(B, K)``: the region score ``S_c`` of :func:`segcam.core.target.region_score`
for every class at once (the wrapper of the interactive-explanations paper, section 3.1).
With captum::

    clf = segcam.as_classifier(model, segcam.regions.box(10, 10, 40, 40))
    LayerGradCam(clf, clf.model.encoder.layer4).attribute(x, target=3)   # = Seg-Grad-CAM
    Saliency(clf).attribute(x, target=3)                                 # input gradients
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ..checks import check_callable, check_choice, check_int, shown
from ..core.logits import logits_at_input_size, read_logits
from ..core.model import model_lock
from ..core.regions import Instance, Predicted, Region, RegionContext, as_region
from ..core.target import REDUCE_CHOICES, Reduce, region_score
from ..errors import RegionError, SegcamError


class SegmentationClassifier(nn.Module):
    """``forward(x) -> (B, K)`` region scores of a wrapped segmentation model (see module doc).

    A 1-channel (binary) head gives two scores, ``[-s, s]``, like segcam's class 0 and 1.
    """

    def __init__(
        self,
        model: nn.Module,
        region: Region | Any = None,
        reduce: Reduce = "sum",
        cls: int | None = None,
        output: Callable[[Any], Any] | None = None,
    ):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise SegcamError(f"the model must be a torch.nn.Module, got {shown(model)}.")
        self.model = model
        self.region = as_region(region)
        if isinstance(self.region, (Predicted, Instance)) and cls is None:
            raise RegionError(
                f"{self.region} depends on the class; pass cls=... to as_classifier (the class "
                "whose predicted pixels make the region)."
            )
        self.reduce = check_choice(reduce, "reduce", REDUCE_CHOICES)
        self.cls = None if cls is None else check_int(cls, "cls", low=0)
        self.output = None if output is None else check_callable(output, "output")

    def forward(self, x: Tensor) -> Tensor:
        with model_lock(self.model):  # not while segcam runs the same model in another thread
            logits = logits_at_input_size(read_logits(self.model(x), self.output), x)
        ctx = RegionContext(x.shape[2:], x.shape[0], x.device, self.cls or 0, logits.predicted)
        region = self.region.resolve(ctx).unsqueeze(1)  # (B, 1, *S), broadcast over classes
        return region_score(logits.per_class(), region, self.reduce, x.ndim - 2)


def as_classifier(
    model: nn.Module,
    region: Region | Any = None,
    reduce: Reduce = "sum",
    cls: int | None = None,
    output: Callable[[Any], Any] | None = None,
) -> SegmentationClassifier:
    """Wrap ``model`` so that it returns one score per class for ``region`` (default: the image)."""
    return SegmentationClassifier(model, region, reduce, cls, output)
