"""The models a server explains: each loaded once, with its explainer and display settings; the
catalogue of them, to which users may add uploaded models (``--allow-model-upload``)."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ... import Explainer, LoadedModel, load_model
from ...errors import SegcamError, closest
from .config import ModelSpec, WebConfig
from .uploads import check_model_size, loading_model, model_upload


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


class Full(SegcamError):
    """A limit that lasts until the server restarts (HTTP 409)."""


class Catalogue:
    """The served models by name, safe to read while users upload more."""

    def __init__(self, config: WebConfig, models: dict[str, Served]):
        self.config = config
        self._models = dict(models)
        self._lock = threading.Lock()
        self._uploads = 0  # uploads started (default names upload-N)
        self._pending = 0  # uploads being loaded

    def all(self) -> list[Served]:
        with self._lock:
            return list(self._models.values())

    def served(self, name: str) -> Served:
        """The model ``name``, or an error naming the served ones."""
        with self._lock:
            found, names = self._models.get(name), list(self._models)
        if found is None:
            near = closest(name, names)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise SegcamError(f"unknown model {name!r}.{hint} Served: {', '.join(names)}.")
        return found

    def upload(self, filename: str, data: bytes, family: str | None, num_classes: int | None,
               name: str | None) -> Served:
        """Serve uploaded safetensors weights (a segcam file naming its architecture, or weights of
        zoo ``family``), never a pickle; the size the file claims is checked on the meta device
        before anything is built.  At most ``config.extra_models`` uploads are kept."""
        with self._lock:
            if len(self._models) - len(self.config.models) + self._pending >= self.config.extra_models:
                raise Full(f"this server already holds {self.config.extra_models} uploaded models, its limit until "
                           "it restarts; serve your model on your own machine with segcam serve --model FILE.")
            self._uploads += 1
            label = name or f"{Path(filename).name.split('.')[0] or 'upload'}-{self._uploads}"
            if label in self._models:
                raise SegcamError(f"a model named {label!r} is already served; upload it under another name.")
            self._pending += 1
        try:
            with model_upload(filename, data, self.config.max_upload_bytes) as path:
                check_model_size(path, family, num_classes, filename)
                with loading_model(filename, path):
                    loaded = load_model(f"zoo:{family}" if family else path, weights=path if family else None,
                                        num_classes=num_classes)
            spec = ModelSpec(spec=f"zoo:{family}" if family else filename, weights=filename if family else None,
                             num_classes=num_classes, name=label)
            served = Served.of(label, spec, loaded)
            with self._lock:
                if label in self._models:
                    raise SegcamError(f"a model named {label!r} is already served; upload it under another name.")
                self._models[label] = served
        finally:
            with self._lock:
                self._pending -= 1
        return served
