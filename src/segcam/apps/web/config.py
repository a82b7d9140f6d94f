"""What a ``segcam serve`` server is allowed to do: models, limits, memory.

Every field is checked when the object is made, so a bad command-line value stops the server
before it starts, with a message naming the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...data import DEFAULT_MAX_PIXELS
from ...errors import SegcamError

MB = 2**20
WORK_LIMITS = {"n_masks": 20_000, "cells": 64, "batch_size": 256}  # largest value of these method options


@dataclass(frozen=True)
class ModelSpec:
    """A model to serve: a spec as the CLI takes it (``default``, ``zoo:NAME``, a path …)."""

    spec: str = "default"
    weights: str | None = None
    num_classes: int | None = None
    name: str | None = None  # shown in the page; default: the spec


@dataclass(frozen=True)
class WebConfig:
    """Limits of one server.

    ``max_upload_bytes`` caps a request body (uploads: 25 MB); ``max_pixels`` the spatial size of
    an uploaded image or volume, read from its header before anything is decoded;
    ``max_model_pixels`` that of what a model is asked to explain (after its preprocessing);
    ``cache_bytes`` the memory of what is kept for all sessions — pictures (at most half),
    forward passes, results, hover tables — least recently used dropped first; ``max_sessions`` the sessions kept (oldest dropped); ``max_images`` and
    ``max_results`` what one session keeps; ``max_jobs`` long explanations running at once;
    ``hover_bytes`` the largest precomputed table for maps that follow the cursor;
    ``work_limits`` the largest value of method options that set how much work one request may
    ask for (by option name, whatever the method: ``n_masks``, ``cells``, ``batch_size``).
    """

    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    max_upload_bytes: int = 25 * MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_model_pixels: int = 2**20  # what one model input may hold (1024², or about 100³)
    cache_bytes: int = 1024 * MB
    max_sessions: int = 64
    max_images: int = 8
    max_results: int = 32
    max_jobs: int = 2
    allow_model_upload: bool = False
    hover_bytes: int = 64 * MB  # largest precomputed hover table (see hover.py)
    extra_models: int = 4  # uploaded models kept at most (with --allow-model-upload)
    work_limits: Mapping[str, int] = field(default_factory=lambda: dict(WORK_LIMITS))

    def __post_init__(self) -> None:
        if not isinstance(self.models, tuple) or not self.models or \
                not all(isinstance(m, ModelSpec) for m in self.models):
            raise SegcamError("WebConfig.models must be a non-empty tuple of ModelSpec; serve at least one model.")
        names = [m.name or m.spec for m in self.models]
        if len(set(names)) != len(names):
            raise SegcamError(f"two served models share a name ({names}); give each --model a distinct name "
                              "with NAME=SPEC.")
        for name in ("max_upload_bytes", "max_pixels", "max_model_pixels", "cache_bytes", "max_sessions",
                     "max_images", "max_results", "max_jobs", "extra_models", "hover_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SegcamError(f"WebConfig.{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.work_limits, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in self.work_limits.items()):
            raise SegcamError(f"WebConfig.work_limits maps option names to positive integers, got {self.work_limits!r}.")
        if not isinstance(self.allow_model_upload, bool):
            raise SegcamError(f"WebConfig.allow_model_upload must be True or False, got {self.allow_model_upload!r}.")
