"""Train and evaluate the default model on the synthetic scenes of :mod:`segcam.data`.

``segcam train`` reproduces the shipped weights: a fixed training set of scenes (seed 0),
random flips, AdamW with a one-cycle schedule, cross-entropy, fixed torch seed.  The
evaluation splits are fresh scenes from other seeds: the biased test split (seed 1) and an
unbiased split (seed 2, ``bias="none"``) that shows how much the model leans on the bias tile.
Classes are weighted by ``sqrt(median frequency / frequency)`` (see :func:`class_weights`).

Training progress is kept as checkpoints, either at fixed steps (:func:`train_family`) or, as
the U-Net vs SegFormer study did, when the test mIoU first reaches given levels
(:class:`MiouLevels`; :func:`segcam.apps.levels.train_levels` trains to levels 0.3, 0.5, 0.7, 0.9).
"""

from __future__ import annotations

import json
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import logits_at_input_size, read_logits
from ..data import CLASS_NAMES, SceneConfig, make_batch
from ..errors import SegcamError
from ..evaluation import evaluate_model
from ..models import DEFAULT_ARCH, UNet, save_weights, zoo

TRAIN_SEED, TEST_SEED, UNBIASED_SEED = 0, 1, 2
EVAL_EVERY = 25  # steps between mIoU evaluations when checkpoints are kept by mIoU level
EVAL_SCENES = 64  # fresh test scenes per evaluation: about 0.6 s on 2 cores; `segcam progress`'s default set


def class_weights(labels: Tensor, n: int) -> Tensor:
    """``w_c = sqrt(median_f / f_c)`` from the classes' pixel frequencies ``f``.

    Background covers most pixels and the plus classes few; without weights the model settles
    for guessing one plus label (the cue's colour only matters on those few pixels).  The
    square root keeps background from being so cheap that objects bleed into it.
    """
    freq = torch.bincount(labels.flatten(), minlength=n).double() / labels.numel()
    return (freq.median() / freq.clamp_min(1e-12)).sqrt().clamp(max=10).float()


def logits_of(model: nn.Module, x: Tensor) -> Tensor:
    """The model's class logits for ``x`` at ``x``'s size, whatever form the model returns."""
    return logits_at_input_size(read_logits(model(x)), x).values


def check_levels(levels: str | Sequence[float], name: str = "miou_levels") -> tuple[float, ...]:
    """mIoU levels as sorted distinct floats in (0, 1); text is read as comma-separated numbers."""
    fix = "give mIoU levels strictly between 0 and 1, like 0.3,0.5,0.7,0.9 (an mIoU of 50% is 0.5)"
    if isinstance(levels, str):
        try:
            levels = [float(v) for v in levels.split(",") if v.strip()]
        except ValueError:
            raise SegcamError(f"{name} takes comma-separated numbers, got {levels!r}; {fix}.") from None
    if not isinstance(levels, Sequence) or not levels:
        raise SegcamError(f"{name} must be a non-empty list of numbers, got {levels!r}; {fix}.")
    for level in levels:  # NaN fails the range test
        if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
            raise SegcamError(f"{name} has {level!r}, not a number strictly between 0 and 1; {fix}.")
    return tuple(sorted({float(level) for level in levels}))


def level_text(level: float) -> str:
    """``0.5`` → ``"0.50"``: two decimals, more only when the level has them (file names, headers)."""
    return f"{level:.2f}" if round(level, 2) == level else repr(level)


def eval_scores(model: nn.Module) -> dict[str, Any]:
    """The model's scores on the :data:`EVAL_SCENES` first test scenes (seed :data:`TEST_SEED`)."""
    return evaluate_model(model, TEST_SEED, EVAL_SCENES, SceneConfig(), batch=32)


def positive(value: Any, name: str) -> int:
    """``value`` as an int ≥ 1 (bools refused), or a :class:`SegcamError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SegcamError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


class MiouLevels:
    """Keep a checkpoint when the test mIoU first reaches each of ``levels`` (for :func:`train`).

    Every ``every`` steps (and at the last step) ``evaluate(model)`` gives the test scores, a
    mapping with ``"miou"``.  Each pending level ``l`` with ``miou ≥ l`` is reached at that step:
    ``save(l, step, model, scores)`` is called once for it — for several levels at once when
    the mIoU jumps past several.  A later drop does not undo a level.  ``pending`` holds the
    levels not reached yet, ``best`` the highest mIoU seen, ``step`` the last step evaluated.
    """

    def __init__(
        self,
        levels: str | Sequence[float],
        save: Callable[[float, int, nn.Module, Mapping[str, Any]], None],
        evaluate: Callable[[nn.Module], Mapping[str, Any]] = eval_scores,
        every: int = EVAL_EVERY,
    ) -> None:
        if not callable(save) or not callable(evaluate):
            raise SegcamError("save and evaluate must be functions: save(level, step, model, scores) and "
                              "evaluate(model) → a mapping with 'miou'.")
        self.levels, self.save, self.evaluate = check_levels(levels), save, evaluate
        self.every = positive(every, "every (steps between evaluations)")
        self.pending, self.best, self.step = list(self.levels), 0.0, 0

    def due(self, step: int, steps: int) -> bool:
        """Whether ``step`` (of ``steps``) is an evaluation step."""
        return step % self.every == 0 or step == steps

    def observe(self, step: int, model: nn.Module) -> None:
        """Evaluate ``model`` at ``step`` and save a checkpoint for each level it now reaches."""
        scores = self.evaluate(model)
        miou = scores.get("miou") if isinstance(scores, Mapping) else None
        if isinstance(miou, bool) or not isinstance(miou, numbers.Real) or not 0 <= miou <= 1:
            got = f"'miou' {miou!r}" if isinstance(scores, Mapping) else repr(scores)
            raise SegcamError(f"evaluate(model) must return a mapping with 'miou' in [0, 1], got {got}.")
        self.best, self.step = max(self.best, float(miou)), step
        for level in [level for level in self.pending if miou >= level]:
            self.save(level, step, model, scores)
            self.pending.remove(level)


def train(
    steps: int = 2400,
    batch: int = 16,
    scenes: int = 4000,
    seed: int = 0,
    lr: float = 3e-3,
    config: SceneConfig = SceneConfig(),
    log: Callable[[str], None] = print,
    build: Callable[[], nn.Module] = lambda: UNet(**DEFAULT_ARCH),
    checkpoint: Callable[[int, nn.Module], None] | None = None,
    checkpoint_steps: Sequence[int] = (),
    miou_levels: MiouLevels | None = None,
    shuffle_labels: bool = False,
) -> nn.Module:
    """Train ``build()`` (default ``UNet(**DEFAULT_ARCH)``) from scratch on the synthetic scenes.

    Deterministic for a given seed on one machine.  ``checkpoint(step, model)`` is called (in
    eval mode) after each step in ``checkpoint_steps`` (for training-progress views).
    ``miou_levels`` evaluates the model every ``miou_levels.every`` steps and keeps a checkpoint
    when the mIoU first reaches each of its levels; training stops once all are reached.
    ``shuffle_labels`` pairs each training image with another image's label map (a fixed
    permutation): the model of Adebayo et al.'s label-randomisation check, which can only
    memorise, never learn what makes a pixel its class.
    """
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    x_all, y_all = make_batch(0, scenes, TRAIN_SEED, config)
    if shuffle_labels:
        y_all = y_all[torch.randperm(scenes, generator=torch.Generator().manual_seed(seed + 1))]
    log(f"generated {scenes} training scenes in {time.perf_counter() - t0:.0f} s")
    model = build()
    weights = class_weights(y_all, len(CLASS_NAMES))
    log("class weights " + ", ".join(f"{w:.2f}" for w in weights.tolist()))
    device = next(model.parameters()).device  # scenes are made on the CPU; train where the model is
    weights = weights.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(scenes, (batch,), generator=gen)
        x, y = x_all[idx].to(device), y_all[idx].to(device)
        for axis in range(config.dims):  # flips keep every label and cue meaning
            if torch.rand((), generator=gen) < 0.5:
                x, y = x.flip(axis + 2), y.flip(axis + 1)
        loss = F.cross_entropy(logits_of(model, x), y, weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            log(f"step {step}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - t0:.0f} s")
        if checkpoint is not None and step in checkpoint_steps:
            checkpoint(step, model.eval())
            model.train()
        if miou_levels is not None and miou_levels.due(step, steps):
            miou_levels.observe(step, model.eval())
            model.train()
            if not miou_levels.pending:
                log(f"every mIoU level reached at step {step} of {steps}; stopping there")
                break
    return model.eval()


def train_default(out: str | Path, steps: int = 2400, log: Callable[[str], None] = print) -> dict:
    """Train, evaluate on fresh biased and unbiased scenes, and save to ``out``."""
    t0 = time.perf_counter()
    model = train(steps=steps, log=log)
    minutes = (time.perf_counter() - t0) / 60
    test = evaluate_model(model, TEST_SEED, 512, SceneConfig())
    unbiased = evaluate_model(model, UNBIASED_SEED, 512, SceneConfig(bias="none"))
    meta = {
        "arch": dict(DEFAULT_ARCH),
        "class_names": list(CLASS_NAMES),
        "train": {"steps": steps, "batch": 16, "scenes": 4000, "seed": 0,
                  "minutes": round(minutes, 2), "threads": torch.get_num_threads(),
                  "torch": torch.__version__},
        "test": test,
        "unbiased": unbiased,
    }
    save_weights(model, out, meta)
    log(json.dumps({"test": test, "unbiased": unbiased}, indent=1))
    return meta


def cache_dir() -> Path:
    """Where trained zoo models are kept: ``$SEGCAM_CACHE`` or ``~/.cache/segcam``."""
    return Path(os.environ.get("SEGCAM_CACHE", Path.home() / ".cache" / "segcam"))


def checkpoint_meta(family: str | None, step: int, steps: int, test: Mapping[str, Any]) -> dict[str, Any]:
    """Weights metadata of a training checkpoint of zoo ``family`` (``None``: the default U-Net)."""
    model = {"arch": dict(DEFAULT_ARCH)} if family is None else {"family": family, "num_classes": len(CLASS_NAMES)}
    return {**model, "class_names": list(CLASS_NAMES), "step": step, "steps": steps, "test": dict(test)}


def train_family(
    name: str,
    steps: int | None = None,
    checkpoints: int = 3,
    lr: float = 1e-3,
    scenes: int = 1000,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Train a zoo family briefly on the synthetic scenes; cached checkpoints, last one last.

    ``steps`` defaults to the family's ``train_steps`` (a few minutes on 2 CPU cores).
    Saves ``checkpoints`` evenly spaced checkpoints (``{name}-{steps}steps-at{k}.safetensors`` in
    :func:`cache_dir`), each with its test mIoU on 128 fresh scenes in the metadata, so the
    training-progress grid can compare them.  Existing files are reused unless ``force``.
    """
    steps = steps or zoo.family(name).train_steps
    marks = sorted({max(1, steps * k // checkpoints) for k in range(1, checkpoints + 1)})
    paths = [cache_dir() / f"{name}-{steps}steps-at{k}.safetensors" for k in marks]
    if not force and all(p.exists() for p in paths):
        log(f"using cached {name} checkpoints in {cache_dir()}")
        return paths
    cache_dir().mkdir(parents=True, exist_ok=True)

    def save_checkpoint(step: int, model: nn.Module) -> None:
        test = evaluate_model(model, TEST_SEED, 128, SceneConfig(), batch=32)
        save_weights(model, paths[marks.index(step)], checkpoint_meta(name, step, steps, test))
        log(f"{name} step {step}: test mIoU {test['miou']:.3f}")

    train(steps=steps, lr=lr, scenes=scenes, log=log,
          build=lambda: zoo.build(name, len(CLASS_NAMES)),
          checkpoint=save_checkpoint, checkpoint_steps=marks)
    return paths

