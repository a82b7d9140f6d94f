"""The scored benchmark: every method, at several layers, on every case of a set of images,
measured by :func:`~segcam.evaluation.scoring.score_explanation`, plus the sanity checks.

One row per (image, case, method, layer): the measurements, the region score and the time per
explanation (the wall time of the method's call over all of an image's cases and layers,
divided by their number: methods that share a forward pass across targets, as RISE shares its
masked images, get the credit).  RISE's reference map for the agreement columns uses many more
masks than the RISE under test and another seed, so RISE is not compared with itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor, nn

from ..checks import check_callable, check_int, check_str, shown
from ..core import INPUT, blocks
from ..errors import SegcamError
from ..explainer import Explainer
from ..methods import METHODS, create
from .cases import ImageCases
from .sanity import SanityResult, cascading_randomisation, label_randomisation
from .scoring import Curves, Scoring, score_explanation

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Candidate:
    """A method with its options under one label, e.g. ``seg-xres-cam (mean)``."""

    label: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def on_input(self) -> bool:
        return bool(create(self.method, {}).on_input)


def candidates(methods: Sequence[str] | None = None, rise_masks: int = 2000) -> list[Candidate]:
    """Every registered method with its defaults (or those in ``methods``), RISE with
    ``rise_masks`` masks, and Seg-XRes-CAM also with mean pooling (the paper's comparison)."""
    if methods is not None and (isinstance(methods, (str, bytes)) or not isinstance(methods, Sequence) or not methods):
        raise SegcamError(f"methods must be a non-empty list of method names, got {shown(methods)}; "
                          "e.g. ['seg-grad-cam', 'rise'].")
    names = sorted(METHODS) if methods is None else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SegcamError(f"unknown method(s) {unknown}; choose among {sorted(METHODS)}.")
    rise_masks = check_int(rise_masks, "rise_masks", low=1)
    out = []
    for name in names:
        if name == "rise":
            out.append(Candidate("rise", name, {"n_masks": rise_masks}))
        elif name == "seg-xres-cam":
            out += [Candidate("seg-xres-cam (max)", name, {"pool": "max"}),
                    Candidate("seg-xres-cam (mean)", name, {"pool": "mean"})]
        else:
            out.append(Candidate(name, name, {}))
    return out


@dataclass(frozen=True)
class BenchmarkConfig:
    """What the benchmark runs: ``candidates`` (``None``: :func:`candidates` of every method
    registered when the run starts) at ``layers`` (``None``: :func:`benchmark_layers`),
    a RISE reference of ``reference_masks`` masks, ``scoring``; the cascading randomisation on
    the whole-class case of the first ``sanity_images`` images (a method with an ``n_masks``
    option, RISE, there with ``sanity_rise_masks`` masks), grouped by ``granularity``."""

    candidates: tuple[Candidate, ...] | None = None
    layers: tuple[str, ...] | None = None
    reference_masks: int = 4000
    reference_seed: int = 1
    scoring: Scoring = Scoring()
    sanity_images: int = 2
    sanity_rise_masks: int = 300
    granularity: str = "block"

    def __post_init__(self) -> None:
        if self.candidates is not None and (
                isinstance(self.candidates, (str, bytes)) or not isinstance(self.candidates, Sequence)
                or not self.candidates or not all(isinstance(c, Candidate) for c in self.candidates)):
            raise SegcamError(f"candidates must be a non-empty list of Candidate, got {shown(self.candidates)}.")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(check_str(n, "layer") for n in self.layers))
        check_int(self.reference_masks, "reference_masks", low=1)
        check_int(self.reference_seed, "reference_seed", low=0)
        check_int(self.sanity_images, "sanity_images", low=0)
        check_int(self.sanity_rise_masks, "sanity_rise_masks", low=1)
        if not isinstance(self.scoring, Scoring):
            raise SegcamError(f"scoring must be a segcam.evaluation.Scoring, got {shown(self.scoring)}.")


@dataclass
class BenchmarkResult:
    """Rows of measurements, mean-able curves, sanity checks and example maps."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    sanity: list[SanityResult] = field(default_factory=list)
    sanity_rows: list[dict[str, Any]] = field(default_factory=list)
    examples: list[tuple[ImageCases, Tensor, dict[str, Tensor]]] = field(default_factory=list)  # image, region, maps
    layers: list[str] = field(default_factory=list)


def benchmark_layers(explainer: Explainer, image: Tensor) -> list[str]:
    """The bottleneck first, then an encoder layer two before it and a decoder layer half way
    from it to the output: among the model's blocks (:func:`segcam.core.blocks`), or, when the
    bottleneck is not a block, among the explainable layers as deep in the module tree; layers
    of one cell and the output head are left out.  Fewer than three only when the model has
    fewer such layers."""
    bottleneck = explainer.default_layer(image)
    infos = [i for i in explainer.layers(image) if i.layout is not None and any(s > 1 for s in i.layout.grid)]
    names = blocks(explainer.model, infos)[:-1]
    if bottleneck not in names:
        depth = bottleneck.count(".")
        names = list(dict.fromkeys(i.name for i in infos if i.name.count(".") <= depth))[:-1]
    if bottleneck not in names:
        return [bottleneck]
    d = names.index(bottleneck)
    before = names[max(0, d - 2)] if d else None
    after = names[min(len(names) - 1, d + max(1, (len(names) - d) // 2))] if d < len(names) - 1 else None
    chosen = [bottleneck, *(n for n in (before, after) if n is not None)]
    spare = [n for n in reversed(names) if n not in chosen]  # at an end: take another from the far side
    return chosen + spare[: max(0, 3 - len(chosen))]


def run_benchmark(
    explainer: Explainer,
    items: Sequence[ImageCases],
    config: BenchmarkConfig = BenchmarkConfig(),
    *,
    model_name: str = "model",
    random_label_model: nn.Module | None = None,
    examples: int = 3,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Run ``config`` on ``items``; ``random_label_model`` (the same architecture trained on
    shuffled labels) adds the label-randomisation check; ``progress(done, total, what)``."""
    if not isinstance(explainer, Explainer):
        raise SegcamError(f"explainer must be a segcam.Explainer, got {shown(explainer)}.")
    if not isinstance(config, BenchmarkConfig):
        raise SegcamError(f"config must be a BenchmarkConfig, got {shown(config)}.")
    items = list(items)
    if not items or not all(isinstance(s, ImageCases) for s in items):
        raise SegcamError("run_benchmark needs at least one image with a case to explain; "
                          "check that the model predicts objects in the images given.")
    report = check_callable(progress, "progress") if progress is not None else (lambda *a: None)
    model_name = check_str(model_name, "model_name")
    examples = check_int(examples, "examples", low=0)
    if config.candidates is None:
        config = replace(config, candidates=tuple(candidates()))
    layers = list(config.layers) if config.layers else benchmark_layers(explainer, items[0].image)
    result = BenchmarkResult(layers=layers)
    sanity_items = items[: config.sanity_images]
    total = len(items) + len(sanity_items)
    for done, item in enumerate(items):
        report(done, total, item.name)
        _run_image(explainer, item, config, layers, model_name, result, keep=done < examples)
    for done, item in enumerate(sanity_items, start=len(items)):
        report(done, total, f"sanity checks, {item.name}")
        _run_sanity(explainer, item, config, layers, model_name, random_label_model, result)
    report(total, total, "done")
    return result


def _run_image(explainer: Explainer, item: ImageCases, config: BenchmarkConfig, layers: list[str],
                 model_name: str, result: BenchmarkResult, keep: bool) -> None:
    targets = [c.target for c in item.cases]
    reference = explainer.explain_many(item.image, targets, method="rise", n_masks=config.reference_masks,
                                       seed=config.reference_seed)
    kept: dict[str, Tensor] = {}
    region = None
    for cand in config.candidates:
        at = [INPUT] if cand.on_input else layers
        start = time.perf_counter()
        exps = explainer.explain_many(item.image, targets, method=cand.method,
                                      layer=None if cand.on_input else at, **cand.options)
        ms = 1000 * (time.perf_counter() - start) / (len(targets) * len(at))
        for k, case in enumerate(item.cases):
            for layer in at:
                exp = exps[k] if cand.on_input else exps[k, layer]
                row, curves = score_explanation(explainer.model, item.image, exp, item.predicted,
                                                evidence=case.evidence, rise_map=reference[k].map[0],
                                                scoring=config.scoring)
                key = {"model": model_name, "image": item.name, "case": case.caption, "kind": case.kind,
                       "cls": exp.cls, "method": cand.label, "layer": "input" if cand.on_input else layer}
                result.rows.append({**key, "score": float(exp.score[0]), "ms": ms, **row})
                result.curves += _curve_rows(key, curves)
                if keep and case.kind == "object" and (cand.on_input or layer == layers[0]):
                    kept[cand.label], region = exp.map[0], exp.region[0]
    if keep and region is not None:
        result.examples.append((item, region, kept))


def _curve_rows(key: dict[str, Any], curves: Curves) -> list[dict[str, Any]]:
    return [{**key, "curve": name, "step": i, "x": x, "y": y}
            for name, (xs, ys) in curves.items() for i, (x, y) in enumerate(zip(xs, ys))]


def _run_sanity(explainer: Explainer, item: ImageCases, config: BenchmarkConfig, layers: list[str],
                model_name: str, random_model: nn.Module | None, result: BenchmarkResult) -> None:
    case = next((c for c in item.cases if c.kind == "class"), item.cases[0])
    for cand in config.candidates:
        options = {**cand.options, **({"n_masks": config.sanity_rise_masks} if "n_masks" in cand.options else {})}
        for layer in [None] if cand.on_input else layers:
            common = {"method": cand.method, "layer": layer, "options": options,
                      "layer_names": explainer.layer_names or None}
            key = {"model": model_name, "image": item.name, "case": case.caption, "method": cand.label,
                   "layer": "input" if layer is None else layer}
            check = cascading_randomisation(explainer.model, item.image, case.target,
                                            granularity=config.granularity, **common)
            result.sanity.append(check)
            result.sanity_rows += [{**r, **key, "test": "cascading", "passed": check.passed if r["telling"] else None,
                                    "verdict": check.verdict if r["telling"] else ""} for r in check.rows()]
            if random_model is not None:
                labels = label_randomisation(explainer.model, random_model, item.image, case.target, **common)
                result.sanity_rows.append({**key, "test": "labels", "step": 1, "randomised": "all (shuffled labels)",
                                           "spearman": labels.spearman, "ssim": labels.ssim, "telling": True,
                                           "passed": labels.passed, "verdict": labels.verdict})
