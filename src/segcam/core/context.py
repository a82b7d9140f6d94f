"""The forward pass and the context every method is written against.

:func:`run_forward` runs the model once under the guard, capturing the layers to explain, and
returns a :class:`Forward`.  A :class:`Context` wraps a forward and its resolved targets and is
all a method sees: the targets and their scores, the activations, the gradients of every
target's score at every explained layer (computed on first request, all layers and all targets
from one graph), a guarded forward of modified inputs, the region score, and a progress report.
"""

from __future__ import annotations

import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import LayerError, ModelError, SegcamError, SegcamWarning
from .capture import Capture
from .layers import Layout, layout_of
from .logits import Logits, logits_at_input_size, read_logits
from .model import call_model, guarded
from .target import ResolvedTarget

INPUT = "<input>"  # the pseudo-layer of methods whose map is over the input's pixels
INPUT_BUDGET = 2**26  # floats of modified input per forward pass (256 MB in float32)
MAX_BATCH = 32  # on 2 CPU cores the default model ran fastest at 8-32 images a batch
BACKWARDS = ("auto", "loop", "batched")

Progress = Callable[[int, int], None]


def batch_size_for(image: Tensor) -> int:
    """Modified copies of ``image (C, *S)`` per forward pass: at most 32, at most 256 MB of input."""
    return max(1, min(MAX_BATCH, INPUT_BUDGET // max(1, image.numel())))


@dataclass
class Forward:
    """One forward pass: the input, its logits at the input's size, and the captured layers.

    When ``recorded`` it holds the autograd graph from the captured layers to the logits, so it
    can be explained again for other targets at the cost of a backward pass only (keep it with
    :meth:`segcam.Explainer.forward`; drop it to free the memory).
    """

    image: Tensor
    batched: bool
    logits: Logits
    activations: dict[str, Tensor]
    layouts: dict[str, Layout]
    recorded: bool
    seconds: float = 0.0
    model: weakref.ref[nn.Module] | None = field(default=None, repr=False)  # the model that ran it

    @cached_property
    def predicted(self) -> Tensor:
        """``(B, *S)`` predicted labels (computed on first use)."""
        return self.logits.predicted()

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.image.shape[2:])

    @property
    def layers(self) -> list[str]:
        return list(self.activations)


def run_forward(
    model: nn.Module,
    image: Tensor,
    batched: bool,
    modules: Mapping[str, nn.Module],
    *,
    record: bool,
    with_input: bool = False,
    extract: Callable[[Any], Any] | None = None,
    token_grid: Callable[[str], Sequence[int] | None] = lambda name: None,
) -> Forward:
    """Run ``model`` on ``image (B, C, *S)`` once, capturing ``modules`` (name → module).

    ``record`` keeps the autograd graph from the captured layers (and, ``with_input``, from the
    input itself, as pseudo-layer :data:`INPUT`) to the logits; otherwise nothing is recorded.
    """
    start = time.perf_counter()
    capture = Capture(modules, record=record)
    with guarded(model), capture.hooks(), torch.set_grad_enabled(record):
        x = image.detach().requires_grad_(True) if record and with_input else image
        logits = logits_at_input_size(read_logits(call_model(model, x), extract), x)
    activations: dict[str, Tensor] = {INPUT: x} if with_input else {}
    layouts = {INPUT: Layout("spatial", tuple(x.shape[2:]))} if with_input else {}
    for name in modules:
        if name in capture.problems:
            raise LayerError(f"layer {name!r} cannot be explained: {capture.problems[name]}.")
        if capture.calls[name] == 0:
            raise LayerError(
                f"layer {name!r} did not run during the forward pass; pick a layer the model uses "
                "(see explainer.layers())."
            )
        act = capture.activations[name]
        layout = layout_of(act, x.shape[2:], token_grid(name))
        if layout is None:
            raise NotSpatial(name, tuple(act.shape))
        channels = act.shape[1] if layout.kind == "spatial" else act.shape[-1]
        if channels == 0 or 0 in layout.grid:
            raise LayerError(
                f"layer {name!r} outputs an empty tensor of shape {tuple(act.shape)} (no channels or "
                "no cells), so there is nothing to explain there; choose another layer (see explainer.layers())."
            )
        activations[name], layouts[name] = act, layout
    return Forward(image.detach(), batched, logits, activations, layouts, record, time.perf_counter() - start,
                   weakref.ref(model))


class NotSpatial(LayerError):
    """A captured layer whose output is neither a spatial map nor tokens on a grid; the
    explainer completes the message with nearby spatial layers."""

    def __init__(self, name: str, shape: tuple[int, ...]):
        super().__init__(name, shape)
        self.name, self.shape = name, shape


@dataclass
class Context:
    """What a method sees while it explains one forward pass for several targets.

    ``targets`` are resolved (class index, region mask ``(B, *S)``, score per image); ``layers``
    are the layers being explained.  ``runner(images, record)`` runs the model on modified
    inputs under the guard (recording a graph from the inputs when ``record``).
    """

    forward: Forward
    targets: list[ResolvedTarget]
    layers: list[str]
    runner: Callable[[Tensor, bool], Logits]
    method: str = ""
    backward: str = "auto"
    retain: bool = False
    progress: Progress | None = None
    seconds: dict[str, float] = field(default_factory=lambda: {"backward": 0.0, "modified_inputs": 0.0})
    passes: int = 0  # modified inputs run through the model
    notes: dict[str, Any] = field(default_factory=dict)  # facts a method reports (JSON values)
    _gradients: dict[str, Tensor] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ what was run
    @property
    def image(self) -> Tensor:
        """The input ``(B, C, *S)``."""
        return self.forward.image

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.forward.spatial

    @property
    def logits(self) -> Logits:
        return self.forward.logits

    @property
    def predicted(self) -> Tensor:
        return self.forward.predicted

    def activation(self, layer: str) -> Tensor:
        """The layer's activation as a map ``(B, K, *grid)`` (float, detached); for
        :data:`INPUT` the image itself."""
        self._check_layer(layer)
        return self.forward.layouts[layer].to_map(self.forward.activations[layer].detach()).float()

    def gradient(self, layer: str) -> Tensor:
        """``dS_t/dA`` of every target ``t`` at ``layer``, ``(T, B, K, *grid)``.

        The first request computes the gradients at every explained layer for every target
        from one recorded graph (one backward pass per target, or one vmapped backward).
        """
        self._check_layer(layer)
        if self._gradients is None:
            if not self.forward.recorded:
                raise SegcamError(
                    f"method {self.method!r} asked for gradients but declares gradients = False, so the "
                    "forward pass recorded none; set gradients = True on the method class."
                )
            start = time.perf_counter()
            acts = [self.forward.activations[name] for name in self.layers]
            grads = gradients([t.score.sum() for t in self.targets], acts, self.retain, self.backward)
            self._gradients = {}
            for name, grad in zip(self.layers, grads):
                grad = self.forward.layouts[name].to_map(grad).float()
                self._warn_if_zero(grad, name)
                self._gradients[name] = grad
            self.seconds["backward"] += time.perf_counter() - start
        return self._gradients[layer]

    # ------------------------------------------------------------------ running variants
    def run(self, images: Tensor, image: int) -> Logits:
        """The model's logits for ``images (N, C, *S)``, modified copies of batch image
        ``image``, from a guarded forward pass that records nothing.  Non-finite logits inside
        any target's region raise a :class:`ModelError`."""
        start = time.perf_counter()
        logits = self._checked(self.runner(images, False), image)
        self.seconds["modified_inputs"] += time.perf_counter() - start
        self.passes += len(images)
        return logits

    def input_gradient(self, images: Tensor, image: int) -> Tensor:
        """``dS_t/dx`` of every target's region score for modified copies ``x`` of batch image
        ``image``: ``(T, N, C, *S)``, from one guarded forward pass recording a graph from the
        inputs only (parameters stay frozen) and one backward pass per target.  For methods that
        follow the input's gradient along a path or under noise (integrated gradients, SmoothGrad)."""
        start = time.perf_counter()
        x = images.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self._checked(self.runner(x, True), image)
            scores = [t.score_of(logits, image).sum() for t in self.targets]
            grads = [torch.autograd.grad(s, x, retain_graph=k < len(scores) - 1, allow_unused=True)[0]
                     for k, s in enumerate(scores)]
        self.seconds["modified_inputs"] += time.perf_counter() - start
        self.passes += len(images)
        return torch.stack([torch.zeros_like(x) if g is None else g for g in grads]).detach()

    def _checked(self, logits: Logits, image: int) -> Logits:
        if not bool(torch.isfinite(logits.values[:, :, self._union(image)].detach()).all()):
            raise ModelError(
                f"the model returned non-finite logits (NaN or inf) inside the explained region for an "
                f"input modified by {self.method!r}; check the model on such inputs (e.g. a zero or mean "
                "baseline) or choose another baseline."
            )
        return logits

    def batch_size(self, requested: int | None = None) -> int:
        """Modified inputs per forward pass: ``requested``, else :func:`batch_size_for`."""
        return requested or batch_size_for(self.image[0])

    def report(self, done: int, total: int) -> None:
        """Tell the caller's progress callback how far the method is (it may raise to cancel)."""
        if self.progress is not None:
            self.progress(done, total)

    # ------------------------------------------------------------------ helpers
    @cached_property
    def _unions(self) -> Tensor:
        return torch.stack([t.region for t in self.targets]).any(0)

    def _union(self, image: int) -> Tensor:
        return self._unions[image]

    def _check_layer(self, layer: str) -> None:
        if layer not in self.layers:
            raise SegcamError(f"layer {layer!r} is not being explained here (layers: {self.layers}).")

    def _warn_if_zero(self, grad: Tensor, layer: str) -> None:
        flat = grad.flatten(1)
        for k, t in enumerate(self.targets):
            if not bool(flat[k].any()):
                warnings.warn(
                    f"the score of {t.target.describe()} does not depend on layer {layer!r} (its "
                    "gradient there is zero), so its map is all zero; pick a layer between the "
                    "input and the logits of that region.",
                    SegcamWarning,
                    stacklevel=2,
                )


def gradients(scores: list[Tensor], acts: list[Tensor], retain: bool, backward: str) -> list[Tensor]:
    """``dS_k/dA`` for every score ``S_k`` and activation ``A``, each stacked as ``(K, *A.shape)``.

    ``backward="batched"`` runs one vmapped backward (``is_grads_batched``) over the K scores;
    ``"loop"`` runs K backward passes over the retained graph; ``"auto"`` loops on the CPU, where
    it measured faster (see benchmarks/), and batches elsewhere.
    """
    k = len(scores)

    def zeros(a: Tensor) -> Tensor:
        return torch.zeros((k, *a.shape), dtype=a.dtype, device=a.device)

    if not any(s.requires_grad for s in scores):
        return [zeros(a) for a in acts]
    if backward == "auto":
        backward = "loop" if acts[0].device.type == "cpu" else "batched"
    grads: tuple[Tensor | None, ...] | None = None
    if k == 1:
        grads = torch.autograd.grad(scores[0], acts, retain_graph=retain, allow_unused=True)
        grads = tuple(None if g is None else g.unsqueeze(0) for g in grads)
    elif backward == "batched":
        stacked = torch.stack(scores)
        eye = torch.eye(k, dtype=stacked.dtype, device=stacked.device)
        try:
            grads = torch.autograd.grad(stacked, acts, grad_outputs=eye, retain_graph=True,
                                        allow_unused=True, is_grads_batched=True)
        except RuntimeError:  # an op without a batching rule: fall back to the loop
            grads = None
    if grads is None:
        rows = [torch.autograd.grad(s, acts, retain_graph=retain or i < k - 1, allow_unused=True)
                for i, s in enumerate(scores)]
        grads = tuple(None if rows[0][i] is None else torch.stack([r[i] for r in rows]) for i in range(len(acts)))
    return [zeros(a) if g is None else g for a, g in zip(acts, grads)]
