"""Make a segmentation model look like a classifier, so classifier explainers apply unchanged.

``as_classifier(model, region)`` returns a module mapping an image batch ``(B, C_in, *S)`` to one
score per class ``(B, K)``: ``s_c = sum_{p in M} y_c(p)`` (or the mean over ``M``), the region
score of Seg-Grad-CAM for every class at once (the wrapper of the interactive-explanations
paper, section 3.1).  With captum::

    clf = segcam.as_classifier(model, segcam.regions.box(10, 10, 40, 40))
    LayerGradCam(clf, clf.model.encoder.layer4).attribute(x, target=3)   # = Seg-Grad-CAM
    Saliency(clf).attribute(x, target=3)                                 # input gradients
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .errors import RegionError
from .inputs import logits_at_input_size, read_logits
from .regions import Instance, Predicted, Region, RegionContext, as_region
from .targets import Reduce


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
        output: Callable[[Any], Tensor] | None = None,
    ):
        super().__init__()
        self.model = model
        self.region = as_region(region)
        if isinstance(self.region, (Predicted, Instance)) and cls is None:
            raise RegionError(
                f"{self.region} depends on the class; pass cls=... to as_classifier (the class "
                "whose predicted pixels make the region)."
            )
        if reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}.")
        self.reduce = reduce
        self.cls = cls
        self.output = output

    def forward(self, x: Tensor) -> Tensor:
        logits = logits_at_input_size(read_logits(self.model(x), self.output), x)
        ctx = RegionContext(x.shape[2:], x.shape[0], x.device, self.cls or 0, logits.predicted)
        mask = self.region.resolve(ctx).unsqueeze(1)  # (B, 1, *S)
        values = logits.values
        if logits.binary:
            values = torch.cat([-values, values], dim=1)
        scores = torch.where(mask, values, torch.zeros((), dtype=values.dtype)).flatten(2).sum(2)
        if self.reduce == "mean":
            scores = scores / mask.flatten(2).sum(2)
        return scores


def as_classifier(
    model: nn.Module,
    region: Region | Any = None,
    reduce: Reduce = "sum",
    cls: int | None = None,
    output: Callable[[Any], Tensor] | None = None,
) -> SegmentationClassifier:
    """Wrap ``model`` so that it returns one score per class for ``region`` (default: the image)."""
    return SegmentationClassifier(model, region, reduce, cls, output)
