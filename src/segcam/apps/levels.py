"""Training to mIoU levels, as the U-Net vs SegFormer study ran its training-progress comparison.

The study compared Grad-CAM maps of U-Nets trained until the test mIoU reached 30 %, 50 %, 70 %
and 90 %.  :func:`train_levels` trains a zoo family (or the default U-Net) once, evaluates the
test mIoU every few steps and keeps one checkpoint per level, saved at the first evaluation
that reaches it; ``segcam progress`` then draws the checkpoints side by side, headed by level.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..data import CLASS_NAMES
from ..models import DEFAULT_ARCH, UNet, save_weights, zoo
from .train import (
    EVAL_EVERY,
    MiouLevels,
    cache_dir,
    check_levels,
    checkpoint_meta,
    eval_scores,
    level_text,
    positive,
    train,
)


@dataclass(frozen=True)
class LevelCheckpoint:
    """A checkpoint kept when the evaluated test mIoU first reached ``level``."""

    level: float
    step: int
    miou: float
    path: Path


@dataclass(frozen=True)
class LevelRun:
    """What :func:`train_levels` kept: the reached levels' checkpoints (lowest level first),
    the levels never reached, the steps trained and the best mIoU any evaluation measured."""

    checkpoints: tuple[LevelCheckpoint, ...]
    unreached: tuple[float, ...]
    steps: int
    best: float

    @property
    def paths(self) -> list[Path]:
        """The checkpoint files, lowest level first."""
        return [c.path for c in self.checkpoints]

    def as_record(self, key: Mapping[str, Any]) -> dict[str, Any]:
        """JSON-ready form, with the settings ``key`` it was trained with (for the cache)."""
        kept = [{"level": c.level, "step": c.step, "miou": c.miou, "file": c.path.name} for c in self.checkpoints]
        return {"key": dict(key), "checkpoints": kept, "unreached": list(self.unreached),
                "steps": self.steps, "best": self.best}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], folder: Path) -> LevelRun:
        """Inverse of :meth:`as_record`, with the files in ``folder``."""
        kept = tuple(LevelCheckpoint(c["level"], c["step"], c["miou"], folder / c["file"]) for c in record["checkpoints"])
        return cls(kept, tuple(record["unreached"]), record["steps"], record["best"])


def _cached_run(record: Path, key: Mapping[str, Any]) -> LevelRun | None:
    """The run ``record`` describes if it was trained with settings ``key`` and its files exist."""
    try:
        saved = json.loads(record.read_text())
        run = LevelRun.from_record(saved, record.parent) if saved["key"] == dict(key) else None
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: train again
        return None
    return run if run is not None and all(p.exists() for p in run.paths) else None


def train_levels(
    levels: str | Sequence[float],
    family: str | None = None,
    steps: int | None = None,
    eval_every: int = EVAL_EVERY,
    scenes: int | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    evaluate: Callable[[nn.Module], Mapping[str, Any]] = eval_scores,
) -> LevelRun:
    """Train zoo ``family`` (``None``: the default U-Net) and keep a checkpoint when the test mIoU
    first reaches each of ``levels``, as the U-Net vs SegFormer study compared models trained
    to an mIoU of 0.3, 0.5, 0.7 and 0.9.

    The mIoU is ``evaluate(model)["miou"]`` (default: :data:`EVAL_SCENES` fresh test scenes)
    every ``eval_every`` steps and at the last one.  The checkpoint of level ``l`` is
    ``{family}-{steps}steps-miou{l:.2f}.safetensors`` in :func:`cache_dir`, its metadata holding
    ``miou_level``, ``step`` and the ``test`` scores that reached it.  Training stops when every
    level is reached; levels never reached are logged and listed in :attr:`LevelRun.unreached`.
    ``steps`` and ``scenes`` default to :func:`train_family`'s (a family) or
    :func:`train_default`'s (the default U-Net).  A run with the same family, steps, levels,
    ``eval_every`` and ``scenes`` is reused unless ``force`` (pass it after changing ``evaluate``).
    """
    levels, eval_every = check_levels(levels), positive(eval_every, "eval_every")
    # the recipes of train_default (train's defaults) and train_family
    lr, default_steps, default_scenes = (3e-3, 2400, 4000) if family is None else (1e-3, zoo.family(family).train_steps, 1000)
    steps = positive(default_steps if steps is None else steps, "steps")
    scenes = positive(default_scenes if scenes is None else scenes, "scenes")
    stem = f"{family or 'default'}-{steps}steps"
    key = {"levels": list(levels), "eval_every": eval_every, "scenes": scenes}
    record = cache_dir() / f"{stem}-miou-levels.json"
    run = None if force else _cached_run(record, key)
    if run is not None:
        log(f"using cached {stem} mIoU-level checkpoints in {cache_dir()}")
    else:
        run = _train_to_levels(levels, family, steps, eval_every, scenes, lr, stem, log, evaluate)
        record.write_text(json.dumps(run.as_record(key), indent=1))
    if run.unreached:
        log(f"mIoU levels not reached in {run.steps} steps: {', '.join(map(level_text, run.unreached))} "
            f"(best {run.best:.3f}); train longer (more steps) or lower them.")
    return run


def _train_to_levels(
    levels: tuple[float, ...], family: str | None, steps: int, eval_every: int, scenes: int, lr: float,
    stem: str, log: Callable[[str], None], evaluate: Callable[[nn.Module], Mapping[str, Any]],
) -> LevelRun:
    """Train and save the level checkpoints (see :func:`train_levels`)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    kept: list[LevelCheckpoint] = []

    def save(level: float, step: int, model: nn.Module, test: Mapping[str, Any]) -> None:
        path = cache_dir() / f"{stem}-miou{level_text(level)}.safetensors"
        meta = {**checkpoint_meta(family, step, steps, test), "miou_level": level, "eval_every": eval_every}
        save_weights(model, path, meta)
        kept.append(LevelCheckpoint(level, step, float(test["miou"]), path))
        log(f"{stem} step {step}: test mIoU {test['miou']:.3f} ≥ {level_text(level)}; wrote {path}")

    watch = MiouLevels(levels, save, evaluate, eval_every)
    build = (lambda: UNet(**DEFAULT_ARCH)) if family is None else (lambda: zoo.build(family, len(CLASS_NAMES)))
    train(steps=steps, lr=lr, scenes=scenes, log=log, build=build, miou_levels=watch)
    return LevelRun(tuple(kept), tuple(watch.pending), watch.step, watch.best)
