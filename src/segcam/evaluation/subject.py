"""What a perturbation test evaluates: one image, its heatmap, the explained region and class.

:func:`resolve_subject` checks the arguments every test shares and brings them to the model's
device.  The heatmap may be a tensor or array ``(*S)`` or a segcam
:class:`~segcam.explanation.Explanation`, which also supplies the region, the class and the
region score's ``reduce``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import check_choice, check_int, shown
from ..core.image import as_batch
from ..core.logits import Logits
from ..core.model import device_and_dtype
from ..core.target import REDUCE_CHOICES, class_index
from ..errors import ImageError, RegionError, SegcamError, TargetError
from ..explanation import Explanation, Explanations
from .perturb import measure_batches


@dataclass(frozen=True)
class Subject:
    """The checked arguments: ``image (C, *S)`` in the model's dtype, ``heatmap (*S)`` float64,
    ``region (*S)`` bool, the class index (checked against the model on its first forward),
    the score's ``reduce`` and the original prediction ``reference (*S)`` when given."""

    image: Tensor
    heatmap: Tensor
    region: Tensor
    cls: int
    reduce: str
    reference: Tensor | None

    @property
    def dims(self) -> int:
        return self.heatmap.ndim

    @property
    def pixels(self) -> int:
        return self.heatmap.numel()

    def check_class(self, logits: Logits) -> int:
        """The class index, refused when the model has no such class."""
        return class_index(self.cls, logits.n_classes, None)

    def original_labels(self, model: nn.Module) -> Tensor:
        """The original prediction ``(*S)``: ``reference`` when given, else one forward pass."""
        if self.reference is not None:
            return self.reference
        return measure_batches(model, 1, lambda a, b: self.image[None], self._labels, 1)[0][0]

    def _labels(self, logits: Logits) -> Tensor:
        self.check_class(logits)
        return logits.predicted()


def resolve_subject(
    model: Any, image: Any, heatmap: Any, region: Any, cls: Any, reference: Any, reduce: Any = None
) -> Subject:
    """Check the shared arguments of the perturbation tests (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise SegcamError(f"model must be a torch.nn.Module, got {shown(model)}.")
    heatmap, region, cls, reduce = _unpack(heatmap, region, cls, reduce)
    device, dtype = device_and_dtype(model)
    heat = _heatmap(heatmap, device)
    x, _ = as_batch(image, heat.ndim, device, dtype)
    if x.shape[0] != 1:
        raise ImageError(f"pass one image (C, *S), got a batch of {x.shape[0]}; evaluate image[i] with its own map.")
    spatial = tuple(heat.shape)
    if tuple(x.shape[2:]) != spatial:
        raise SegcamError(
            f"the heatmap has shape {spatial} but the image {tuple(x.shape[2:])}; pass the map at the image's "
            "size (an explanation's .map[0] is)."
        )
    if cls is None:
        raise TargetError("cls is missing: pass the explained class index (or an Explanation as the heatmap).")
    cls = check_int(cls, "cls", low=0, error=TargetError)
    reduce = check_choice("sum" if reduce is None else reduce, "reduce", REDUCE_CHOICES)
    labels = None if reference is None else _reference(reference, spatial, device)
    return Subject(x[0], heat, _region(region, spatial, device), cls, reduce, labels)


def _unpack(heatmap: Any, region: Any, cls: Any, reduce: Any) -> tuple[Any, Any, Any, Any]:
    """The map, region, class and reduce of an Explanation (explicit arguments win)."""
    if isinstance(heatmap, Explanations):
        raise SegcamError("pass one explanation, e.g. exps[0], not a collection of explanations.")
    if not isinstance(heatmap, Explanation):
        return heatmap, region, cls, reduce
    if heatmap.map.shape[0] != 1:
        raise SegcamError(
            f"the explanation holds a batch of {heatmap.map.shape[0]} maps; pass heatmap=exp.map[i], "
            "region=exp.region[i], cls=exp.cls for image i."
        )
    return (heatmap.map[0], heatmap.region[0] if region is None else region,
            heatmap.cls if cls is None else cls, heatmap.target.reduce if reduce is None else reduce)


def _as_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("="), copy=False))
    if isinstance(value, Tensor):
        return value.detach()
    raise SegcamError(f"{name} must be a torch.Tensor or numpy array, got {shown(value)}.")


def _heatmap(value: Any, device: torch.device) -> Tensor:
    heat = _as_tensor(value, "heatmap")
    if heat.ndim not in (2, 3) or heat.is_complex() or heat.numel() == 0:
        raise SegcamError(
            f"the heatmap must be a real 2-D or 3-D map (*S) of the image's size, got shape {tuple(heat.shape)} "
            f"({heat.dtype}); pass exp.map[0] or exp.heatmap for one image."
        )
    heat = heat.to(device, torch.float64)
    bad = int((~torch.isfinite(heat)).sum())
    if bad:
        raise SegcamError(f"the heatmap has {bad} non-finite value(s) (NaN or inf); replace them, e.g. "
                          "torch.nan_to_num(heatmap).")
    return heat


def _region(value: Any, spatial: tuple[int, ...], device: torch.device) -> Tensor:
    if value is None:
        raise RegionError("region is missing: pass the explained region (*S) as a boolean mask, or an "
                          "Explanation as the heatmap.")
    mask = _as_tensor(value, "region")
    if mask.dtype != torch.bool:
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            raise RegionError(f"region must be a boolean mask (or 0/1 values), got {mask.dtype} values.")
        mask = mask != 0
    if tuple(mask.shape) != spatial:
        raise RegionError(f"region has shape {tuple(mask.shape)} but the image {spatial}; pass a mask of the "
                          "image's size (an explanation's .region[0] is).")
    if not bool(mask.any()):
        raise RegionError("the region is empty: it must hold at least one pixel of the explained prediction.")
    return mask.to(device)


def _reference(value: Any, spatial: tuple[int, ...], device: torch.device) -> Tensor:
    labels = _as_tensor(value, "reference")
    if labels.is_floating_point() or labels.is_complex() or tuple(labels.shape) != spatial:
        raise SegcamError(
            f"reference must be the original prediction's label map {spatial} of integers, got {labels.dtype} of "
            f"shape {tuple(labels.shape)}; use logits.predicted()[0] or leave it out to compute it."
        )
    return labels.to(device, torch.long)
