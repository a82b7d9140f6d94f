"""``segcam evaluate``: the scored benchmark of every method on data whose evidence is known
(or on the user's images), with the sanity checks, written as tables and a report.

Runs :func:`segcam.evaluation.run_benchmark` for each model and writes ``DIR/results.csv`` (and
``results.parquet`` when pyarrow is installed) with a row per explanation, ``curves.csv``,
``sanity.csv``, ``summary.json``, figures, and ``report.md`` / ``report.html``
(:mod:`.evaluation_report`).  The label-randomisation check retrains the model's architecture on
shuffled labels of the synthetic scenes, so it runs on the scenes, for models whose layers can be
re-initialised (every module with parameters has ``reset_parameters``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import Explainer, LoadedModel, SegcamError, load_model
from ..core import model_lock
from ..data import CLASS_NAMES, SceneConfig, load_image, load_labels, make_scene
from ..evaluation import BenchmarkConfig, Scoring, candidates, image_cases, run_benchmark, scene_cases
from .evaluation_report import ModelRun, write_outputs
from .train import train

EVAL_SEED = 3  # scenes of stream 3: never seen in training (0), testing (1) or the unbiased split (2)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")


@dataclass(frozen=True)
class Settings:
    """How big a run is: ``scenes`` images, RISE and reference masks, the scoring's sweep and
    steps, the sanity checks' images and RISE masks, and the shuffled-label training steps."""

    scenes: int = 16
    rise_masks: int = 2000
    reference_masks: int = 4000
    thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    steps: int = 10
    sanity_images: int = 2
    sanity_rise_masks: int = 300
    label_steps: int = 150
    label_scenes: int = 128
    examples: int = 3

    def __post_init__(self) -> None:
        for name in ("scenes", "rise_masks", "reference_masks", "steps", "label_steps", "label_scenes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SegcamError(f"Settings {name} must be a positive integer, got {value!r}.")
        for name in ("sanity_images", "examples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SegcamError(f"Settings {name} must be an integer ≥ 0, got {value!r}.")


FULL = Settings()
QUICK = Settings(scenes=3, rise_masks=300, reference_masks=600, thresholds=(0.2, 0.5, 0.8), steps=5,
                 sanity_images=1, sanity_rise_masks=100, label_steps=20, label_scenes=32, examples=2)


def fresh_copy(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` with every parameter re-drawn by its module's ``reset_parameters``
    (the architecture untrained), or ``None`` when a module with parameters has no such method."""
    with model_lock(model):
        copy = deepcopy(model)
    for module in copy.modules():
        if any(True for _ in module.parameters(recurse=False)):
            if not callable(getattr(module, "reset_parameters", None)):
                return None
            module.reset_parameters()
    return copy.train()


def shuffled_label_model(model: nn.Module, steps: int, scenes: int) -> nn.Module | None:
    """The model's architecture trained from scratch on synthetic scenes whose label maps are
    shuffled across images (Adebayo et al.'s label randomisation), or ``None`` when segcam
    cannot re-initialise the architecture.  The caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # reset_parameters draws from the global generator
        fresh = fresh_copy(model)
        if fresh is None:
            return None
        return train(steps=steps, scenes=scenes, build=lambda: fresh, shuffle_labels=True, log=lambda m: None)


def load_folder(images: Path, masks: Path | None, max_pixels: int | None) -> list[tuple[str, torch.Tensor, Any]]:
    """The images of a folder (sorted by name) with the label map of the same stem in ``masks``."""
    if not images.is_dir():
        raise SegcamError(f"--images {str(images)!r} is not a folder; give a folder of PNG/JPEG/TIFF/.npy images.")
    if masks is not None and not masks.is_dir():
        raise SegcamError(f"--masks {str(masks)!r} is not a folder; give the folder of label maps.")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SegcamError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(images)!r}.")
    out = []
    for path in files:
        truth = None
        if masks is not None:
            found = [m for m in masks.iterdir() if m.stem == path.stem and m.suffix.lower() in IMAGE_SUFFIXES]
            truth = load_labels(found[0], max_pixels=max_pixels) if found else None
        out.append((path.name, load_image(path, max_pixels=max_pixels), truth))
    return out


def evaluate(
    out: str | Path,
    models: Sequence[LoadedModel | tuple[str, LoadedModel]] = (),
    *,
    settings: Settings = FULL,
    images: Sequence[tuple[str, torch.Tensor, Any]] | None = None,
    methods: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[ModelRun]:
    """Benchmark each model (default: the bundled one) and write the tables and the report to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(settings, Settings):
        raise SegcamError(f"settings must be segcam.apps.evaluate.Settings (e.g. QUICK or FULL), got {settings!r}.")
    if not callable(log):
        raise SegcamError(f"log must be a function taking a line of text, got {log!r}.")
    named = [m if isinstance(m, tuple) else (getattr(m, "source", ""), m) for m in (models or [load_model("default")])]
    for name, loaded in named:
        if not isinstance(loaded, LoadedModel):
            raise SegcamError(f"models must be what segcam.load_model returns (or (name, that) pairs), got "
                              f"{type(loaded).__name__}; wrap your model with segcam.load_model or its spec.")
    config = BenchmarkConfig(
        candidates=tuple(candidates(methods, settings.rise_masks)), layers=tuple(layers) if layers else None,
        reference_masks=settings.reference_masks,
        scoring=Scoring(thresholds=settings.thresholds, steps=settings.steps),
        sanity_images=settings.sanity_images, sanity_rise_masks=settings.sanity_rise_masks)
    start, runs = time.perf_counter(), []
    for name, loaded in named:
        explainer = Explainer.from_loaded(loaded)
        if images is not None:
            items = list(image_cases(explainer, [(n, loaded.preprocess(x), t) for n, x, t in images]))
            data = f"{len(images)} user images"
        else:
            classes = explainer.forward(loaded.preprocess(make_scene(0, EVAL_SEED).image)).logits.n_classes
            if classes != len(CLASS_NAMES):
                raise SegcamError(f"{name} has {classes} classes, not the synthetic scenes' {len(CLASS_NAMES)}; "
                                  "evaluate it on your own images with --images DIR (and --masks DIR).")
            items = list(scene_cases(explainer, settings.scenes, EVAL_SEED, SceneConfig(),
                                        preprocess=loaded.preprocess))
            data = f"{len(items)} fresh synthetic scenes (seed {EVAL_SEED})"
        log(f"{name}: {data}, {len(items) * len(items[0].cases) if items else 0} cases")
        random_model = None if images is not None else shuffled_label_model(
            loaded.model, settings.label_steps, settings.label_scenes)
        label_check = (f"trained {settings.label_steps} steps on shuffled labels" if random_model is not None
                       else "skipped: needs the synthetic scenes and a model whose layers can be re-initialised")
        result = run_benchmark(explainer, items, config, model_name=name, random_label_model=random_model,
                               examples=settings.examples, progress=progress)
        runs.append(ModelRun(name, loaded, result, data, label_check))
    write_outputs(out, runs, vars(settings), command, time.perf_counter() - start)
    return runs


class ProgressBar:
    """A one-line progress bar on stderr with the rate and the time left."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int, what: str) -> None:
        elapsed = time.perf_counter() - self.start
        eta = f"{elapsed / done * (total - done):.0f} s left" if done else "…"
        filled = int(24 * done / max(total, 1))
        rate = f"{elapsed / done:.1f} s/image" if done else ""
        print(f"\r  [{'#' * filled}{'.' * (24 - filled)}] {done}/{total} {rate} {eta} · {what[:40]:<40}",
              end="" if done < total else "\n", file=sys.stderr, flush=True)


def add_parser(sub: Any, positive: Callable[[str], int | None], max_pixels: int) -> None:
    """The ``evaluate`` sub-command."""
    ev = sub.add_parser("evaluate", help="score every method on data with known evidence; write a report")
    ev.add_argument("--out", required=True, help="folder for report.md/.html, results.csv/.parquet, figures")
    ev.add_argument("--quick", action="store_true", help="a small run (under 2 minutes on 2 CPU cores)")
    ev.add_argument("--scenes", type=positive, help="number of synthetic scenes (default 16, quick 3)")
    ev.add_argument("--images", help="evaluate on a folder of your images instead of synthetic scenes")
    ev.add_argument("--masks", help="with --images: a folder of label maps with the images' file names")
    ev.add_argument("--methods", nargs="+", help="methods to score (default: every registered one)")
    ev.add_argument("--layers", nargs="+", help="layers (default: the bottleneck, one before, one after)")
    ev.add_argument("--model", action="append", help="a model spec as for `segcam explain` (repeat for several; "
                    "default: the bundled model)")
    ev.add_argument("--weights", action="append", help="weights for each --model, in order")
    ev.add_argument("--num-classes", type=positive, help="number of classes for zoo/torchvision/factory models")
    ev.add_argument("--allow-pickle", action="store_true", help="load pickled files you trust")
    ev.add_argument("--max-pixels", type=positive, default=max_pixels, help="refuse larger images ('none': no limit)")
    ev.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    settings = QUICK if args.quick else FULL
    if args.scenes is not None:
        settings = replace(settings, scenes=args.scenes)
    if args.masks and not args.images:
        raise SegcamError("--masks goes with --images (label maps for your images).")
    specs = args.model or ["default"]
    weights = args.weights or [None] * len(specs)
    if len(weights) != len(specs):
        raise SegcamError(f"give one --weights per --model ({len(specs)} models, {len(weights)} weights).")
    models = [(spec if w is None else f"{spec} ({Path(w).name})",
               load_model(spec, weights=w, num_classes=args.num_classes, allow_pickle=args.allow_pickle))
              for spec, w in zip(specs, weights)]
    images = load_folder(Path(args.images), Path(args.masks) if args.masks else None,
                         args.max_pixels) if args.images else None
    command = "segcam " + " ".join(shlex.quote(a) for a in getattr(args, "argv", ["evaluate", "…"]))
    runs = evaluate(args.out, models, settings=settings, images=images, methods=args.methods, layers=args.layers,
                    command=command, progress=ProgressBar())
    print(f"wrote {Path(args.out) / 'report.md'} ({sum(len(r.result.rows) for r in runs)} explanations scored)")
    return 0
