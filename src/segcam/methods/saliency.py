"""Input-gradient saliency (Simonyan et al., 2014) for a region score::

    L(u) = max_k |dS/dx_k(u)|        over the input channels k

It explains the image itself, so it takes no layer.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import Context
from .base import Method, register


@register("saliency")
class Saliency(Method):
    """Saliency: L(u) = max over input channels k of |dS/dx_k(u)| (no layer)."""

    on_input = True

    def explain(self, ctx: Context, layer: str) -> Tensor:
        return ctx.gradient(layer).abs().amax(dim=2)
