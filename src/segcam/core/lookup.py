"""Finding the layers of one model: by module name, readable name or module; the survey of every
layer from one forward pass; the default layer; token grids.

Names and surveys are cached, and the caches notice a module that was replaced or added since
(a survey is keyed by the input's shape and the model's module tree).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_mapping, check_sizes, check_str, shown
from ..errors import LayerNotFoundError, SegcamError, closest
from .context import INPUT
from .layers import LayerInfo, bottleneck, find_layer, survey
from .model import call_model, device_and_dtype, first_conv, guarded

log = logging.getLogger("segcam")

TokenGrid = Sequence[int] | Mapping[str, Sequence[int]] | None


class LayerLookup:
    """The layers of ``model``; ``layer_names`` maps readable names to module names,
    ``default_layer`` replaces the bottleneck guess, ``token_grid`` fixes token grids (one for
    all token layers, or one per layer name, readable names included)."""

    def __init__(self, model: nn.Module, layer_names: Mapping[str, str] | None, default_layer: str | None,
                 token_grid: TokenGrid, spatial_dims: int | None):
        self.model = model
        self.layer_names = {} if layer_names is None else check_mapping(layer_names, "layer_names")
        self.default_layer = None if default_layer is None else check_str(default_layer, "default_layer")
        self.token_grid = _check_token_grid(token_grid)
        self.spatial_dims = spatial_dims
        self._named: dict[str, nn.Module] = {}
        self._surveys: dict[tuple[Any, ...], list[LayerInfo]] = {}

    def find(self, layer: str | nn.Module) -> tuple[str, nn.Module]:
        """The module name and module for a module name, readable name or module."""
        if isinstance(layer, str):
            layer = self.layer_names.get(layer, layer)
            cached = self._named.get(layer)
            if cached is not None and _submodule(self.model, layer) is cached:
                return layer, cached
        self._named = dict(self.model.named_modules())
        try:
            return find_layer(self.model, layer, self._named)
        except LayerNotFoundError as e:
            if not self.layer_names or not isinstance(layer, str):
                raise
            near = closest(layer, list(self.layer_names), n=3)
            hint = f" Readable names: {', '.join(near or list(self.layer_names)[:6])}."
            raise LayerNotFoundError(str(e) + hint) from None

    def names(self, layer: Any, x: Tensor, allow_input: bool) -> list[str]:
        """Module names of ``layer`` (one, a list, or ``None`` for the default layer of input
        ``x``); ``"<input>"`` passes through when ``allow_input``."""
        if layer is None:
            name = self.default(x[:1])
            log.info("segcam: no layer given, explaining the default layer %r", name)
            return [name]
        items = [layer] if isinstance(layer, (str, nn.Module)) else layer
        if isinstance(items, (bytes, Mapping)) or not isinstance(items, Sequence) or not items:
            raise LayerNotFoundError(
                f"layer must be a layer name, a module of the model, or a non-empty list of them, got {shown(layer)}."
            )
        names = [INPUT if allow_input and item == INPUT else self.find(item)[0] for item in items]
        return list(dict.fromkeys(names))

    def survey(self, x: Tensor | None) -> list[LayerInfo]:
        """Every module with its output's shape and layout for input ``x (1, C, *S)`` (default: a
        zero image of 256², or 64³ for 3-D models), from one guarded forward pass."""
        x = self._dummy_image() if x is None else x
        key = (tuple(x.shape), tuple(map(id, self.model.modules())))
        if key not in self._surveys:
            with guarded(self.model):
                found = survey(self.model, lambda: call_model(self.model, x), x.shape[2:], self.grid_for)
                self._surveys = {**self._surveys, key: found}
        return self._surveys[key]

    def default(self, x: Tensor | None) -> str:
        """The default layer: the one set at construction, else the bottleneck for input ``x``."""
        if self.default_layer is not None:
            return self.find(self.default_layer)[0]
        return bottleneck(self.survey(x))

    def grid_for(self, name: str) -> Sequence[int] | None:
        """The token grid set for module ``name`` (by its name or a readable one), if any."""
        if isinstance(self.token_grid, Mapping):
            readable = [r for r, module in self.layer_names.items() if module == name]
            return next((self.token_grid[k] for k in (name, *readable) if k in self.token_grid), None)
        return self.token_grid

    def not_spatial(self, name: str, shape: tuple[int, ...], x: Tensor) -> str:
        """The message for a layer whose output is neither a map nor tokens on a grid."""
        spatial_layers = [i.name for i in self.survey(x[:1]) if i.explainable]
        near = closest(name, spatial_layers, n=3)
        hint = f" Nearby spatial layers: {', '.join(near)}." if near else ""
        return (
            f"layer {name!r} outputs shape {shape}, which is neither a spatial map "
            f"(B, C, *{tuple(x.shape[2:])}) nor tokens (B, N, C) that fit a grid of the "
            f"input's shape; pass token_grid=(h, w) for tokens or choose another layer.{hint}"
        )

    def _dummy_image(self) -> Tensor:
        found = first_conv(self.model)
        if found is None:
            raise SegcamError("cannot guess the model's input; pass an example: explainer.layers(image).")
        size = (256,) * 2 if (self.spatial_dims or 2) == 2 else (64,) * 3
        device, dtype = device_and_dtype(self.model)
        return torch.zeros((1, found[1].in_channels, *size), device=device, dtype=dtype)


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _check_token_grid(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {check_str(k, "token_grid layer name"): check_sizes(v, f"token_grid[{k!r}]") for k, v in value.items()}
    return check_sizes(value, "token_grid")


def blocks(model: nn.Module, infos: Sequence[LayerInfo]) -> list[str]:
    """The model's blocks in execution order: explainable children of the model, or of its
    module lists and dicts (``stem``, ``downs.0``, ``ups.1``, ``head``)."""
    modules = dict(model.named_modules())

    def is_block(name: str) -> bool:
        parent = name.rpartition(".")[0]
        return not parent or isinstance(modules.get(parent), (nn.ModuleList, nn.ModuleDict))

    return [i.name for i in infos if i.explainable and is_block(i.name)]
