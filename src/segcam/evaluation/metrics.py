"""Segmentation metrics: confusion counts, IoU, Dice, and mIoU of a model on synthetic scenes.

The arithmetic is in pure functions; :class:`SegmentationScores` accumulates it over batches
(``update`` / ``compute``), the shape an evaluation inside a batch job needs.  Dice of boolean
masks is :func:`segcam.core.target.dice` (RISE weighs its masks with it too), re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_int, check_names, shown
from ..core.logits import logits_at_input_size, read_logits
from ..core.model import call_model, guarded
from ..core.target import dice, region_dice
from ..data import CLASS_NAMES, SceneConfig, make_batch
from ..errors import SegcamError

__all__ = ["SegmentationScores", "confusion", "dice", "evaluate_model", "iou_from_confusion", "region_dice"]


def confusion(pred: Tensor, labels: Tensor, n: int) -> Tensor:
    """``n × n`` counts of (true class, predicted class) pairs: rows are truth, columns prediction."""
    return torch.bincount(labels.flatten() * n + pred.flatten(), minlength=n * n).reshape(n, n)


def iou_from_confusion(conf: Tensor) -> Tensor:
    """Per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both truth and prediction."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


class SegmentationScores:
    """Per-class IoU and mIoU accumulated over batches of label maps.

    >>> scores = SegmentationScores(["bg", "disc"])
    >>> scores.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    >>> scores.compute()["miou"]
    1.0
    """

    def __init__(self, class_names: Sequence[str]):
        self.class_names = check_names(class_names, "class_names")
        n = len(self.class_names)
        self.counts = torch.zeros(n, n, dtype=torch.long)

    def update(self, pred: Tensor, labels: Tensor) -> None:
        """Add predicted and true label maps of the same shape."""
        if not isinstance(pred, Tensor) or not isinstance(labels, Tensor) or pred.shape != labels.shape:
            raise SegcamError(f"pred and labels must be label tensors of one shape, got {shown(pred)} and {shown(labels)}.")
        n = len(self.class_names)
        for what, t in (("pred", pred), ("labels", labels)):
            if t.numel() and not (0 <= int(t.min()) and int(t.max()) < n):
                raise SegcamError(f"{what} holds labels outside 0..{n - 1}; give one class name per label.")
        self.counts += confusion(pred.cpu(), labels.cpu(), n)

    def compute(self) -> dict[str, Any]:
        """``{"iou": {name: IoU}, "miou": mean over classes present}`` (rounded to 4 places)."""
        iou = iou_from_confusion(self.counts)
        present = iou[~iou.isnan()]
        return {"iou": {name: round(float(v), 4) for name, v in zip(self.class_names, iou)},
                "miou": round(float(present.mean()), 4) if len(present) else float("nan")}


@torch.no_grad()
def evaluate_model(model: nn.Module, seed: int, count: int, config: SceneConfig | None = None,
                   batch: int = 64) -> dict[str, Any]:
    """Per-class IoU and mIoU of ``model`` on ``count`` synthetic scenes of stream ``seed``.

    The model runs under segcam's guard (eval mode, restored afterwards).
    """
    if not isinstance(model, nn.Module):
        raise SegcamError(f"model must be a torch.nn.Module, got {shown(model)}.")
    seed, count = check_int(seed, "seed", low=0), check_int(count, "count", low=1)
    batch = check_int(batch, "batch", low=1)
    config = SceneConfig() if config is None else config
    if not isinstance(config, SceneConfig):
        raise SegcamError(f"config must be a segcam.data.SceneConfig, got {shown(config)}.")
    scores = SegmentationScores(CLASS_NAMES)
    with guarded(model):
        for start in range(0, count, batch):
            x, y = make_batch(start, min(batch, count - start), seed, config)
            logits = logits_at_input_size(read_logits(call_model(model, x)), x)
            scores.update(logits.predicted(), y)
    return {**scores.compute(), "scenes": count, "seed": seed, "bias": config.bias}
