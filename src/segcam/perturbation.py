"""RISE for segmentation: explanations from forward passes on randomly masked images.

RISE (Petsiuk et al., BMVC 2018) shows the model ``N`` random smooth masks ``m_i`` of the image
and weighs each mask by how well the model still does; for a segmentation region ``M`` and
class ``c`` the weight is the Dice between the class-``c`` prediction inside ``M`` under the
masked image and under the original one (Hasany et al., 2023, section 3.2)::

    w_i = Dice( [pred(x ⊙ m_i + b ⊙ (1 - m_i)) = c] ∩ M ,  [pred(x) = c] ∩ M )
    S   = sum_i w_i m_i / (N · p)

(``weight="score"`` uses the mean class-``c`` logit over ``M`` instead of the Dice).  Masks:
an ``s × s`` (×s) grid of cells kept with probability ``p`` (a uniform draw, so ``p`` is the
kept share), upsampled bilinearly to ``(s + 1)·cell`` and cropped at a random shift.  Masked
pixels show the baseline ``b``: the image's mean colour, zero, or a blurred image.  RISE needs
no gradients, so it works on any model that runs forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import SegcamError
from .inputs import Logits
from .methods import register

INPUT_BUDGET = 2**26  # floats of masked input per batch (256 MB in float32)
MAX_BATCH = 32  # on 2 CPU cores the default model ran fastest at 8-32 images a batch


def batch_size_for(image: Tensor) -> int:
    """Masked images per forward pass: at most 32, and at most 256 MB of input."""
    return max(1, min(MAX_BATCH, INPUT_BUDGET // image.numel()))


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
    size = [(cells + 1) * c for c in cell]
    mode = "bilinear" if dims == 2 else "trilinear"
    up = F.interpolate(grids, size=size, mode=mode, align_corners=False)[:, 0]
    n = len(grids)
    index: list[Tensor] = [torch.arange(n).reshape(n, *(1,) * dims)]
    for axis, length in enumerate(spatial):  # each mask's window, by advanced indexing
        shape = [n] + [1] * dims
        shape[axis + 1] = length
        index.append((shifts[:, axis, None] + torch.arange(length)).reshape(shape))
    return up[tuple(index)]


def baseline_image(x: Tensor, kind: str) -> Tensor:
    """What masked pixels show: the per-channel mean, zeros, or a box-blurred copy of ``x``."""
    if kind == "mean":
        return x.mean(dim=tuple(range(1, x.ndim)), keepdim=True).expand_as(x)
    if kind == "zero":
        return torch.zeros_like(x)
    pool = F.avg_pool2d if x.ndim == 3 else F.avg_pool3d
    return pool(x[None], 11, stride=1, padding=5, count_include_pad=False)[0]


def dice(a: Tensor, b: Tensor) -> Tensor:
    """Dice of boolean masks along the last axes of ``a (n, *S)`` and ``b (*S)``; 1 if both empty."""
    axes = tuple(range(1, a.ndim))
    inter = (a & b).sum(axes).float()
    total = (a.sum(axes) + b.sum()).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


@register("rise")
@dataclass(frozen=True)
class RISE:
    """RISE for segmentation regions (see the module docstring); needs no layer (``layer=None``).

    ``n_masks``: N; ``cells``: s; ``p``: keep probability; ``seed``; ``weight``: "dice" or
    "score"; ``baseline``: "mean", "zero" or "blur"; ``batch_size``: masked images per forward
    pass (default :func:`batch_size_for`); ``tol``: stop early once
    the normalised map moves less than ``tol`` (max abs) over the last 10% of the masks;
    ``progress(done, total)``: called after every batch.
    """

    perturbation: ClassVar[bool] = True
    uses_input: ClassVar[bool] = True
    name: ClassVar[str] = "rise"

    n_masks: int = 2000
    cells: int = 8
    p: float = 0.5
    seed: int = 0
    weight: str = "dice"
    baseline: str = "mean"
    batch_size: int | None = None
    tol: float | None = None
    progress: Callable[[int, int], None] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.p < 1:
            raise SegcamError(f"p must be between 0 and 1, got {self.p}.")
        if self.n_masks < 1 or self.cells < 1:
            raise SegcamError("n_masks and cells must be positive.")
        if self.weight not in ("dice", "score"):
            raise SegcamError(f"weight must be 'dice' or 'score', got {self.weight!r}.")
        if self.baseline not in ("mean", "zero", "blur"):
            raise SegcamError(f"baseline must be 'mean', 'zero' or 'blur', got {self.baseline!r}.")

    def run(
        self,
        run_model: Callable[[Tensor], Logits],
        image: Tensor,
        classes: Sequence[int],
        regions: Sequence[Tensor],
        original: Tensor,
    ) -> tuple[Tensor, int]:
        """Saliency ``(K, *S)`` for one image ``(C, *S)`` and K (class, region ``(*S)``) targets,
        all from the same masked forward passes; returns it and the number of masks used.

        ``original`` is the model's predicted label map ``(*S)`` on the unmasked image.
        """
        spatial = tuple(image.shape[1:])
        gen = torch.Generator().manual_seed(self.seed)
        grids, shifts = rise_masks(self.n_masks, spatial, self.cells, self.p, gen)
        batch = self.batch_size or batch_size_for(image)
        base = baseline_image(image, self.baseline)
        # only the regions' bounding box of each masked prediction is needed
        union = torch.stack(list(regions)).any(0).nonzero()
        box = (slice(None), slice(None), *(slice(int(lo), int(hi) + 1)
                                            for lo, hi in zip(union.amin(0), union.amax(0))))
        regions = [m[box[2:]] for m in regions]
        wanted = [(original[box[2:]] == c) & m for c, m in zip(classes, regions)]
        total = torch.zeros((len(classes), *spatial), dtype=torch.float64, device=image.device)
        previous, used = None, 0
        every = max(1, self.n_masks // 10)
        next_check = every
        for start in range(0, self.n_masks, batch):
            stop = min(start + batch, self.n_masks)
            masks = render_masks(grids[start:stop], shifts[start:stop], spatial).to(image)
            logits = Logits(run_model(image * masks[:, None] + base * (1 - masks[:, None])).values[box])
            labels = logits.predicted()
            for k, (c, region) in enumerate(zip(classes, regions)):
                if self.weight == "dice":
                    w = dice(labels.eq(c) & region, wanted[k])
                else:
                    w = (logits.of_class(c) * region).flatten(1).sum(1) / region.sum()
                total[k] += torch.tensordot(w.double(), masks.double(), dims=1)
            used = stop
            if self.progress is not None:
                self.progress(used, self.n_masks)
            if self.tol is not None and used >= next_check:
                next_check += every
                peak = total.flatten(1).amax(1).clamp_min(1e-12).reshape(-1, *(1,) * len(spatial))
                current = total / peak
                if previous is not None and float((current - previous).abs().max()) < self.tol:
                    break
                previous = current
        return (total / (used * self.p)).float(), used
