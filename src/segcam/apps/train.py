"""Train and evaluate the default model on the synthetic scenes of :mod:`segcam.data`.

``segcam train`` reproduces the shipped weights: a fixed training set of scenes (seed 0),
random flips, AdamW with a one-cycle schedule, cross-entropy, fixed torch seed.  The
evaluation splits are fresh scenes from other seeds: the biased test split (seed 1) and an
unbiased split (seed 2, ``bias="none"``) that shows how much the model leans on the bias tile.
Classes are weighted by ``sqrt(median frequency / frequency)`` (see :func:`class_weights`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import logits_at_input_size, read_logits
from ..data import CLASS_NAMES, SceneConfig, make_batch
from ..evaluation import evaluate_model
from ..models import DEFAULT_ARCH, UNet, save_weights, zoo

TRAIN_SEED, TEST_SEED, UNBIASED_SEED = 0, 1, 2


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
) -> nn.Module:
    """Train ``build()`` (default ``UNet(**DEFAULT_ARCH)``) from scratch on the synthetic scenes.

    Deterministic for a given seed on one machine.  ``checkpoint(step, model)`` is called (in
    eval mode) after each step in ``checkpoint_steps`` (for training-progress views).
    """
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    x_all, y_all = make_batch(0, scenes, TRAIN_SEED, config)
    log(f"generated {scenes} training scenes in {time.perf_counter() - t0:.0f} s")
    model = build()
    weights = class_weights(y_all, len(CLASS_NAMES))
    log("class weights " + ", ".join(f"{w:.2f}" for w in weights.tolist()))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(scenes, (batch,), generator=gen)
        x, y = x_all[idx], y_all[idx]
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
        meta = {"family": name, "num_classes": len(CLASS_NAMES), "step": step, "steps": steps,
                "class_names": list(CLASS_NAMES), "test": test}
        save_weights(model, paths[marks.index(step)], meta)
        log(f"{name} step {step}: test mIoU {test['miou']:.3f}")

    train(steps=steps, lr=lr, scenes=scenes, log=log,
          build=lambda: zoo.build(name, len(CLASS_NAMES)),
          checkpoint=save_checkpoint, checkpoint_steps=marks)
    return paths
