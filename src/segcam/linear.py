"""Maps at hover speed: precomputed per-pixel tables for the CAMs that are linear in the gradient.

The region score ``S = sum_u w(u) z_c(u)`` (``w = [u in M]``, divided by ``|M|`` for
``reduce="mean"``) has the gradient ``G = dS/dA = sum_u w(u) J_u`` with ``J_u = dz_c(u)/dA``.
When a CAM's weights ``W(G)`` are linear in ``G`` (Seg-Grad-CAM, HiResCAM, Seg-XRes-CAM with
mean pooling) so is its map, and it splits into one map per output pixel::

    L_M(v) = sum_k W_k(G)(v) A_k(v) = sum_u w(u) P_u(v),    P_u(v) = <J_u, T_v>,

where the tangent ``T_v = dL(v)/dG`` comes from the method's own ``weights`` (one
vector-Jacobian product of a linear function).  Forward-mode derivatives of the model from the
layer onward (``torch.func.jvp``, vmapped over chunks of tangents) give ``<J_u, T_v>`` for every
output pixel ``u`` and class ``c`` at once: the table costs one jvp per grid cell, and any
region's map afterwards is one matrix-vector product, with no backward pass.

>>> maps = LinearMaps.build(explainer, image, layer="downs.2")             # doctest: +SKIP
>>> exp = maps.explain(Target(2, regions.pixel(30, 20)))  # == explainer.explain(...)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_int, shown
from .core.capture import main_tensor, replace_main
from .core.context import INPUT, Forward, batch_size_for
from .core.layers import Layout
from .core.logits import Logits, logits_at_input_size, read_logits
from .core.model import call_model, guarded
from .core.target import as_target, class_index, resolve_targets
from .errors import LayerError, MethodError, ModelError, SegcamError
from .explainer import Explainer
from .explanation import Explanation
from .methods import Method, create
from .methods.cam import SegGradCAM, SegHiResCAM, SegXResCAM

MAX_BYTES = 2**28  # 256 MiB of table by default


def linear_method(method: str | Method, options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``method`` with ``options`` makes maps linear in the gradient (so hovering can use
    a :class:`LinearMaps` table): Seg-Grad-CAM, HiResCAM, and Seg-XRes-CAM with ``pool="mean"``
    or a 1-cell window.  Unknown methods or bad options raise a :class:`MethodError`."""
    return _is_linear(create(method, dict(options or {})))


def _is_linear(m: Method) -> bool:
    if type(m) in (SegGradCAM, SegHiResCAM):
        return True
    return type(m) is SegXResCAM and (m.pool == "mean" or m.window in (1, (1, 1), (1, 1, 1)))


def table_bytes(grid: Sequence[int], spatial: Sequence[int], classes: int) -> int:
    """Bytes of a table: ``4 · cells(grid) · pixels(spatial) · classes`` (float32)."""
    return 4 * math.prod(grid) * math.prod(spatial) * classes


@dataclass(eq=False)
class LinearMaps:
    """The table ``P[c, v, u]`` of one image, layer and linear method (see the module's docstring).

    Make it with :meth:`build`; then :meth:`explain` gives what ``explainer.explain`` gives for
    a target of a class it holds, and :meth:`map` the signed map of any pixel weights.
    """

    explainer: Explainer
    method: Method
    layer: str
    logits: Logits  # (1, classes, *S), detached
    table: Tensor  # (len(classes), cells, pixels), float32
    classes: tuple[int, ...]
    grid: tuple[int, ...]
    seconds: float  # how long the build took

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.logits.values.shape[2:])

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    @cached_property
    def predicted(self) -> Tensor:
        """``(1, *S)`` predicted labels (for regions such as ``regions.predicted()``)."""
        return self.logits.predicted()

    @staticmethod
    def build(explainer: Explainer, image: Any, *, layer: str | nn.Module | None = None,
              method: str | Method = "seg-grad-cam", options: Mapping[str, Any] | None = None,
              cls: int | str | None = None, max_bytes: int = MAX_BYTES) -> LinearMaps:
        """The table for ``image`` (one image, or a kept :class:`~segcam.Forward` of one) at
        ``layer`` (default: the explainer's default layer), for class ``cls`` or every class.

        A method that is not linear in the gradient, or a table over ``max_bytes``, is refused
        with a :class:`SegcamError` (then explain each region with ``explainer.explain``).
        """
        start = time.perf_counter()
        if not isinstance(explainer, Explainer):
            raise SegcamError(f"explainer must be a segcam.Explainer, got {shown(explainer)}.")
        max_bytes = check_int(max_bytes, "max_bytes", low=1)
        chosen = create(method, dict(options or {}))
        if not _is_linear(chosen):
            raise MethodError(
                f"method {chosen.name!r} with options {chosen.to_dict()} is not linear in the gradient, so it "
                "has no precomputed maps; use seg-grad-cam, seg-hires-cam or seg-xres-cam with pool='mean', "
                "or explain each region with explainer.explain."
            )
        with torch.inference_mode(False):
            fwd, name = _forward(explainer, image, layer)
            n = fwd.logits.n_classes
            classes = tuple(range(n)) if cls is None else (class_index(cls, n, explainer.class_names),)
            grid = fwd.layouts[name].grid
            size = table_bytes(grid, fwd.spatial, len(classes))
            if size > max_bytes:
                raise SegcamError(
                    f"the precomputed maps of layer {name!r} ({'×'.join(map(str, grid))} cells) for "
                    f"{len(classes)} class(es) of a {'×'.join(map(str, fwd.spatial))} image need "
                    f"{size / 2**20:.0f} MiB, over max_bytes={max_bytes / 2**20:.0f} MiB; pass cls=<one class>, "
                    "choose a coarser layer, raise max_bytes, or explain each region with explainer.explain."
                )
            table = _table(explainer, fwd, name, chosen, classes)
        return LinearMaps(explainer, chosen, name, Logits(fwd.logits.values.detach()), table, classes, grid,
                          time.perf_counter() - start)

    def map(self, weights: Tensor, cls: int) -> Tensor:
        """``sum_u w(u) P_u``, ``(1, *grid)``: the signed map of the score ``sum_u w(u) z_c(u)``
        for pixel weights ``weights (1, *S)`` (a boolean mask, or any finite numbers)."""
        if not isinstance(weights, Tensor) or tuple(weights.shape) != (1, *self.spatial):
            got = tuple(weights.shape) if isinstance(weights, Tensor) else shown(weights)
            raise SegcamError(f"weights must be a tensor of shape {(1, *self.spatial)} (one per pixel), got {got}.")
        w = weights.to(self.table.device, torch.float32).reshape(-1)
        if not bool(torch.isfinite(w).all()):
            raise SegcamError("weights must be finite numbers; replace NaN and inf (torch.nan_to_num).")
        if isinstance(cls, bool) or cls not in self.classes:
            raise SegcamError(f"these precomputed maps hold class(es) {list(self.classes)}, not {shown(cls)}; "
                              "build them with cls=None (every class) or with that class.")
        return (self.table[self.classes.index(cls)] @ w).reshape(1, *self.grid)

    def explain(self, target: Any) -> Explanation:
        """What ``explainer.explain(image, target, method=..., layer=...)`` returns, from the table:
        the map of weights ``[u in M]`` (divided by ``|M|`` for ``reduce="mean"``)."""
        start = time.perf_counter()
        (t,) = resolve_targets([as_target(target)], self.logits, lambda: self.predicted, self.explainer.class_names)
        weights = t.region.float()
        raw = self.map(weights / weights.sum() if t.target.reduce == "mean" else weights, t.cls)
        layer_map, full = self.explainer.postprocess(raw, self.spatial)
        names = self.explainer.class_names
        return Explanation(
            map=full, layer_map=layer_map, raw=raw, region=t.region, score=t.score, target=t.target, cls=t.cls,
            class_name=names[t.cls] if names else None, layer=self.layer, method=self.method.name,
            options=self.method.to_dict(), batched=False,
            timings={"method": time.perf_counter() - start}, details={"linear": True},
        )


def _forward(explainer: Explainer, image: Any, layer: Any) -> tuple[Forward, str]:
    """A forward pass of one image holding ``layer`` (the kept one when given), and the layer's name."""
    if isinstance(image, Forward):
        if image.model is None or image.model() is not explainer.model:
            raise SegcamError("this kept forward pass was run by another model; pass the image itself.")
        fwd, names = image, [n for n in image.layers if n != INPUT]
        name = explainer.resolve_layer(layer) if layer is not None else names[0] if len(names) == 1 else None
        if name not in names:
            raise LayerError(f"layer {layer!r} was not captured by this forward pass (it has {names}); pass "
                             "layer=... with one of those, or call explainer.forward(image, layer=...) with it.")
    else:
        if isinstance(layer, str) and layer == INPUT:
            raise LayerError("precomputed maps explain a layer, not the input's pixels; pass a layer name.")
        fwd = explainer.forward(image, layer)
        name = next(n for n in fwd.layers if n != INPUT)
    if fwd.image.shape[0] != 1:
        raise SegcamError(f"precomputed maps take one image, got a batch of {fwd.image.shape[0]}; build one per image.")
    return fwd, name


def _table(explainer: Explainer, fwd: Forward, name: str, method: Method, classes: tuple[int, ...]) -> Tensor:
    """``P (classes, cells, pixels)``: the pushforward of every cell's tangent, chunk by chunk,
    holding the model's lock for one chunk at a time."""
    act, layout = fwd.activations[name].detach(), fwd.layouts[name]
    a_map = layout.to_map(act).float()
    cells, pixels = math.prod(layout.grid), math.prod(fwd.spatial)
    push = _pushforward(explainer, fwd.image, name, act)
    _load_forward_ad()
    table = torch.empty((len(classes), cells, pixels), dtype=torch.float32, device=act.device)
    chunk = batch_size_for(fwd.image[0])
    pick = torch.tensor(classes, device=act.device)
    with torch.no_grad():
        for lo in range(0, cells, chunk):
            idx = torch.arange(lo, min(cells, lo + chunk), device=act.device)
            tangents = _to_layer(_tangents(method, a_map, idx), layout).to(act.dtype)
            with guarded(explainer.model):  # per chunk: other requests for the model run in between
                out = push(tangents)  # (n, 1, n_classes, *S)
            table[:, idx] = out[:, 0].index_select(1, pick).flatten(2).transpose(0, 1).float()
    if not bool(torch.isfinite(table).all()):
        raise ModelError(f"the model's derivatives from layer {name!r} are not finite (NaN or inf); "
                         "explain each region with explainer.explain or choose another layer.")
    return table


@cache
def _load_forward_ad() -> None:
    """torch loads its forward-mode rules on first use and warns then about its own use of
    ``torch.jit.script``; load them once, without that warning reaching the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        torch.func.jvp(torch.sin, (torch.zeros(1),), (torch.ones(1),))


def _tangents(method: Method, a_map: Tensor, idx: Tensor) -> Tensor:
    """``T_v = dL(v)/dG`` for the cells ``idx``: ``(n, 1, K, *grid)``, from the method's weights."""
    g = torch.zeros((1, *a_map.shape), dtype=a_map.dtype, device=a_map.device, requires_grad=True)
    with torch.enable_grad():
        cam = (method.weights(a_map, g) * a_map).sum(-(a_map.ndim - 1)).reshape(-1)
        basis = torch.zeros((len(idx), cam.numel()), dtype=cam.dtype, device=cam.device)
        basis[torch.arange(len(idx)), idx] = 1
        (t,) = torch.autograd.grad(cam, g, grad_outputs=basis, is_grads_batched=True)
    return t[:, 0]


def _to_layer(t: Tensor, layout: Layout) -> Tensor:
    """A map-shaped ``(..., K, *grid)`` tensor in the layer's own layout (the inverse of
    :meth:`Layout.to_map`; leading extra tokens get zeros)."""
    if layout.kind == "spatial":
        return t
    tokens = t.flatten(-len(layout.grid)).transpose(-1, -2)
    pad = tokens.new_zeros((*tokens.shape[:-2], layout.extra_tokens, tokens.shape[-1]))
    return torch.cat([pad, tokens], dim=-2)


def _pushforward(explainer: Explainer, x: Tensor, name: str, act: Tensor) -> Callable[[Tensor], Tensor]:
    """``T ↦ d logits(A + εT)/dε`` at the layer's activation ``A`` for a batch of tangents
    ``T (n, *A.shape)``: one vmapped jvp, or one jvp per tangent where vmap fails."""
    module = explainer.model.get_submodule(name)
    owner = threading.get_ident()

    def logits_of(a: Tensor) -> Tensor:
        calls = 0

        def swap(mod: nn.Module, args: Any, output: Any) -> Any:
            nonlocal calls
            if threading.get_ident() != owner:
                return None
            calls += 1
            _, key = main_tensor(output)
            return replace_main(output, key, a.clone())  # later in-place ops must not reach a

        handle = module.register_forward_hook(swap)
        try:
            out = call_model(explainer.model, x)
        finally:
            handle.remove()
        if calls != 1:
            raise LayerError(f"layer {name!r} runs {calls} times in one forward pass; precomputed maps need "
                             "a layer that runs once (explain each region with explainer.explain).")
        return logits_at_input_size(read_logits(out, explainer.output), x).per_class()

    def jvp(t: Tensor) -> Tensor:
        return torch.func.jvp(logits_of, (act,), (t,))[1]

    batched = True

    def push(tangents: Tensor) -> Tensor:
        nonlocal batched
        if batched:
            try:
                return torch.func.vmap(jvp)(tangents)
            except (ModelError, RuntimeError, NotImplementedError):
                batched = False  # an operation without a batching rule: one jvp per tangent from now on
        try:
            return torch.stack([jvp(t) for t in tangents])
        except (ModelError, RuntimeError, NotImplementedError) as e:
            raise ModelError(
                f"cannot take forward-mode derivatives of the model from layer {name!r} ({e}); explain "
                "each region with explainer.explain (one backward pass each) instead."
            ) from e
    return push
