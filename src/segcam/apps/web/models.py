"""The models a server explains: each loaded once, with its explainer and display settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ... import Explainer, LoadedModel, load_model
from .config import ModelSpec


@dataclass
class Served:
    """One served model: ``name`` (as the page shows it), how it was loaded, its explainer."""

    name: str
    spec: ModelSpec
    loaded: LoadedModel
    explainer: Explainer

    @classmethod
    def load(cls, spec: ModelSpec) -> Served:
        loaded = load_model(spec.spec, weights=spec.weights, num_classes=spec.num_classes)
        return cls.of(spec.name or spec.spec, spec, loaded)

    @classmethod
    def of(cls, name: str, spec: ModelSpec, loaded: LoadedModel) -> Served:
        return cls(name, spec, loaded, Explainer.from_loaded(loaded))

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def dims(self) -> int:
        return self.explainer.spatial_dims

    def preprocess(self, raw: Tensor) -> Tensor:
        return self.loaded.preprocess(raw)

    def display(self, raw: Tensor) -> Tensor:
        """``raw`` at the model's input size, not normalised: what the page draws."""
        return dataclasses.replace(self.loaded.preprocess, mean=None, std=None, channels=None)(raw)

    def display_shape(self, raw: Tensor) -> tuple[int, ...]:
        size = self.loaded.preprocess.size
        return tuple(size) if size is not None else tuple(raw.shape[1:])

    def class_names(self, n_classes: int) -> list[str]:
        names = self.explainer.class_names
        return list(names) if names else [f"class {i}" for i in range(n_classes)]

    def info(self) -> dict[str, Any]:
        pre = self.loaded.preprocess
        return {"name": self.name, "spec": self.spec.spec, "family": self.loaded.family, "dims": self.dims,
                "in_channels": pre.channels, "size": list(pre.size) if pre.size else None,
                "class_names": self.explainer.class_names, "source": self.loaded.source}
