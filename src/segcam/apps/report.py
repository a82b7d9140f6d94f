"""Explanations side by side: across the layers of one model, and across training checkpoints.

``layer_sweep`` explains one target at many layers from one forward and one backward pass
(edges early, objects deep, as Vinogradova et al. and the U-Net-vs-SegFormer study observe).
``progress_grid`` repeats it for several checkpoints of one model, with each checkpoint's
mIoU, to see how the maps change as training goes on; checkpoints kept when the test mIoU
reached a level (:mod:`segcam.apps.levels`) are headed by that level.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .. import Explainer, Explanation, Target
from ..core import blocks
from ..viz import save_grid
from .train import level_text


def sweep_layers(explainer: Explainer, image: Tensor) -> list[str]:
    """The layers a sweep shows when none are given: the explainer's readable names if it has
    any, else the model's blocks — explainable children of the model or of its module lists
    and dicts (``stem``, ``downs.0``, ``ups.1``, ``head``) — in execution order."""
    if explainer.layer_names:
        return list(explainer.layer_names)
    return blocks(explainer.model, explainer.layers(image))


def layer_sweep(
    explainer: Explainer,
    image: Tensor,
    target: Target,
    layers: Sequence[str] | None = None,
    method: str = "seg-grad-cam",
    **options: Any,
) -> dict[str, Explanation]:
    """``target`` explained at every layer in ``layers`` (default :func:`sweep_layers`), by the
    names the caller gave (readable names included)."""
    names = list(layers) if layers else sweep_layers(explainer, image)
    exps = explainer.explain_many(image, [target], method=method, layer=names, **options)
    return {name: exps[0, explainer.resolve_layer(name)] for name in names}


@dataclass
class Checkpoint:
    """One checkpoint of a model for :func:`progress_grid`: a label, the model, its mIoU, and for
    a checkpoint kept when the mIoU reached a level, that level and the step it was reached at."""

    label: str
    model: nn.Module
    miou: float | None = None
    level: float | None = None
    step: int | None = None

    @classmethod
    def from_metadata(cls, label: str, model: nn.Module, meta: Mapping[str, Any]) -> Checkpoint:
        """A checkpoint described by its weights metadata (as ``segcam train`` writes it): its
        ``step``, the ``miou_level`` it was kept for and its stored test mIoU, where present."""
        test = meta.get("test", {})
        miou, level = test.get("miou"), meta.get("miou_level")
        step = meta.get("step")
        return cls(f"step {step}" if step is not None else label, model,
                   miou if _fraction(miou) else None, level if _fraction(level) else None, step)

    @property
    def header(self) -> str:
        """The column header: ``mIoU ≥ 0.50 (0.534, step 120)`` for a level checkpoint, else
        the label and the mIoU."""
        if self.level is not None:
            measured = [] if self.miou is None else [f"{self.miou:.3f}"]
            where = [] if self.step is None else [f"step {self.step}"]
            detail = ", ".join(measured + where)
            return f"mIoU ≥ {level_text(self.level)}" + (f" ({detail})" if detail else "")
        return self.label + ("" if self.miou is None else f"\nmIoU {self.miou:.3f}")

    @property
    def order(self) -> tuple[float, float]:
        """Sort key for columns by mIoU: the level it was kept for if any, then the mIoU."""
        miou = -1.0 if self.miou is None else self.miou
        return (miou if self.level is None else self.level, miou)


def _fraction(value: Any) -> bool:
    """Whether ``value`` read from metadata is a number in [0, 1] (an mIoU or a level)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1


def progress_grid(
    path: str | Path,
    checkpoints: Sequence[Checkpoint],
    image: Tensor,
    target: Target,
    layers: Sequence[str],
    method: str = "seg-grad-cam",
    layer_names: Mapping[str, str] | None = None,
    **options: Any,
) -> dict[str, dict[str, Explanation]]:
    """Draw ``target`` explained at each of ``layers`` (rows) for each checkpoint (columns, in the
    order given, headed by :attr:`Checkpoint.header`; sort by :attr:`Checkpoint.order` for mIoU order)."""
    columns: dict[str, dict[str, Explanation]] = {}
    for k, ckpt in enumerate(checkpoints, start=1):
        explainer = Explainer(ckpt.model, layer_names=layer_names)
        header = ckpt.header if ckpt.header not in columns else f"{ckpt.header}\n(checkpoint {k})"  # never overwrite
        columns[header] = layer_sweep(explainer, image, target, layers, method, **options)
    region = next(iter(next(iter(columns.values())).values())).region[0]
    cells = {layer: {col: exps[layer].heatmap for col, exps in columns.items()} for layer in layers}
    save_grid(path, image, region, cells, title=f"{method} · {target.describe()}")
    return columns
