"""Tiny hand-built models whose explanations can be derived by hand, shared by the tests
(importable as ``helpers`` because pyproject puts ``tests/`` on the path)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import torch
from torch import Tensor, nn


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


def snapshot(model: nn.Module) -> dict:
    """Everything segcam must leave as it was.  Hooks are compared as sets rather than counted:
    transformers 5 installs output-capturing hooks of its own on a model's first forward."""
    return {
        "modes": {n: m.training for n, m in model.named_modules()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": {n: [list(d) for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks,
                                         m._backward_pre_hooks)] for n, m in model.named_modules()},
    }


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def assert_untouched(model: nn.Module, before: dict) -> None:
    """Modes, ``requires_grad`` flags, hooks, gradients and weights exactly as in ``before``."""
    after = snapshot(model)
    assert after["modes"] == before["modes"]
    assert after["flags"] == before["flags"]
    assert after["hooks"] == before["hooks"]
    for name, grad in before["grads"].items():
        now = after["grads"][name]
        assert (grad is None and now is None) or torch.equal(grad, now), name
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key  # bit-identical weights and BN stats


def blank_png(path: Path, width: int, height: int) -> Path:
    """A black 1-bit PNG (Pillow mode "1") written row by row: kilobytes on disk, however large."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row, packer = bytes(1 + (width + 7) // 8), zlib.compressobj(9)  # filter byte + packed bits
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path
