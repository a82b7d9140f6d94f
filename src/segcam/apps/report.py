"""Explanations side by side: across the layers of one model, and across training checkpoints.

``layer_sweep`` explains one target at many layers from one forward and one backward pass
(edges early, objects deep, as Vinogradova et al. and the U-Net-vs-SegFormer study observe).
``progress_grid`` repeats it for several checkpoints of one model, with each checkpoint's
mIoU, to see how the maps change as training goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .. import Explainer, Explanation, Target
from ..viz import save_grid


def sweep_layers(explainer: Explainer, image: Tensor) -> list[str]:
    """The layers a sweep shows when none are given: the explainer's readable names if it has
    any, else the model's blocks — explainable children of the model or of its module lists
    and dicts (``stem``, ``downs.0``, ``ups.1``, ``head``) — in execution order."""
    if explainer.layer_names:
        return list(explainer.layer_names)
    modules = dict(explainer.model.named_modules())

    def is_block(name: str) -> bool:
        parent = name.rpartition(".")[0]
        return not parent or isinstance(modules[parent], (nn.ModuleList, nn.ModuleDict))

    return [i.name for i in explainer.layers(image) if i.explainable and is_block(i.name)]


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
    """One checkpoint of a model for :func:`progress_grid`: a label, the model, its score."""

    label: str
    model: nn.Module
    miou: float | None = None


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
    """Draw ``target`` explained at each of ``layers`` (rows) for each checkpoint (columns)."""
    columns: dict[str, dict[str, Explanation]] = {}
    for ckpt in checkpoints:
        explainer = Explainer(ckpt.model, layer_names=layer_names)
        header = ckpt.label + ("" if ckpt.miou is None else f"\nmIoU {ckpt.miou:.3f}")
        columns[header] = layer_sweep(explainer, image, target, layers, method, **options)
    region = next(iter(next(iter(columns.values())).values())).region[0]
    cells = {layer: {col: exps[layer].heatmap for col, exps in columns.items()} for layer in layers}
    save_grid(path, image, region, cells, title=f"{method} · {target.describe()}")
    return columns
