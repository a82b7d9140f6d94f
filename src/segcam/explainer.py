"""The engine: image → guarded forward pass → targets → method → post-processing → Explanation.

:class:`Explainer` checks what it is given, runs one forward pass that captures the layers a
method needs (recording a graph only if the method asks for gradients), resolves the targets
(class, region mask, region score), hands a :class:`~segcam.core.context.Context` to the method
and post-processes each map the same way.  It holds no per-call state, and the model's lock
serialises every use of the model, so one explainer (or several on one model) may be called
from many threads.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_callable, check_choice, check_int, check_names, shown
from .core.context import BACKWARDS, INPUT, Context, Forward, NotSpatial, Progress, run_forward
from .core.image import as_batch
from .core.layers import LayerInfo
from .core.logits import Logits, logits_at_input_size, read_logits
from .core.lookup import LayerLookup
from .core.model import call_model, device_and_dtype, guarded, guess_spatial_dims
from .core.target import ResolvedTarget, as_target, resolve_targets
from .errors import LayerError, MethodError, ModelError, SegcamError, TargetError
from .explanation import Explanation, Explanations, PostProcess
from .methods import Method, create

LayerArg = str | nn.Module | Sequence[str | nn.Module] | None


class Explainer:
    """Explain a segmentation model's decisions for classes over regions of its output.

    >>> explainer = Explainer(model)                                   # doctest: +SKIP
    >>> exp = explainer.explain(image, Target(3, regions.pixel(120, 64)),
    ...                         method="seg-xres-cam", window=2)       # doctest: +SKIP

    ``class_names`` lets targets name classes (one name per class of the model);
    ``spatial_dims`` (2 or 3) is guessed from the first convolution; ``token_grid`` sets the grid
    of token layers (a tuple for all of them or a dict by layer name) when inference is not
    wanted; ``output`` extracts the logits from an unusual model output; ``layer_names`` maps
    readable names (``"stage4"``) to module names, usable wherever a layer is asked for;
    ``default_layer`` replaces the bottleneck guess; ``postprocess`` replaces the default
    :class:`~segcam.explanation.PostProcess` (ReLU, divide by the maximum, resize).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str] | None = None,
        spatial_dims: int | None = None,
        token_grid: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
        output: Callable[[Any], Any] | None = None,
        layer_names: Mapping[str, str] | None = None,
        default_layer: str | None = None,
        postprocess: PostProcess | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise SegcamError(f"the model must be a torch.nn.Module, got {shown(model)}.")
        if isinstance(model, torch.jit.ScriptModule):
            raise SegcamError(
                "TorchScript models do not support hooks, so segcam cannot capture their layers; "
                "export the model with torch.export (.pt2) or load the Python model with its "
                "weights (package.module:factory + a state dict)."
            )
        self.model = model
        self.class_names = None if class_names is None else check_names(class_names, "class_names")
        if spatial_dims is not None:
            spatial_dims = check_int(spatial_dims, "spatial_dims", low=2, high=3)
        self.spatial_dims = spatial_dims or guess_spatial_dims(model)
        self.output = None if output is None else check_callable(output, "output")
        if postprocess is not None and not isinstance(postprocess, PostProcess):
            raise SegcamError(f"postprocess must be a segcam.PostProcess, got {shown(postprocess)}.")
        self.postprocess = postprocess or PostProcess()
        self._lookup = LayerLookup(model, layer_names, default_layer, token_grid, self.spatial_dims)

    @property
    def layer_names(self) -> dict[str, str]:
        """Readable layer names → module names."""
        return self._lookup.layer_names

    @classmethod
    def from_loaded(cls, loaded: Any, **overrides: Any) -> Explainer:
        """An explainer for a :func:`segcam.load_model` result: its class names, readable layer
        names and default layer (``overrides`` replace any of them)."""
        if not all(hasattr(loaded, a) for a in ("model", "class_names", "layer_names", "default_layer")):
            raise SegcamError(f"from_loaded takes what segcam.load_model returns, got {shown(loaded)}.")
        options = {"class_names": loaded.class_names, "layer_names": loaded.layer_names or None,
                   "default_layer": loaded.default_layer}
        return cls(loaded.model, **{**options, **overrides})

    # ---------------------------------------------------------------- layers
    def layers(self, image: Any = None) -> list[LayerInfo]:
        """Every module with its output shape and spatial layout, from one forward pass of
        ``image`` (default: a zero image of 256² for 2-D models, 64³ for 3-D ones)."""
        return self._lookup.survey(None if image is None else self._image(image)[0][:1])

    def default_layer(self, image: Any = None) -> str:
        """The layer explained when none is given: the one set at construction, else the
        bottleneck (the explainable layer with the lowest-resolution output)."""
        return self._lookup.default(None if image is None else self._image(image)[0][:1])

    def resolve_layer(self, layer: str | nn.Module) -> str:
        """The module name that ``layer`` (a module name, readable name or module) refers to."""
        return self._lookup.find(layer)[0]

    # ---------------------------------------------------------------- explaining
    def forward(self, image: Any, layer: LayerArg = None) -> Forward:
        """Run the model once, recording ``layer`` (default: the bottleneck; ``"<input>"`` for
        the input's pixels) so that explaining it again costs only a backward pass."""
        with torch.inference_mode(False):
            x, batched = self._image(image)
            names = self._lookup.names(layer, x, allow_input=True)
            return self._run_forward(x, batched, names, record=True)

    def explain(
        self,
        image: Any,
        target: Any,
        *,
        method: str | Method = "seg-grad-cam",
        layer: str | nn.Module | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> Explanation:
        """Explain one target at one layer.

        ``image`` is a tensor/array or a :class:`~segcam.core.context.Forward` from
        :meth:`forward` (then no forward pass runs); ``target`` a :class:`~segcam.Target` or a
        class (over the whole image); ``method`` a registered name or a method object, with its
        options as keywords (``window=2``); ``layer`` one layer (default: the bottleneck);
        ``progress(done, total)`` is called by long methods (it may raise to cancel).
        """
        if isinstance(layer, (list, tuple)):
            raise SegcamError(
                "explain takes one layer; for several use explain_many(image, [target], layer=[...]), "
                "which returns the explanations by target and layer."
            )
        if isinstance(image, Forward) and layer is None and len([n for n in image.layers if n != INPUT]) > 1:
            raise SegcamError(
                f"this kept forward pass holds several layers ({', '.join(image.layers)}); pass layer=... "
                "or use explain_many to explain them all."
            )
        return self._explain(image, [target], method, layer, options, "auto", progress)[0]

    def explain_many(
        self,
        image: Any,
        targets: Sequence[Any],
        *,
        method: str | Method = "seg-grad-cam",
        layer: LayerArg = None,
        backward: str = "auto",
        progress: Progress | None = None,
        **options: Any,
    ) -> Explanations:
        """Explain several targets at one or more layers from one forward pass.

        ``backward`` is ``"batched"`` (one vmapped backward, ``is_grads_batched``), ``"loop"``
        (one backward per target over the kept graph) or ``"auto"`` (loop on the CPU, where it
        measured faster, batched elsewhere).
        """
        if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence) or not len(targets):
            raise SegcamError(f"explain_many takes a non-empty list of targets, got {shown(targets)}.")
        check_choice(backward, "backward", BACKWARDS)
        grid, names = self._explain_grid(image, list(targets), method, layer, options, backward, progress)
        return Explanations(grid, names, self._lookup.layer_names)

    def _explain(self, image: Any, targets: list[Any], method: Any, layer: Any, options: dict[str, Any],
                 backward: str, progress: Progress | None) -> list[Explanation]:
        grid, _ = self._explain_grid(image, targets, method, layer, options, backward, progress)
        return [row[0] for row in grid]

    def _explain_grid(self, image: Any, targets: list[Any], method: Any, layer: Any, options: dict[str, Any],
                      backward: str, progress: Progress | None) -> tuple[list[list[Explanation]], list[str]]:
        start = time.perf_counter()
        if progress is not None:
            _check_progress(progress)
        chosen = create(method, options)
        wanted = [as_target(t) for t in targets]
        with torch.inference_mode(False):
            fwd, names = self._forward_for(image, layer, chosen)
            with torch.set_grad_enabled(fwd.recorded):
                resolved = self._resolve(wanted, fwd)
            ctx = Context(fwd, resolved, names, self._run_variants, method=chosen.name, backward=backward,
                          retain=isinstance(image, Forward), progress=progress)
            rows: list[list[Explanation]] = [[] for _ in resolved]
            for i, name in enumerate(names):
                if progress is not None and len(names) > 1:  # one count over every layer
                    ctx.progress = _offset(progress, i, len(names))
                began = time.perf_counter()
                raw = self._checked(chosen.explain(ctx, name), ctx, name)
                spent = time.perf_counter() - began
                for k, t in enumerate(resolved):
                    rows[k].append(self._explanation(raw[k], t, name, chosen, fwd, ctx, spent))
        total = time.perf_counter() - start
        for row in rows:
            for e in row:
                e.timings["total"] = total
        return rows, names

    # ---------------------------------------------------------------- steps
    def _forward_for(self, image: Any, layer: Any, method: Method) -> tuple[Forward, list[str]]:
        """The forward pass to explain (the given one, or one run now) and its layers."""
        if isinstance(image, Forward):
            if image.model is None or image.model() is not self.model:
                raise SegcamError(
                    "this kept forward pass was run by another model (or explainer of another model); "
                    "explain it with the explainer that made it, or pass the image itself."
                )
            return image, self._kept_layers(image, layer, method)
        x, batched = self._image(image)
        names = self._method_layers(layer, x, method)
        return self._run_forward(x, batched, names, record=method.gradients), names

    def _method_layers(self, layer: Any, x: Tensor, method: Method) -> list[str]:
        if method.on_input:
            return _input_only(layer, method)
        return self._lookup.names(layer, x, allow_input=False)

    def _kept_layers(self, fwd: Forward, layer: Any, method: Method) -> list[str]:
        if method.on_input:
            names = _input_only(layer, method)
        elif layer is None:
            names = [n for n in fwd.layers if n != INPUT]
        else:
            names = self._lookup.names(layer, fwd.image, allow_input=False)
        missing = [n for n in names if n not in fwd.activations]
        if missing or not names:
            raise LayerError(
                f"layer(s) {missing or names} were not captured by this forward pass (it has {fwd.layers}); "
                "call explainer.forward(image, layer=[...]) with them."
            )
        return names

    def _run_forward(self, x: Tensor, batched: bool, names: list[str], record: bool) -> Forward:
        modules = {n: self._lookup.find(n)[1] for n in names if n != INPUT}
        try:
            fwd = run_forward(self.model, x, batched, modules, record=record, with_input=INPUT in names,
                              extract=self.output, token_grid=self._lookup.grid_for)
        except NotSpatial as e:
            raise LayerError(self._lookup.not_spatial(e.name, e.shape, x)) from None
        self._check_class_names(fwd.logits)
        return fwd

    def _resolve(self, targets: list[Any], fwd: Forward) -> list[ResolvedTarget]:
        return resolve_targets(targets, fwd.logits, lambda: fwd.predicted, self.class_names)

    def _run_variants(self, images: Tensor, record: bool) -> Logits:
        """Logits of modified inputs from a guarded forward pass; it records a graph (from the
        inputs only: the parameters are frozen) when ``record``, else nothing."""
        with guarded(self.model), torch.inference_mode(not record), torch.set_grad_enabled(record):
            return logits_at_input_size(read_logits(call_model(self.model, images), self.output), images)

    def _checked(self, raw: Any, ctx: Context, name: str) -> Tensor:
        grid = ctx.forward.layouts[name].grid
        expected = (len(ctx.targets), ctx.image.shape[0], *grid)
        if not isinstance(raw, Tensor) or tuple(raw.shape) != expected:
            got = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
            raise MethodError(f"method {ctx.method!r} returned {got} at layer {name!r}; expected a tensor {expected}.")
        if not bool(torch.isfinite(raw).all()):
            raise ModelError(
                f"method {ctx.method!r} produced non-finite values (NaN or inf) at layer {name!r}: the model's "
                "activations, gradients or outputs there are not finite."
            )
        return raw.detach()

    def _explanation(self, raw: Tensor, t: ResolvedTarget, name: str, method: Method, fwd: Forward,
                     ctx: Context, spent: float) -> Explanation:
        layer_map, full = self.postprocess(raw, fwd.spatial)
        names = self.class_names
        return Explanation(
            map=full, layer_map=layer_map, raw=raw, region=t.region, score=t.score.detach(), target=t.target,
            cls=t.cls, class_name=names[t.cls] if names else None, layer=name, method=method.name,
            options=method.to_dict(), batched=fwd.batched,
            timings={"forward": fwd.seconds if not ctx.retain else 0.0, "backward": ctx.seconds["backward"],
                     "modified_inputs": ctx.seconds["modified_inputs"], "method": spent},
            details={**ctx.notes, **({"modified_inputs": ctx.passes} if ctx.passes else {})},
        )

    # ---------------------------------------------------------------- helpers
    def _image(self, image: Any) -> tuple[Tensor, bool]:
        device, dtype = device_and_dtype(self.model)
        return as_batch(image, self.spatial_dims, device, dtype)

    def _check_class_names(self, logits: Logits) -> None:
        if self.class_names is not None and len(self.class_names) != logits.n_classes:
            raise TargetError(
                f"class_names has {len(self.class_names)} names but the model outputs {logits.n_classes} "
                f"classes; pass exactly {logits.n_classes} names (one per class, in order)."
            )



def _input_only(layer: Any, method: Method) -> list[str]:
    if layer is not None and not (isinstance(layer, str) and layer == INPUT):
        raise SegcamError(
            f"method {method.name!r} explains the input's pixels and takes no layer; leave the layer "
            "out (layer=None in Python, no --layer on the command line)."
        )
    return [INPUT]


def _offset(progress: Progress, layer: int, layers: int) -> Progress:
    """``progress`` counting layer ``layer``'s steps after those of the layers before it."""
    return lambda done, total: progress(layer * total + done, layers * total)


def _check_progress(progress: Any) -> None:
    check_callable(progress, "progress")
    try:
        inspect.signature(progress).bind(0, 1)
    except TypeError:
        raise SegcamError("progress must take two arguments, progress(done, total).") from None
    except ValueError:  # a builtin without a signature: it will say so when called
        pass


def explain(
    model: nn.Module,
    image: Any,
    target: Any,
    *,
    method: str | Method = "seg-grad-cam",
    layer: str | nn.Module | None = None,
    **options: Any,
) -> Explanation:
    """One-shot ``Explainer(model).explain(image, target, ...)``."""
    return Explainer(model).explain(image, target, method=method, layer=layer, **options)
