"""Score-CAM (Wang et al., 2020) for a region score: channel weights from forward passes.

Each channel's map ``A_k``, upsampled to the input and scaled to [0, 1] (``H_k``), masks the
image; the region score of the masked image ``x ⊙ H_k`` gives ``s_k``, and ::

    W_k = softmax_k(s_k)          L = sum_k W_k A_k

(the paper subtracts the baseline image's score from every ``s_k``; being the same for every
channel, it cancels in the softmax).  The score honours the target's ``reduce``: with the
default ``"sum"`` over a large region the scores are large and the softmax picks one channel;
``reduce="mean"`` keeps them on the logits' scale.  One forward pass per channel, in batches.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import Context
from ..spatial import resize
from .base import Method, register
from .options import Int, Optional, option


@register("score-cam")
class ScoreCAM(Method):
    """Score-CAM: W_k = softmax over channels of the region score of the image masked by A_k."""

    gradients = False
    batch_size: int | None = option(None, Optional(Int(low=1), "automatic"),
                                    "masked images per forward pass")

    def explain(self, ctx: Context, layer: str) -> Tensor:
        act = ctx.activation(layer)
        b, k = act.shape[:2]
        up = resize(act, ctx.spatial).flatten(2)  # (B, K, N)
        lo, hi = up.amin(2, keepdim=True), up.amax(2, keepdim=True)
        scaled = torch.where(hi > lo, (up - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(up))
        scaled = scaled.reshape(b, k, *ctx.spatial)
        step = ctx.batch_size(self.batch_size)
        scores = torch.zeros((len(ctx.targets), b, k), dtype=torch.float64, device=act.device)
        for i in range(b):
            for start in range(0, k, step):
                masked = ctx.image[i] * scaled[i, start:start + step, None]
                logits = ctx.run(masked, i)
                for t, target in enumerate(ctx.targets):
                    scores[t, i, start:start + step] = target.score_of(logits, i).double()
                ctx.report(i * k + min(start + step, k), b * k)
        weights = torch.softmax(scores, dim=-1).to(act.dtype)  # (T, B, K)
        return (weights.reshape(*weights.shape, *(1,) * (act.ndim - 2)) * act).sum(2)
