"""How a heatmap's mass falls on evidence whose truth is known (segcam's synthetic scenes).

For a non-negative heatmap ``h`` and an evidence mask ``E``::

    share(E) = sum(h · E) / sum(h)          uniform(E) = |E| / N          lift(E) = share / uniform

``lift`` 1 means no better than a uniform map.  The evidence of an object in a scene
(:meth:`segcam.data.Scene.evidence`) is its own pixels (``object``), the cue that decides its
label (``context``), the bias tile (``bias``) and the distractors; ``true`` is object + cue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import SegcamError

EVIDENCE_KEYS = ("object", "context", "bias", "distractors")


def evidence_score(heatmap: Tensor | np.ndarray, evidence: Mapping[str, Any]) -> dict[str, float]:
    """``share_*``, ``uniform_*`` and ``lift_*`` for true (object + cue), object, context, bias
    and distractors.  An all-zero heatmap has no mass to place: its shares are NaN."""
    h = _tensor(heatmap, torch.float64)
    missing = [k for k in EVIDENCE_KEYS if k not in evidence]
    if missing:
        raise SegcamError(f"evidence lacks {', '.join(missing)}; pass scene.evidence(k) or scene.class_evidence(c).")
    masks = {k: _tensor(evidence[k], torch.bool).to(h.device) for k in EVIDENCE_KEYS}
    for name, m in masks.items():
        if m.shape != h.shape:
            raise SegcamError(f"evidence {name!r} has shape {tuple(m.shape)} but the heatmap {tuple(h.shape)}.")
    if not bool(torch.isfinite(h).all()):
        raise SegcamError("the heatmap has non-finite values; pass an explanation's heatmap (values in [0, 1]).")
    h = h.clamp_min(0)
    total, n = float(h.sum()), h.numel()
    scores: dict[str, float] = {}
    for name, m in {"true": masks["object"] | masks["context"], **masks}.items():
        share = float((h * m).sum()) / total if total > 0 else float("nan")
        uniform = float(m.sum()) / n
        scores[f"share_{name}"] = share
        scores[f"uniform_{name}"] = uniform
        scores[f"lift_{name}"] = share / uniform if uniform > 0 else float("nan")
    return scores


def pointing_game(heatmap: Tensor | np.ndarray, evidence: Tensor | np.ndarray) -> float:
    """Is the map's maximum on the evidence?  The share of the map's maximal pixels that lie in
    ``evidence`` (1 or 0 when the maximum is unique; a tie is split rather than decided by
    scan order).  An all-zero map points nowhere: 0."""
    h = _tensor(heatmap, torch.float64)
    e = _tensor(evidence, torch.bool).to(h.device)
    if e.shape != h.shape:
        raise SegcamError(f"evidence has shape {tuple(e.shape)} but the heatmap {tuple(h.shape)}; give masks of the map's shape.")
    if not bool(torch.isfinite(h).all()):
        raise SegcamError("the heatmap has non-finite values; pass an explanation's heatmap (values in [0, 1]).")
    peak = h.max()
    if peak <= 0:
        return 0.0
    top = h == peak
    return float((top & e).sum()) / float(top.sum())


def _tensor(value: Tensor | np.ndarray, dtype: torch.dtype) -> Tensor:
    """A map or mask as a tensor of ``dtype`` (arrays converted, tensors kept on their device)."""
    return torch.as_tensor(value if isinstance(value, Tensor) else np.asarray(value), dtype=dtype)
