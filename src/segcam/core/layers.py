"""Find, survey and capture the layers whose activations are explained.

A layer's output may be a spatial map ``(B, C, *s)``, a token sequence ``(B, N, C)`` (ViT,
SegFormer, UNETR) or a tuple/list/dict holding one of those (the first tensor is used).
Tokens are laid out on a grid ``s`` inferred from ``N`` and the input's shape: the grid must
have the input's aspect ratio (up to rounding) and any leading extra tokens (class or
distillation tokens) are dropped.  ``token_grid=(h, w)`` overrides the inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import LayerError, LayerNotFoundError, closest
from .capture import main_tensor

MAX_EXTRA_TOKENS = 8


def find_layer(
    model: nn.Module, layer: str | nn.Module, modules: Mapping[str, nn.Module] | None = None
) -> tuple[str, nn.Module]:
    """Resolve a layer given by qualified name or by module object (``modules``: a cached
    ``dict(model.named_modules())``)."""
    modules = dict(model.named_modules()) if modules is None else modules
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer and name:
                return name, module
        raise LayerNotFoundError(
            f"the module {type(layer).__name__} is not part of the model; pass a submodule of "
            "the model or its name (see explainer.layers())."
        )
    if not isinstance(layer, str):
        raise LayerNotFoundError(
            f"a layer is given by its name (a str) or as the module itself, got {layer!r} "
            f"({type(layer).__name__}); see explainer.layers() or `segcam layers` for the names."
        )
    if layer and layer in modules:
        return layer, modules[layer]
    near = closest(layer, modules)
    hint = f" Closest names: {', '.join(near)}." if near else ""
    raise LayerNotFoundError(
        f"the model has no layer named {layer!r}.{hint} List them with explainer.layers() "
        "or `segcam layers`."
    )


def _divisor_grids(n: int, dims: int) -> Iterator[tuple[int, ...]]:
    if dims == 1:
        yield (n,)
        return
    for first in range(1, n + 1):
        if n % first == 0:
            for rest in _divisor_grids(n // first, dims - 1):
                yield (first, *rest)


def _fits(grid: Sequence[int], spatial: Sequence[int]) -> bool:
    """True if one stride ``s`` and one rounding rule give ``grid`` from ``spatial`` on every axis.

    ``g = floor(S / s)``, ``ceil(S / s)`` or ``round(S / s)``: each rule bounds ``s`` to an
    interval per axis, and the grid fits if the intervals of some rule overlap (a single
    shared end point does not count: the intervals are half-open).
    """
    bounds = {
        "floor": [(size / (g + 1), size / g) for g, size in zip(grid, spatial)],
        "ceil": [(size / g, size / (g - 1) if g > 1 else math.inf) for g, size in zip(grid, spatial)],
        "round": [(size / (g + 0.5), size / (g - 0.5)) for g, size in zip(grid, spatial)],
    }
    for intervals in bounds.values():
        low = max(lo for lo, _ in intervals)
        high = min(hi for _, hi in intervals)
        if low < high and not math.isclose(low, high):
            return True
    return False


def infer_grid(n_tokens: int, spatial: Sequence[int]) -> tuple[tuple[int, ...], int] | None:
    """``(grid, n_extra)`` for ``n_tokens`` tokens of an input of size ``spatial``, or None.

    Tries 0, 1, ... leading extra tokens and returns the first token count that factors into
    a grid of the input's aspect ratio (e.g. 197 tokens of a 224×224 input: 1 class token
    and a 14×14 grid).
    """
    for extra in range(min(MAX_EXTRA_TOKENS, n_tokens - 1) + 1):
        n = n_tokens - extra
        fits = [g for g in _divisor_grids(n, len(spatial)) if _fits(g, spatial)]
        if fits:
            def aspect_error(g: tuple[int, ...]) -> float:
                return sum(abs(math.log(g[i] / g[0]) - math.log(spatial[i] / spatial[0]))
                           for i in range(len(g)))
            return min(fits, key=aspect_error), extra
    return None


@dataclass(frozen=True)
class Layout:
    """How a layer's main tensor maps onto a spatial feature map ``(B, C, *grid)``."""

    kind: str  # "spatial" | "tokens"
    grid: tuple[int, ...]
    extra_tokens: int = 0

    def to_map(self, t: Tensor) -> Tensor:
        """``(B, C, *grid)`` view of the layer's tensor (or of its gradient, which has its shape)."""
        if self.kind == "spatial":
            return t
        tokens = t[..., self.extra_tokens:, :]
        lead = tokens.shape[:-2]
        return tokens.transpose(-1, -2).reshape(*lead, tokens.shape[-1], *self.grid)


def layout_of(
    t: Tensor, spatial: Sequence[int], token_grid: Sequence[int] | None = None
) -> Layout | None:
    """The layout of a layer output ``t`` for an input of spatial size ``spatial``, or None."""
    dims = len(spatial)
    if t.ndim == dims + 2:
        return Layout("spatial", tuple(t.shape[2:]))
    if t.ndim == 3:
        n = t.shape[1]
        if token_grid is not None:
            grid = tuple(int(g) for g in token_grid)
            if len(grid) != dims or not 0 <= n - math.prod(grid) <= MAX_EXTRA_TOKENS:
                return None  # the grid must account for all tokens but a few leading extra ones
            return Layout("tokens", grid, n - math.prod(grid))
        found = infer_grid(n, spatial)
        if found is not None:
            return Layout("tokens", found[0], found[1])
    return None


@dataclass(frozen=True)
class LayerInfo:
    """One module as seen in a forward pass: name, type, output shape and spatial layout."""

    name: str
    type: str
    shape: tuple[int, ...] | None
    layout: Layout | None
    calls: int
    plain: bool = True  # the output is a bare tensor (not a tuple, list or dict)

    @property
    def explainable(self) -> bool:
        return self.layout is not None

    def __str__(self) -> str:
        shape = "-" if self.shape is None else "×".join(map(str, self.shape))
        if self.layout is None:
            grid = "(not spatial)"
        elif self.layout.kind == "tokens":
            extra = f" +{self.layout.extra_tokens} extra" if self.layout.extra_tokens else ""
            grid = "tokens → " + "×".join(map(str, self.layout.grid)) + extra
        else:
            grid = "×".join(map(str, self.layout.grid))
        calls = f"  (called {self.calls}×, last call used)" if self.calls > 1 else ""
        return f"{self.name:<40} {self.type:<22} {shape:<22} {grid}{calls}"


def survey(
    model: nn.Module,
    run: Callable[[], Any],
    spatial: Sequence[int],
    token_grid: Callable[[str], Sequence[int] | None] = lambda name: None,
) -> list[LayerInfo]:
    """Every named module of ``model`` with its output's shape and layout, from one forward.

    ``run`` is a zero-argument callable running the model (so the caller controls the guard);
    ``token_grid(name)`` gives a layer's token grid when it must not be inferred.
    Modules are listed in the order their forwards finished; modules that did not run are last.
    """
    seen: dict[str, tuple[tuple[int, ...] | None, Tensor | None, bool]] = {}
    calls: dict[str, int] = {}
    order: list[str] = []
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            t, _ = main_tensor(output)
            seen[name] = (None if t is None else tuple(t.shape), t, isinstance(output, Tensor))
            calls[name] = calls.get(name, 0) + 1
            if name in order:
                order.remove(name)
            order.append(name)
        return hook

    modules = dict(model.named_modules())
    try:
        for name, module in modules.items():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    infos = []
    for name in order + [n for n in modules if n and n not in seen]:
        shape, t, plain = seen.get(name, (None, None, True))
        layout = None
        if t is not None and t.is_floating_point():
            layout = layout_of(t, spatial, token_grid(name))
        infos.append(LayerInfo(name, type(modules[name]).__name__, shape, layout,
                               calls.get(name, 0), plain))
    return infos


def bottleneck(infos: Sequence[LayerInfo]) -> str:
    """The default layer: the lowest-resolution feature map (the papers' bottleneck).

    Among explainable layers with the fewest grid cells, take those with the most channels,
    then layers returning a bare tensor (rather than a dict or tuple holding it), then the one
    that finished last (the end of the encoder; a container finishes after its last child,
    so a block is preferred to its final conv).  Globally pooled 1×1 maps (squeeze-excitation,
    ASPP image pooling) are not feature maps and are skipped.
    """
    ranked = []
    for pos, info in enumerate(infos):
        if info.layout is None or info.shape is None or info.calls == 0:
            continue
        if math.prod(info.layout.grid) == 1:
            continue
        channels = info.shape[1] if info.layout.kind == "spatial" else info.shape[-1]
        ranked.append((math.prod(info.layout.grid), -channels, not info.plain, -pos, info))
    if not ranked:
        raise LayerError(
            "no layer of the model outputs a spatial map or a token sequence; pass layer=... "
            "explicitly (and token_grid=... for tokens)."
        )
    ranked.sort(key=lambda r: r[:4])
    return ranked[0][-1].name
