"""Tiny hand-built models whose explanations can be derived by hand, shared by the tests."""

from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor, nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


class LinearSeg(nn.Module):
    """``logits = W_head · (W_feat · x)`` with 1×1 convolutions: every gradient is known.

    With the layer ``features`` giving ``A = W_feat x``, the score ``S = sum_{p in M} y_c(p)``
    has ``dS/dA_k(p) = W_head[c, k] · [p in M]``.
    """

    def __init__(self, w_feat: Tensor, w_head: Tensor, dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.features = conv(w_feat.shape[1], w_feat.shape[0], 1, bias=False)
        self.head = conv(w_head.shape[1], w_head.shape[0], 1, bias=False)
        shape = (1,) * dims
        with torch.no_grad():
            self.features.weight.copy_(w_feat.reshape(*w_feat.shape, *shape))
            self.head.weight.copy_(w_head.reshape(*w_head.shape, *shape))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def linear_seg(in_ch: int = 2, feat: int = 3, classes: int = 4, dims: int = 2, seed: int = 0) -> LinearSeg:
    gen = torch.Generator().manual_seed(seed)
    return LinearSeg(
        torch.randn(feat, in_ch, generator=gen), torch.randn(classes, feat, generator=gen), dims
    ).eval()


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
