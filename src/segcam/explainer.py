"""The engine: one forward pass, gradients of region scores at chosen layers, CAM maps.

Data flow: image → guarded forward with capture hooks → logits at input size → region mask
and score per target → ``torch.autograd.grad`` of the scores with respect to the captured
activations only → method weights → ReLU → normalised map at the layer and at the input size.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import (
    ImageError,
    LayerError,
    LayerNotFoundError,
    ModelError,
    SegcamError,
    SegcamWarning,
    closest,
)
from .inputs import (
    CONV_TYPES,
    Logits,
    as_batch,
    first_conv,
    guess_spatial_dims,
    logits_at_input_size,
    model_device_dtype,
    read_logits,
)
from .layers import Capture, LayerInfo, Layout, bottleneck, find_layer, layout_of, survey
from .methods import get_method
from .perturbation import batch_size_for
from .regions import RegionContext
from .safety import guarded
from .targets import Target, class_index, region_scores

log = logging.getLogger("segcam")

INPUT = "<input>"  # the pseudo-layer of methods that explain the input itself (saliency)

LayerArg = str | nn.Module | Sequence[str | nn.Module] | None
TargetArg = Target | int | str


@dataclass
class Forward:
    """A forward pass kept for re-targeting: explaining it again costs only a backward pass.

    Holds the autograd graph from the captured layers to the logits; drop it to free memory.
    """

    image: Tensor
    batched: bool
    logits: Logits
    activations: dict[str, Tensor]
    layouts: dict[str, Layout]

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


@dataclass
class Explanation:
    """One explained target at one layer.

    ``map`` is ``(B, *S)`` in [0, 1] at the input's size, ``layer_map`` the same at the layer's
    grid, ``raw`` the signed map before ReLU and normalisation (layer grid), ``region`` the
    boolean mask ``M`` that was scored and ``score`` the score per image.
    """

    map: Tensor
    layer_map: Tensor
    raw: Tensor
    region: Tensor
    score: Tensor
    target: Target
    cls: int
    layer: str
    method: str
    options: dict[str, Any]
    batched: bool

    @cached_property
    def heatmap(self) -> np.ndarray:
        """float32 numpy map in [0, 1] of the input's spatial shape (``(B, *S)`` if batched)."""
        m = self.map.detach().float().cpu().numpy()
        return m if self.batched else m[0]

    def __repr__(self) -> str:
        return (
            f"Explanation(method={self.method!r}, layer={self.layer!r}, target={self.target!r}, "
            f"shape={tuple(self.map.shape)})"
        )


def normalise(x: Tensor) -> Tensor:
    """Divide each map of ``x (N, *s)`` by its maximum; maps with no positive value become 0."""
    peak = x.flatten(1).amax(1).reshape(-1, *([1] * (x.ndim - 1)))
    return torch.where(peak > 0, x / peak.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def upsample(x: Tensor, size: Sequence[int]) -> Tensor:
    """Resize maps ``(N, *s)`` to ``size`` (bilinear / trilinear, corners not aligned)."""
    if tuple(x.shape[1:]) == tuple(size):
        return x
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(x.unsqueeze(1), size=tuple(size), mode=mode, align_corners=False)[:, 0]


class Explainer:
    """Explain a segmentation model's decisions for classes over regions of its output.

    >>> explainer = Explainer(model)                                   # doctest: +SKIP
    >>> exp = explainer.explain(image, Target(3, regions.pixel(120, 64)),
    ...                         method="seg-xres-cam", window=2)       # doctest: +SKIP

    ``class_names`` lets targets name classes; ``spatial_dims`` (2 or 3) is guessed from the
    first convolution; ``token_grid`` sets the grid of token layers (a tuple for all of them
    or a dict by layer name) when inference is not wanted; ``output`` extracts the logits
    tensor from an unusual model output; ``layer_names`` maps readable names (``"stage4"``) to
    module names, usable wherever a layer is asked for; ``default_layer`` replaces the
    bottleneck guess.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str] | None = None,
        spatial_dims: int | None = None,
        token_grid: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
        output: Callable[[Any], Tensor] | None = None,
        layer_names: Mapping[str, str] | None = None,
        default_layer: str | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise SegcamError(f"the model must be a torch.nn.Module, got {type(model).__name__}.")
        if isinstance(model, torch.jit.ScriptModule):
            raise SegcamError(
                "TorchScript models do not support hooks, so segcam cannot capture their layers; "
                "export the model with torch.export (.pt2) or load the Python model with its "
                "weights (package.module:factory + a state dict)."
            )
        if spatial_dims not in (None, 2, 3):
            raise SegcamError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        self.model = model
        self.class_names = list(class_names) if class_names is not None else None
        self.spatial_dims = spatial_dims or guess_spatial_dims(model)
        self.token_grid = token_grid
        self.output = output
        self.layer_names = dict(layer_names or {})
        self._default_layer = default_layer
        self._surveys: dict[tuple[int, ...], list[LayerInfo]] = {}
        self._named: dict[str, nn.Module] = {}
        self._last_image: Tensor | None = None

    # ---------------------------------------------------------------- running the model
    def _image(self, image: Any) -> tuple[Tensor, bool]:
        device, dtype = model_device_dtype(self.model)
        x, batched = as_batch(image, self.spatial_dims, device, dtype)
        if x.is_inference():  # made under torch.inference_mode(): autograd cannot use it
            with torch.inference_mode(False):
                x = x.clone()
        self._last_image = x[:1]
        return x, batched

    def _find(self, layer: str | nn.Module) -> tuple[str, nn.Module]:
        """:func:`find_layer` over a cached name → module map, refreshed when a name is missing;
        readable names from ``layer_names`` are translated first."""
        if isinstance(layer, str):
            layer = self.layer_names.get(layer, layer)
            if layer in self._named:
                return layer, self._named[layer]
        self._named = dict(self.model.named_modules())
        try:
            return find_layer(self.model, layer, self._named)
        except LayerNotFoundError as e:
            if not self.layer_names or not isinstance(layer, str):
                raise
            near = closest(layer, list(self.layer_names), n=3)
            hint = f" Readable names: {', '.join(near or list(self.layer_names)[:6])}."
            raise LayerNotFoundError(str(e) + hint) from None

    def _run(self, x: Tensor) -> Any:
        """Call the model, turning a wrong channel count or a crash into a clear error."""
        if not self._named:
            self._named = dict(self.model.named_modules())
        convs = [(n, m) for n, m in self._named.items() if isinstance(m, tuple(CONV_TYPES))]
        handles: list[Any] = []

        def check_first(name: str):
            def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
                for h in handles:
                    h.remove()
                arg = args[0] if args else None
                if isinstance(arg, Tensor) and arg.ndim >= 2 and arg.shape[1] != module.in_channels:
                    raise ImageError(
                        f"the model's first convolution {name!r} expects {module.in_channels} "
                        f"input channel(s) but the image has {arg.shape[1]} (image shape "
                        f"{tuple(x.shape)}); convert the image (e.g. grey → RGB with "
                        f"image.expand({module.in_channels}, ...)) or check the channel axis."
                    )
            return hook

        try:
            for name, m in convs:
                handles.append(m.register_forward_pre_hook(check_first(name)))
            return self.model(x)
        except SegcamError:
            raise
        except Exception as e:
            raise ModelError(
                f"the model failed on an input of shape {tuple(x.shape)}: {type(e).__name__}: {e}"
            ) from e
        finally:
            for h in handles:
                h.remove()

    def _grid_for(self, name: str) -> Sequence[int] | None:
        if isinstance(self.token_grid, Mapping):
            return self.token_grid.get(name)
        return self.token_grid

    # ---------------------------------------------------------------- layers
    def layers(self, image: Any = None) -> list[LayerInfo]:
        """Every module with its output shape and spatial layout, from one forward pass.

        With no image, the last image explained is used, else a zero image of the size the
        first convolution suggests (256² for 2-D, 64³ for 3-D).
        """
        if image is not None:
            x, _ = self._image(image)
            x = x[:1]
        elif self._last_image is not None:
            x = self._last_image
        else:
            x = self._dummy_image()
        key = tuple(x.shape)
        if key not in self._surveys:
            with guarded(self.model):
                self._surveys[key] = survey(self.model, lambda: self._run(x), x.shape[2:],
                                            self._grid_for)
        return self._surveys[key]

    def _dummy_image(self) -> Tensor:
        found = first_conv(self.model)
        if found is None:
            raise SegcamError("cannot guess the model's input; pass an example: explainer.layers(image).")
        dims = self.spatial_dims or 2
        size = (256,) * 2 if dims == 2 else (64,) * 3
        device, dtype = model_device_dtype(self.model)
        return torch.zeros((1, found[1].in_channels, *size), device=device, dtype=dtype)

    def resolve_layer(self, layer: str | nn.Module) -> str:
        """The module name that ``layer`` (a module name, readable name or module) refers to."""
        return self._find(layer)[0]

    def default_layer(self, image: Any = None) -> str:
        """The layer explained when none is given: the one set at construction, else the
        bottleneck (the explainable layer with the lowest-resolution output)."""
        if self._default_layer is not None:
            return self._find(self._default_layer)[0]
        return bottleneck(self.layers(image))

    def _layer_names(self, layer: LayerArg, x: Tensor) -> tuple[list[str], bool]:
        if isinstance(layer, str) and layer == INPUT:
            return [INPUT], True
        if layer is None:
            name = self.default_layer(x[:1])
            log.info("segcam: no layer given, explaining the default layer %r", name)
            return [name], True
        if isinstance(layer, (str, nn.Module)):
            return [self._find(layer)[0]], True
        names = [item if item == INPUT else self._find(item)[0] for item in layer]
        if not names:
            raise LayerError("the list of layers is empty; give at least one layer name.")
        return list(dict.fromkeys(names)), False

    # ---------------------------------------------------------------- forward
    @torch.inference_mode(False)
    def forward(self, image: Any, layer: LayerArg = None) -> Forward:
        """Run the model once, capturing ``layer`` (default: the bottleneck) for re-targeting."""
        x, batched = self._image(image)
        names, _ = self._layer_names(layer, x)
        return self._forward(x, batched, names)

    def _forward(self, x: Tensor, batched: bool, names: list[str]) -> Forward:
        layers = [n for n in names if n != INPUT]
        capture = Capture({n: self._find(n)[1] for n in layers})
        with guarded(self.model), capture.hooks(), torch.enable_grad():
            if INPUT in names:  # the input is a leaf of the graph: gradients reach it
                x = x.detach().requires_grad_(True)
            out = self._run(x)
            logits = logits_at_input_size(read_logits(out, self.output), x)
        activations = dict(capture.activations)
        layouts = {}
        if INPUT in names:
            activations[INPUT] = x
            layouts[INPUT] = Layout("spatial", tuple(x.shape[2:]))
        for name in layers:
            if name in capture.problems:
                raise LayerError(f"layer {name!r} cannot be explained: {capture.problems[name]}.")
            if capture.calls[name] == 0:
                raise LayerError(
                    f"layer {name!r} did not run during the forward pass; pick a layer the model "
                    "uses (see explainer.layers())."
                )
        for name in layers:
            lay = layout_of(capture.activations[name], x.shape[2:], self._grid_for(name))
            if lay is None:
                raise LayerError(self._not_spatial(name, capture.activations[name], x))
            layouts[name] = lay
        return Forward(x.detach(), batched, logits, {n: activations[n] for n in names}, layouts)

    def _not_spatial(self, name: str, act: Tensor, x: Tensor) -> str:
        spatial_layers = [i.name for i in self.layers(x[:1]) if i.explainable]
        near = closest(name, spatial_layers, n=3)
        hint = f" Nearby spatial layers: {', '.join(near)}." if near else ""
        return (
            f"layer {name!r} outputs shape {tuple(act.shape)}, which is neither a spatial map "
            f"(B, C, *{tuple(x.shape[2:])}) nor tokens (B, N, C) that fit a grid of the "
            f"input's shape; pass token_grid=(h, w) for tokens or choose another layer.{hint}"
        )

    # ---------------------------------------------------------------- explaining
    def explain(
        self,
        image: Any,
        target: TargetArg,
        *,
        method: str = "seg-grad-cam",
        layer: LayerArg = None,
        **options: Any,
    ) -> Explanation | dict[str, Explanation]:
        """Explain one target; several layers (a list) give a dict of explanations by layer.

        ``image`` may be a tensor/array or a :class:`Forward` from :meth:`forward` (then only
        the backward pass runs).  ``target`` is a :class:`Target`, or a class (whole image).
        Method options (e.g. ``window``, ``pool``) are passed as keywords.
        """
        [result] = self._explain_all(image, [target], method, layer, options, "auto")
        return result

    def explain_many(
        self,
        image: Any,
        targets: Sequence[TargetArg],
        *,
        method: str = "seg-grad-cam",
        layer: LayerArg = None,
        backward: str = "auto",
        **options: Any,
    ) -> list[Explanation] | list[dict[str, Explanation]]:
        """Explain K targets with one forward pass and K gradients from the same graph.

        ``backward`` is ``"batched"`` (one vmapped backward, ``is_grads_batched``), ``"loop"``
        (K backward passes over the retained graph) or ``"auto"`` (loop on CPU, else batched).
        """
        if isinstance(targets, (Target, int, str)) or not len(targets):
            raise SegcamError("explain_many takes a non-empty list of targets.")
        if backward not in ("auto", "batched", "loop"):
            raise SegcamError(f"backward must be 'auto', 'batched' or 'loop', got {backward!r}.")
        return self._explain_all(image, list(targets), method, layer, options, backward)

    @torch.inference_mode(False)
    def _explain_all(
        self,
        image: Any,
        targets: list[TargetArg],
        method: str,
        layer: LayerArg,
        options: dict[str, Any],
        backward: str,
    ) -> list[Any]:
        cam = get_method(method, options)
        if getattr(cam, "perturbation", False):
            if layer not in (None, INPUT):
                raise SegcamError(f"method {method!r} perturbs the input and uses no layer; pass layer=None.")
            return self._explain_perturbation(image, targets, cam, method, options)
        if cam.uses_input:
            if layer not in (None, INPUT):
                raise SegcamError(f"method {method!r} explains the input itself; pass layer=None.")
            layer = INPUT
        targets_ = [t if isinstance(t, Target) else Target(t) for t in targets]
        fwd, names, single = self._forward_for(image, layer)
        retain = isinstance(image, Forward)  # a kept forward must survive for the next target

        classes = [class_index(t.cls, fwd.logits.n_classes, self.class_names) for t in targets_]
        masks = [t.region.resolve(RegionContext(fwd.spatial, fwd.image.shape[0], fwd.image.device,
                                                c, lambda: fwd.predicted))
                 for t, c in zip(targets_, classes)]
        with torch.enable_grad():
            per_image = [region_scores(fwd.logits, c, m, t.reduce)
                         for t, c, m in zip(targets_, classes, masks)]
            if cam.needs_scores:  # weights from masked forward passes, not from gradients
                grads = [self._score_weights(fwd, n, classes, masks, cam.batch_size) for n in names]
            else:
                grads = self._gradients([s.sum() for s in per_image],
                                        [fwd.activations[n] for n in names], retain, backward)

        for t, score in zip(targets_, per_image):
            if not bool(torch.isfinite(score).all()):
                raise ModelError(
                    f"the model produced non-finite logits (NaN or inf) in the region of "
                    f"{t.describe(self.class_names)}."
                )
        results: list[dict[str, Explanation]] = [{} for _ in targets_]
        for name, grad in zip(names, grads):
            lay = fwd.layouts[name]
            act = lay.to_map(fwd.activations[name].detach()).float()
            grad_map = grad if cam.needs_scores else lay.to_map(grad).float()
            self._warn_if_zero(grad_map, targets_, name)
            raw = cam(act, grad_map)  # (T, B, *s)
            if not bool(torch.isfinite(raw).all()):
                raise ModelError(f"the activations or gradients at layer {name!r} are not finite.")
            positive = raw.clamp_min(0)
            for k, target in enumerate(targets_):
                results[k][name] = Explanation(
                    map=normalise(upsample(positive[k], fwd.spatial)),
                    layer_map=normalise(positive[k]),
                    raw=raw[k],
                    region=masks[k],
                    score=per_image[k].detach(),
                    target=target,
                    cls=classes[k],
                    layer=name,
                    method=method,
                    options=dict(options),
                    batched=fwd.batched,
                )
        return [r[names[0]] if single else r for r in results]

    def _score_weights(
        self, fwd: Forward, name: str, classes: list[int], masks: list[Tensor], batch_size: int | None
    ) -> Tensor:
        """Score-CAM's channel weights ``(T, B, K, 1, ..)``: softmax over channels ``k`` of the mean
        class-``c`` logit over the region when the image is multiplied by channel ``k``'s map
        (upsampled to the input, min-max scaled to [0, 1])."""
        act = fwd.layouts[name].to_map(fwd.activations[name].detach()).float()
        b, k = act.shape[:2]
        up = upsample(act.flatten(0, 1), fwd.spatial).reshape(b, k, -1)
        lo, hi = up.amin(2, keepdim=True), up.amax(2, keepdim=True)
        scaled = torch.where(hi > lo, (up - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(up))
        scaled = scaled.reshape(b, k, *fwd.spatial)
        step = batch_size or batch_size_for(fwd.image[0])
        scores = torch.zeros((len(classes), b, k))
        with guarded(self.model), torch.inference_mode():
            for i in range(b):
                for start in range(0, k, step):
                    masked = fwd.image[i] * scaled[i, start:start + step, None]
                    logits = logits_at_input_size(read_logits(self._run(masked), self.output), masked)
                    for t, (c, m) in enumerate(zip(classes, masks)):
                        region = m[i]
                        scores[t, i, start:start + step] = (
                            (logits.of_class(c) * region).flatten(1).sum(1) / region.sum()
                        )
        weights = torch.softmax(scores, dim=-1).to(act.device)
        return weights.reshape(*weights.shape, *(1,) * (act.ndim - 2))

    def _explain_perturbation(
        self, image: Any, targets: list[TargetArg], cam: Any, method: str, options: dict[str, Any]
    ) -> list[Explanation]:
        """Explanations from forward passes only (RISE): no hooks, no gradients."""
        x, batched = (image.image, image.batched) if isinstance(image, Forward) else self._image(image)
        targets_ = [t if isinstance(t, Target) else Target(t) for t in targets]

        def run_model(batch: Tensor) -> Logits:
            return logits_at_input_size(read_logits(self._run(batch), self.output), batch)

        with guarded(self.model), torch.inference_mode():
            logits = run_model(x)
            predicted = logits.predicted()
            classes = [class_index(t.cls, logits.n_classes, self.class_names) for t in targets_]
            masks = [t.region.resolve(RegionContext(x.shape[2:], x.shape[0], x.device, c, lambda: predicted))
                     for t, c in zip(targets_, classes)]
            scores = [region_scores(logits, c, m, t.reduce) for t, c, m in zip(targets_, classes, masks)]
            per_image = [cam.run(run_model, x[b], classes, [m[b] for m in masks], predicted[b])
                         for b in range(x.shape[0])]
        maps = torch.stack([p[0] for p in per_image], dim=1)  # (K, B, *S)
        used = min(p[1] for p in per_image)
        out = []
        for k, target in enumerate(targets_):
            normalised = normalise(maps[k].clamp_min(0))
            out.append(Explanation(
                map=normalised, layer_map=normalised, raw=maps[k], region=masks[k],
                score=scores[k], target=target, cls=classes[k], layer=INPUT, method=method,
                options={**options, "masks_used": used, "stopped_early": used < cam.n_masks},
                batched=batched,
            ))
        return out

    def _forward_for(self, image: Any, layer: LayerArg) -> tuple[Forward, list[str], bool]:
        """The forward pass to explain (given or run now), its layers, and if one was asked."""
        if not isinstance(image, Forward):
            x, batched = self._image(image)
            names, single = self._layer_names(layer, x)
            return self._forward(x, batched, names), names, single
        if layer is None:
            return image, image.layers, len(image.layers) == 1
        names, single = self._layer_names(layer, image.image)
        missing = [n for n in names if n not in image.activations]
        if missing:
            raise LayerError(
                f"layer(s) {missing} were not captured by this forward pass (it has "
                f"{image.layers}); call explainer.forward(image, layer=[...]) with them."
            )
        return image, names, single

    @staticmethod
    def _gradients(
        scores: list[Tensor], acts: list[Tensor], retain: bool, backward: str
    ) -> list[Tensor]:
        """``dS_k/dA`` for every score and layer, stacked as ``(K, *A.shape)``.

        ``backward="batched"`` runs one vmapped backward (``is_grads_batched``) over the K
        scores; ``"loop"`` runs K backward passes over the retained graph.  ``"auto"`` loops
        on the CPU, where it measured faster (see benchmarks/), and batches elsewhere.
        """
        k = len(scores)
        if not any(s.requires_grad for s in scores):
            return [torch.zeros((k, *a.shape), dtype=a.dtype, device=a.device) for a in acts]
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
            grads = tuple(None if rows[0][i] is None else torch.stack([r[i] for r in rows])
                          for i in range(len(acts)))
        out = []
        for a, g in zip(acts, grads):
            if g is None:
                g = torch.zeros((k, *a.shape), dtype=a.dtype, device=a.device)
            out.append(g)
        return out

    @staticmethod
    def _warn_if_zero(grad_map: Tensor, targets: list[Target], name: str) -> None:
        flat = grad_map.flatten(1)
        for k, target in enumerate(targets):
            if not bool(flat[k].any()):
                warnings.warn(
                    f"the score of {target.describe()} does not depend on layer {name!r} (its "
                    "gradient there is zero), so its map is all zero; pick a layer between the "
                    "input and the logits of that region.",
                    SegcamWarning,
                    stacklevel=4,
                )


def explain(
    model: nn.Module,
    image: Any,
    target: TargetArg,
    *,
    method: str = "seg-grad-cam",
    layer: LayerArg = None,
    **options: Any,
) -> Explanation | dict[str, Explanation]:
    """One-shot ``Explainer(model).explain(image, target, ...)``."""
    return Explainer(model).explain(image, target, method=method, layer=layer, **options)
