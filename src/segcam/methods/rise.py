"""RISE for segmentation: maps from forward passes on randomly masked images.

RISE (Petsiuk et al., 2018) shows the model ``N`` random smooth masks ``m_i`` of the image and
weighs each mask by how well the model still does; for a region ``M`` and class ``c`` the weight
is the Dice between the class-``c`` prediction inside ``M`` under the masked image and under the
original one (Hasany et al., 2023, section 3.2)::

    w_i = Dice( [pred(x ⊙ m_i + b ⊙ (1 - m_i)) = c] ∩ M ,  [pred(x) = c] ∩ M )
    S   = sum_i w_i m_i / (N · p)

(``weight="score"`` uses the region score ``S_c`` instead of the Dice, honouring the target's
``reduce``).  Masks: an ``s × s`` (×s) grid of cells kept with probability ``p`` (a uniform draw,
so ``p`` is the kept share), upsampled to ``(s + 1)·cell`` and cropped at a random shift.
Masked pixels show the baseline ``b``: the image's mean colour, zero, or a blurred image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.context import Context
from ..core.target import region_dice, region_score
from ..errors import MethodError
from ..spatial import AVG_POOL, resize
from .base import Method, register
from .options import Choice, Float, Int, Optional, option

GRID_BUDGET = 2**28  # random grid cells drawn up front (1 GB in float32): beyond, a clear error


def rise_masks(
    n: int, spatial: Sequence[int], cells: int, p: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The random parts of ``n`` RISE masks: binary grids ``(n, 1, s, ..)`` and shifts ``(n, d)``.

    Drawn all at once, so a seed gives the same masks whatever the batch size.
    """
    dims = len(spatial)
    grids = (torch.rand((n, 1, *(cells,) * dims), generator=generator) < p).float()
    cell = [math.ceil(size / cells) for size in spatial]
    shifts = torch.stack([torch.randint(c, (n,), generator=generator) for c in cell], dim=1)
    return grids, shifts


def render_masks(grids: Tensor, shifts: Tensor, spatial: Sequence[int]) -> Tensor:
    """Smooth masks ``(n, *spatial)`` in [0, 1]: upsample the grids and crop at the shifts."""
    dims = len(spatial)
    cells = grids.shape[-1]
    cell = [math.ceil(size / cells) for size in spatial]
    up = resize(grids, [(cells + 1) * c for c in cell])[:, 0]
    n = len(grids)
    index: list[Tensor] = [torch.arange(n).reshape(n, *(1,) * dims)]
    for axis, length in enumerate(spatial):  # each mask's window, by advanced indexing
        shape = [n] + [1] * dims
        shape[axis + 1] = length
        index.append((shifts[:, axis, None] + torch.arange(length)).reshape(shape))
    return up[tuple(index)]


def baseline_image(x: Tensor, kind: str) -> Tensor:
    """What masked pixels show: the per-channel mean, zeros, or a box blur of ``x`` (11 pixels
    wide, or the largest odd width an axis shorter than that allows)."""
    if kind == "mean":
        return x.mean(dim=tuple(range(1, x.ndim)), keepdim=True).expand_as(x)
    if kind == "zero":
        return torch.zeros_like(x)
    kernel = tuple(min(11, s if s % 2 else s - 1) for s in x.shape[1:])
    padding = tuple(k // 2 for k in kernel)
    return AVG_POOL[x.ndim - 1](x[None], kernel, stride=1, padding=padding, count_include_pad=False)[0]


@register("rise")
class RISE(Method):
    """RISE: S = sum_i w_i m_i / (N p) over N random masks, w_i = Dice of the region's prediction."""

    on_input = True
    gradients = False

    n_masks: int = option(2000, Int(low=1), "number of random masks N")
    cells: int = option(8, Int(low=1), "grid cells per axis s of each mask")
    p: float = option(0.5, Float(0, 1, open_low=True, open_high=True), "share of cells kept")
    seed: int = option(0, Int(low=0, high=2**63 - 1), "random seed of the masks")
    weight: str = option("dice", Choice(("dice", "score")), "mask weight: Dice of the region's prediction, or its score")
    baseline: str = option("mean", Choice(("mean", "zero", "blur")), "what masked pixels show")
    batch_size: int | None = option(None, Optional(Int(low=1), "automatic"), "masked images per forward pass")
    tol: float | None = option(None, Optional(Float(low=0, open_low=True), "run all masks"),
                               "stop once the map moves less than this over the last tenth of the masks")

    def explain(self, ctx: Context, layer: str) -> Tensor:
        self._check_size(ctx.spatial)
        maps, used = [], []
        for b in range(ctx.image.shape[0]):
            saliency, n = self._one_image(ctx, b)
            maps.append(saliency)
            used.append(n)
        ctx.notes["masks_used"] = min(used)
        ctx.notes["stopped_early"] = min(used) < self.n_masks
        return torch.stack(maps, dim=1)  # (T, B, *S)

    def _check_size(self, spatial: tuple[int, ...]) -> None:
        if self.cells > min(spatial):
            raise MethodError(f"cells={self.cells} is more than the image's smallest size {min(spatial)}; "
                              f"use at most {min(spatial)} cells per axis.")
        grids = self.n_masks * self.cells ** len(spatial)
        if grids > GRID_BUDGET:
            raise MethodError(f"n_masks={self.n_masks} masks of {self.cells}^{len(spatial)} cells need {grids:,} "
                              f"random numbers up front (at most {GRID_BUDGET:,}); lower n_masks or cells.")

    def _one_image(self, ctx: Context, b: int) -> tuple[Tensor, int]:
        image, spatial, dims = ctx.image[b], ctx.spatial, len(ctx.spatial)
        grids, shifts = rise_masks(self.n_masks, spatial, self.cells, self.p,
                                   torch.Generator().manual_seed(self.seed))
        base = baseline_image(image, self.baseline)
        # only the regions' bounding box of each masked prediction is needed
        union = torch.stack([t.region[b] for t in ctx.targets]).any(0).nonzero()
        window = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(union.amin(0), union.amax(0)))
        regions = [t.region[b][window] for t in ctx.targets]
        reference = ctx.predicted[b][window]
        total = torch.zeros((len(ctx.targets), *spatial), dtype=torch.float64, device=image.device)
        step, every = ctx.batch_size(self.batch_size), max(1, self.n_masks // 10)
        previous, used, next_check = None, 0, every
        for start in range(0, self.n_masks, step):
            stop = min(start + step, self.n_masks)
            masks = render_masks(grids[start:stop], shifts[start:stop], spatial).to(image)
            logits = ctx.run(image * masks[:, None] + base * (1 - masks[:, None]), b).crop(window)
            labels = logits.predicted() if self.weight == "dice" else None
            for k, (t, region) in enumerate(zip(ctx.targets, regions)):
                if labels is not None:
                    w = region_dice(labels, reference, t.cls, region, dims)
                else:
                    w = region_score(logits.of_class(t.cls), region, t.target.reduce, dims)
                total[k] += torch.tensordot(w.double(), masks.double(), dims=1)
            used = stop
            ctx.report(used, self.n_masks)
            if self.tol is not None and used >= next_check:
                next_check += every
                peak = total.flatten(1).amax(1).clamp_min(1e-12).reshape(-1, *(1,) * dims)
                current = total / peak
                if previous is not None and float((current - previous).abs().max()) < self.tol:
                    break
                previous = current
        return (total / (used * self.p)).float(), used
