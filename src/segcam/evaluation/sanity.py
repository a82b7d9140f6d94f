"""Sanity checks for saliency maps (Adebayo et al., 2018): does the map depend on the model?

* :func:`cascading_randomisation` re-draws the model's parameters from the logits end down, one
  step at a time, and compares each step's map with the trained model's map (Spearman's rho of
  the ranks and SSIM, :mod:`.similarity`).  The *telling* step is the one where every
  parameterised module above the explained layer is random while the layer's own activations are
  untouched: a map that is still alike there shows the activations, not the decision.  It passes
  when Spearman's rho at that step is below ``threshold``.
* :func:`label_randomisation` compares the map of a model with that of the same architecture
  trained on shuffled labels: a map that barely changes does not reflect what was learned.

Order of the cascade: the parameterised modules (those with parameters of their own) in the order
their forwards first finish in one forward pass, reversed.  A module is *above* the layer when it
first finishes after the layer's forward (its last call, the one segcam explains) and is neither
inside the layer nor one of its ancestors (a container's own parameters may act before the
layer).  Modules that never run are left out.  So a U-Net's encoder stages before the explained
layer are below it even though the decoder reads their skips.  For a method on the input's pixels
(``saliency``, ``rise``) every module is above.

Randomisation draws each parameter afresh from ``N(0, s²)`` with ``s`` the standard deviation of
its trained values (0.02 where that is 0), from one generator seeded by ``seed``, in cascade
order, so the module and block granularities build the same random models.  Buffers (BatchNorm's
running statistics) are kept.  All of it happens on a ``copy.deepcopy`` of the user's model.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_float, check_int, shown
from ..core import INPUT, Target, guarded, model_lock
from ..core.image import as_batch
from ..core.model import call_model, device_and_dtype
from ..core.regions import mask
from ..errors import LayerNotFoundError, SegcamError, SegcamWarning
from ..explainer import Explainer
from ..methods import Method, create
from .similarity import spearman, ssim

__all__ = ["LabelRandomisation", "SanityResult", "SanityStep", "cascading_randomisation", "label_randomisation"]

GRANULARITIES = ("block", "module")
FALLBACK_STD = 0.02
CONTAINERS = (nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class SanityStep:
    """Step ``index`` (from 1) of a cascade: the modules randomised at this step (on top of those
    of the steps before), and the similarity of its map to the trained model's map; ``flat``
    when that map is one value everywhere (a random model often gives an all-zero map)."""

    index: int
    randomised: tuple[str, ...]
    spearman: float
    ssim: float
    telling: bool
    flat: bool = False  # the step's map is one value everywhere (all zero, say): rho 0 by convention


@dataclass(frozen=True)
class SanityResult:
    """A cascading randomisation of ``method`` at ``layer``; ``changed``: whether the map with
    every parameter random is unlike the trained one (Spearman's rho below ``threshold``).

    ``noise`` (methods that sample, with a ``seed`` option such as RISE): the rank correlation of
    the trained model's map with its own map from the next seed.  The randomised maps use that
    next seed too, so the trained and randomised maps never share their random masks; when the
    method does not even agree with itself (``noise < threshold``) the check cannot tell, and
    ``passed`` is False with a verdict that says so.
    """

    method: str
    layer: str
    steps: list[SanityStep]
    telling_step: int | None
    threshold: float
    passed: bool
    verdict: str
    changed: bool
    noise: float | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per step, for a results table."""
        return [{"method": self.method, "layer": self.layer, "step": s.index, "randomised": ", ".join(s.randomised),
                 "spearman": s.spearman, "ssim": s.ssim, "telling": s.telling, "flat": s.flat, "noise": self.noise}
                for s in self.steps]


@dataclass(frozen=True)
class LabelRandomisation:
    """The map of a model against that of a model trained on shuffled labels."""

    method: str
    layer: str
    spearman: float
    ssim: float
    threshold: float
    passed: bool
    verdict: str
    noise: float | None = None  # as in SanityResult

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cascading_randomisation(model: nn.Module, image: Any, target: Any, *, method: str | Method = "seg-grad-cam",
                            layer: str | nn.Module | None = None, options: Mapping[str, Any] | None = None,
                            granularity: str = "block", seed: int = 0, threshold: float = 0.5,
                            **explainer_kwargs: Any) -> SanityResult:
    """Randomise a copy of ``model`` from the logits down and compare each step's map with the
    trained model's (``map[0]``, at the input's size).

    ``granularity="module"`` makes one step per parameterised module, ``"block"`` one per run of
    modules of the same top-level block (``stem``; ``downs.0`` inside a ModuleList or ModuleDict),
    never mixing modules above and below the layer.  ``explainer_kwargs`` go to
    :class:`~segcam.Explainer`.  Passed: Spearman's rho at the telling step ``< threshold``.
    """
    chosen, threshold, kwargs = _common(model, method, options, threshold, explainer_kwargs)
    check_choice(granularity, "granularity", GRANULARITIES)
    seed = check_int(seed, "seed", low=0)
    name = _layer(Explainer(model, **kwargs), image, layer, chosen)
    with model_lock(model):
        clone = copy.deepcopy(model)
    explainer = Explainer(clone, **kwargs)
    trained, target = _trained(explainer, image, target, chosen, name)
    resampled, noise = _resampled(chosen), None
    if resampled is not None:  # a sampling method: its own seed-to-seed agreement is the floor
        chosen = resampled
        noise = _similarity(trained, _map(explainer, image, target, chosen, name))[0]
    x, _ = as_batch(image, explainer.spatial_dims, *device_and_dtype(clone))
    groups, telling = cascade(clone, x, name, granularity)
    gen = torch.Generator().manual_seed(seed)
    steps = []
    with warnings.catch_warnings():  # a random model's all-zero map is a finding here, not a mistake
        warnings.simplefilter("ignore", SegcamWarning)
        for index, group in enumerate(groups, start=1):
            randomise([clone.get_submodule(n) for n in group], gen)
            now = _map(explainer, image, target, chosen, name)
            rho, sim = _similarity(trained, now)
            steps.append(SanityStep(index, group, rho, sim, index == telling, bool((now == now.flatten()[0]).all())))
    noisy = noise is not None and noise < threshold
    passed = telling is not None and steps[telling - 1].spearman < threshold and not noisy
    verdict = (_noisy_verdict(noise, threshold) if noisy and telling is not None
               else _verdict(steps, telling, name, threshold))
    return SanityResult(_method_name(chosen), name, steps, telling, threshold, passed, verdict,
                        changed=steps[-1].spearman < threshold, noise=noise)


def _resampled(method: Method) -> Method | None:
    """``method`` with its ``seed`` option moved on by one, for methods that sample; else None."""
    seed = getattr(method, "seed", None)
    if isinstance(seed, bool) or not isinstance(seed, int):
        return None
    return dataclasses.replace(method, seed=seed + 1)


def _noisy_verdict(noise: float, threshold: float) -> str:
    return (f"cannot tell: the method's own maps from two seeds agree at a rank correlation of only {noise:.2f} "
            f"(below {threshold:g}), so a change under randomisation is indistinguishable from sampling noise; "
            "draw more samples (e.g. a larger n_masks).")


def label_randomisation(model: nn.Module, random_model: nn.Module, image: Any, target: Any, *,
                        method: str | Method = "seg-grad-cam", layer: str | nn.Module | None = None,
                        options: Mapping[str, Any] | None = None, threshold: float = 0.5,
                        **explainer_kwargs: Any) -> LabelRandomisation:
    """Compare the map of ``model`` with that of ``random_model`` (the same architecture trained
    on shuffled labels) at the same layer; passed: Spearman's rho ``< threshold``."""
    chosen, threshold, kwargs = _common(model, method, options, threshold, explainer_kwargs)
    if not isinstance(random_model, nn.Module):
        raise SegcamError(f"random_model must be a torch.nn.Module, got {shown(random_model)}.")
    explainer, other = Explainer(model, **kwargs), Explainer(random_model, **kwargs)
    name = _layer(explainer, image, layer, chosen)
    if name != INPUT:
        try:
            other.resolve_layer(name)
        except LayerNotFoundError:
            raise SegcamError(f"random_model has no layer {name!r}; it must have the architecture of model "
                              "(the same network trained on shuffled labels).") from None
    trained, target = _trained(explainer, image, target, chosen, name)
    resampled, noise = _resampled(chosen), None
    if resampled is not None:  # never let the two models share their random samples
        chosen = resampled
        noise = _similarity(trained, _map(explainer, image, target, chosen, name))[0]
    rho, sim = _similarity(trained, _map(other, image, target, chosen, name))
    noisy = noise is not None and noise < threshold
    passed = rho < threshold and not noisy
    verdict = _noisy_verdict(noise, threshold) if noisy else (
        f"{'passes' if passed else 'FAILS'} the label randomisation check: the map of the model trained on "
        f"shuffled labels has a rank correlation of {rho:.2f} with the trained model's map"
        + ("." if passed else " — it does not reflect what the model learned."))
    return LabelRandomisation(_method_name(chosen), name, rho, sim, threshold, passed, verdict, noise)


def cascade(model: nn.Module, x: Tensor, layer: str, granularity: str) -> tuple[list[tuple[str, ...]], int | None]:
    """The steps of the cascade for ``model`` on input ``x`` (names of modules per step), and the
    telling step (1-based; ``None`` when no parameterised module lies above ``layer``)."""
    first, last = finish_order(model, x)
    owners = [n for n, m in model.named_modules() if n in first and next(m.parameters(recurse=False), None) is not None]
    owners.sort(key=lambda n: -first[n])

    def is_above(n: str) -> bool:
        if layer == INPUT:
            return True
        related = n == layer or n.startswith(layer + ".") or n == "" or layer.startswith(n + ".")
        return not related and first[n] > last[layer]

    above = _grouped(model, [n for n in owners if is_above(n)], granularity)
    below = _grouped(model, [n for n in owners if not is_above(n)], granularity)
    if not above and not below:
        raise SegcamError("the model has no parameters that take part in its forward pass, so there is "
                          "nothing to randomise; check it with a model that has trained weights.")
    return above + below, len(above) or None


def finish_order(model: nn.Module, x: Tensor) -> tuple[dict[str, int], dict[str, int]]:
    """When each module's forward first and last finished (a running count) in one guarded
    forward pass of ``x``; the hooks are removed again."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    count = itertools.count()

    def record(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            last[name] = next(count)
            first.setdefault(name, last[name])
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules()]
    try:
        with guarded(model), torch.no_grad():
            call_model(model, x)
    finally:
        for h in handles:
            h.remove()
    return first, last


@torch.no_grad()
def randomise(modules: Sequence[nn.Module], gen: torch.Generator) -> None:
    """Re-draw each module's own parameters from ``N(0, std(trained values)²)`` (std 0.02 where
    that is 0 or undefined) with ``gen``; buffers are left alone."""
    for module in modules:
        for p in module.parameters(recurse=False):
            std = float(p.detach().double().std()) if p.numel() > 1 else 0.0
            std = std if std > 0 else FALLBACK_STD
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * std)


def _grouped(model: nn.Module, names: list[str], granularity: str) -> list[tuple[str, ...]]:
    if granularity == "module":
        return [(n,) for n in names]
    return [tuple(run) for _, run in itertools.groupby(names, key=lambda n: _block(model, n))]


def _block(model: nn.Module, name: str) -> str:
    """The top-level block of module ``name``: its first name part, two inside a container."""
    parts = name.split(".")
    if len(parts) > 1 and isinstance(model.get_submodule(parts[0]), CONTAINERS):
        return ".".join(parts[:2])
    return parts[0]


def _verdict(steps: list[SanityStep], telling: int | None, layer: str, threshold: float) -> str:
    if telling is None:
        return (f"cannot be checked at layer {layer}: no module with parameters lies above it; explain a "
                "layer further from the logits.")
    rho = steps[telling - 1].spearman
    where = "with every layer random" if layer == INPUT else f"with every layer above {layer} random"
    if rho < threshold:
        return (f"passes the randomisation check: {where} its map's rank correlation with the trained model's "
                f"map falls to {rho:.2f} (below {threshold:g}) — it depends on what the model learned.")
    shows = "the image or its own sampling, not the model" if layer == INPUT else "the activations, not the decision"
    return (f"FAILS the randomisation check: {where} its map keeps a rank correlation of {rho:.2f} with the "
            f"trained model's map — it shows {shows}.")


def _map(explainer: Explainer, image: Any, target: Any, method: Method, layer: str) -> Tensor:
    return explainer.explain(image, target, method=method, layer=None if layer == INPUT else layer).map[0]


def _trained(explainer: Explainer, image: Any, target: Any, method: Method, layer: str) -> tuple[Tensor, Target]:
    """The trained model's map, and the target with its region fixed to the pixels it covers
    for the trained model: a region that follows the prediction (a predicted class, an object)
    must not move, or vanish, when the randomised model predicts something else."""
    exp = explainer.explain(image, target, method=method, layer=None if layer == INPUT else layer)
    return exp.map[0], Target(exp.cls, mask(exp.region[0]), reduce=exp.target.reduce)


def _similarity(trained: Tensor, other: Tensor) -> tuple[float, float]:
    """Spearman's rho and SSIM; SSIM's data range is the larger of the two maps' ranges (1 for
    segcam's default maps, which run from 0 to 1), or 1 for two flat maps."""
    span = max(float(trained.max() - trained.min()), float(other.max() - other.min()))
    return spearman(trained, other), ssim(trained, other, data_range=span if span > 0 else 1.0)


def _layer(explainer: Explainer, image: Any, layer: Any, method: Method) -> str:
    """The module name to explain (``"<input>"`` for methods on the input's pixels)."""
    if method.on_input:
        if layer is not None and not (isinstance(layer, str) and layer == INPUT):
            raise SegcamError(f"method {_method_name(method)!r} explains the input's pixels and takes no layer; "
                              "leave layer=None.")
        return INPUT
    return explainer.default_layer(image) if layer is None else explainer.resolve_layer(layer)


def _common(model: Any, method: Any, options: Any, threshold: Any,
            kwargs: dict[str, Any]) -> tuple[Method, float, dict[str, Any]]:
    """The checks both checks share: model, method with options, threshold, explainer keywords."""
    if not isinstance(model, nn.Module):
        raise SegcamError(f"model must be a torch.nn.Module, got {shown(model)}.")
    if options is not None and not isinstance(options, Mapping):
        raise SegcamError(f"options must be a dict of method options (e.g. {{'window': 2}}), got {shown(options)}.")
    allowed = [p for p in inspect.signature(Explainer).parameters if p != "model"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise SegcamError(f"unknown keyword(s) {', '.join(unknown)}; method options go in options={{...}}, "
                          f"and the other keywords are Explainer's: {', '.join(allowed)}.")
    threshold = check_float(threshold, "threshold", low=-1, high=1, open_low=True)
    return create(method, dict(options or {})), threshold, kwargs


def _method_name(method: Method) -> str:
    return method.name or type(method).__name__
