"""Benchmark segcam's engine on the CPU against a training step and against pytorch-grad-cam.

For two models (segcam's U-Net and torchvision's DeepLabV3-MobileNetV3) it measures:

1. one Seg-Grad-CAM explanation of a pixel region ÷ one bare forward + backward pass
   (``model(x)`` logits ``.sum().backward()`` with parameters requiring grad);
2. K=8 regions via ``explain_many`` (``backward="loop"`` and ``"batched"``) ÷ one explanation;
3. the same single explanation in pytorch-grad-cam (its segmentation recipe) ÷ segcam,

and checks that pytorch-grad-cam's heatmap and segcam's agree (Pearson r > 0.99), and that
segcam leaves no ``.grad`` on the model's parameters.

A hand-written minimal Grad-CAM (hook, ``autograd.grad`` to the layer, frozen parameters) is
timed alongside as a reference: segcam ÷ reference is the engine's own overhead.

Timing: torch's default thread count, warm-up rounds, then N rounds in which every variant
runs once, in an order rotated from round to round (so drift and caches hit all variants
alike); each figure is a ratio of medians (and, in brackets, of minimums) of
``time.perf_counter`` differences.  Before each round the script waits (bounded) until other
processes leave the CPU, and records how busy they kept it.  ``bash benchmarks/run.sh -h``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import segcam
from segcam.models import UNet

K = 8
METHOD = "seg-grad-cam"
GOALS = {"explain_vs_train_step": 1.3, "many_vs_single": 3.0, "gradcam_vs_segcam": 2.0}
MIN_CORRELATION = 0.99
QUIET_CORES = 0.25  # foreign CPU load (cores) under which the machine counts as quiet


# ------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One model to benchmark, with its input, layer and targets.

    ``target`` is the single explained target, ``pixel``/``cls`` the same in plain numbers
    (for pytorch-grad-cam's mask), ``many`` the K targets of figure 2, ``gradcam_model`` the
    model as pytorch-grad-cam sees it (returning the logits tensor) and ``logits`` a function
    returning the logits tensor of ``model(x)`` for the training-step baseline.
    """

    name: str
    model: nn.Module
    image: Tensor
    layer: str
    layer_note: str
    cls: int
    pixel: tuple[int, int]
    many: list[segcam.Target]
    gradcam_model: nn.Module
    logits: Callable[[Tensor], Tensor]

    @property
    def target(self) -> segcam.Target:
        return segcam.Target(cls=self.cls, region=segcam.regions.pixel(*self.pixel))

    @property
    def layer_module(self) -> nn.Module:
        return self.model.get_submodule(self.layer)


class OutOnly(nn.Module):
    """Wrap a model returning ``{"out": logits, ...}`` so that it returns the logits tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["out"]


def many_targets(n_classes: int, size: int) -> list[segcam.Target]:
    """K targets of different classes, half single pixels, half boxes, spread over the image."""
    step = max(1, n_classes // K)
    targets = []
    for i in range(K):
        cls = (1 + i * step) % n_classes
        y = size * (2 * i + 1) // (2 * K)  # rows spread top to bottom,
        x = size * (2 * ((3 * i + 1) % K) + 1) // (2 * K)  # columns a permutation of them
        if i % 2 == 0:
            region = segcam.regions.pixel(y, x)
        else:
            y0, x0 = min(y, size - size // 8), min(x, size - size // 8)
            region = segcam.regions.box(y0, x0, y0 + size // 8, x0 + size // 8)
        targets.append(segcam.Target(cls=cls, region=region))
    return targets


def seeded_image(size: int, seed: int) -> Tensor:
    """A reproducible 1×3×size×size standard-normal image."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, size, size, generator=gen)


def unet_case(seed: int) -> Case:
    """(a) segcam's U-Net, width 32, depth 4, at 256²; layer ``downs.3`` (the bottleneck)."""
    torch.manual_seed(seed)
    model = UNet(3, 4, width=32, depth=4).eval()
    size = 256
    return Case(
        name="unet",
        model=model,
        image=seeded_image(size, seed),
        layer="downs.3",
        layer_note="downs.3 (bottleneck, given)",
        cls=1,
        pixel=(120, 64),
        many=many_targets(4, size),
        gradcam_model=model,
        logits=model,
    )


def deeplab_case(seed: int, size: int) -> Case:
    """(b) torchvision DeepLabV3-MobileNetV3-Large (21 classes, no weights) at ``size``².

    Both libraries explain ``backbone.16``, the backbone's last block (segcam's default
    layer); the script says so if the default ever changes.
    """
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(seed)
    model = deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=False
    ).eval()
    image = seeded_image(size, seed)
    default = segcam.Explainer(model).default_layer(image)
    layer = "backbone.16"
    note = f"{layer} (default_layer() = {default!r}; same tensor, hookable by grad-cam)"
    if default == layer:
        note = f"{layer} (default_layer())"
    return Case(
        name=f"deeplabv3-mbv3@{size}",
        model=model,
        image=image,
        layer=layer,
        layer_note=note,
        cls=1,
        pixel=(size * 120 // 256, size * 64 // 256),
        many=many_targets(21, size),
        gradcam_model=OutOnly(model),
        logits=lambda x: model(x)["out"],
    )


# ------------------------------------------------------------------------- the measured calls
def train_step(case: Case) -> None:
    """Bare forward + backward as a training step does it (parameter gradients included)."""
    case.logits(case.image).sum().backward()


def segcam_single(case: Case, explainer: segcam.Explainer) -> segcam.Explanation:
    """One Seg-Grad-CAM explanation of ``case.target``."""
    return explainer.explain(case.image, case.target, method=METHOD, layer=case.layer)


def segcam_many(case: Case, explainer: segcam.Explainer, backward: str) -> list[Any]:
    """K explanations from one forward pass."""
    return explainer.explain_many(
        case.image, case.many, method=METHOD, layer=case.layer, backward=backward
    )


def reference_single(case: Case) -> Tensor:
    """A hand-written minimum of the same explanation, to separate engine overhead from the rest.

    Frozen parameters, one hook detaching the layer's output into a leaf, ``autograd.grad`` of
    the pixel's logit to that leaf only, Grad-CAM weights, ReLU, bilinear upsampling, max-scaling.
    No input checks, no region machinery, no restoring of the model: not a usable explainer.
    """
    captured: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: Any, output: Tensor) -> Tensor:
        captured["a"] = output.detach().requires_grad_(True)
        return captured["a"]

    case.model.requires_grad_(False)
    handle = case.layer_module.register_forward_hook(hook)
    try:
        logits = case.logits(case.image)
        (grad,) = torch.autograd.grad(
            logits[0, case.cls, case.pixel[0], case.pixel[1]], captured["a"]
        )
    finally:
        handle.remove()
        case.model.requires_grad_(True)
    act = captured["a"].detach()
    cam = (grad.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True).clamp_min(0)
    cam = F.interpolate(cam, size=case.image.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.amax().clamp_min(torch.finfo(cam.dtype).tiny)


def gradcam_mask(case: Case) -> np.ndarray:
    """pytorch-grad-cam's segmentation target mask: 1.0 on the explained pixel."""
    mask = np.zeros(case.image.shape[2:], dtype=np.float32)
    mask[case.pixel] = 1.0
    return mask


def gradcam_single(case: Case, mask: np.ndarray) -> np.ndarray:
    """The same explanation with pytorch-grad-cam's documented segmentation recipe."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    target = SemanticSegmentationTarget(case.cls, mask)
    with GradCAM(model=case.gradcam_model, target_layers=[case.layer_module]) as cam:
        return cam(input_tensor=case.image, targets=[target])


# ------------------------------------------------------------------------- timing
class CpuMonitor:
    """CPU time used by *other* processes, in cores, from ``/proc/stat`` minus our own.

    PyTorch's OpenMP threads spin at barriers; with another process on a 2-core machine a
    network of many small ops (MobileNet) can run 10-50× slower, so every round is preceded
    by a wait for a quiet machine (bounded by ``budget_s`` in all) and its foreign load recorded.
    """

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.waited_s = 0.0
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / self.hz  # all but idle and iowait
        own = sum(os.times()[:2])
        return time.perf_counter(), busy, own

    def start(self) -> tuple[float, float, float] | None:
        return self._sample()

    def foreign(self, since: tuple[float, float, float] | None) -> float:
        """Mean cores used by other processes since ``since`` (0.0 where /proc is missing)."""
        now = self._sample()
        if since is None or now is None or now[0] <= since[0]:
            return 0.0
        return max(0.0, ((now[1] - since[1]) - (now[2] - since[2])) / (now[0] - since[0]))

    def wait_quiet(self, threshold: float = QUIET_CORES, window_s: float = 0.3) -> float:
        """Wait for a ``window_s`` window with < ``threshold`` foreign cores; return its load."""
        load = 0.0
        while True:
            mark = self.start()
            time.sleep(window_s)
            load = self.foreign(mark)
            if load < threshold or self.waited_s >= self.budget_s:
                return load
            self.waited_s += window_s


def interleaved(
    fns: dict[str, Callable[[], object]],
    reps: int,
    warmup: int,
    monitor: CpuMonitor,
    before: Callable[[], None] = lambda: None,
) -> tuple[dict[str, list[float]], list[float]]:
    """Run every function ``warmup`` times, then ``reps`` rounds; seconds per call by name.

    In round ``r`` the functions start at position ``r mod n`` of the list, so each one is
    measured equally often early and late in a round.  ``before`` runs untimed before each call.
    Also returns the foreign CPU load (cores) during each round.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            before()
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    loads: list[float] = []
    for r in range(reps):
        monitor.wait_quiet()
        mark = monitor.start()
        for name in names[r % len(names) :] + names[: r % len(names)]:
            before()
            gc.collect()
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
        loads.append(monitor.foreign(mark))
    return times, loads


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, min, max and all samples in milliseconds."""
    ms = [s * 1e3 for s in samples]
    return {
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "samples_ms": ms,
    }


def batched_backward_status(case: Case, explainer: segcam.Explainer) -> str:
    """Whether the vmapped backward runs for this model, or segcam falls back to the loop.

    segcam's ``backward="batched"`` silently loops when an op has no batching rule; this
    re-runs the same ``is_grads_batched`` call to say which one was timed.
    """
    from segcam.core.target import resolve_targets

    fwd = explainer.forward(case.image, layer=case.layer)
    scores = [t.score.sum() for t in resolve_targets(case.many, fwd.logits, lambda: fwd.predicted, None)]
    stacked = torch.stack(scores)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.autograd.grad(
                stacked,
                [fwd.activations[case.layer]],
                grad_outputs=torch.eye(len(scores)),
                is_grads_batched=True,
            )
        except RuntimeError as e:
            return f"falls back to loop ({str(e).splitlines()[0][:80]})"
    slow = [w for w in caught if "performance drop" in str(w.message)]
    return "vmapped" + (f" (with {len(slow)} slow-path warning(s))" if slow else "")


# ------------------------------------------------------------------------- checks
def check_no_param_grads(case: Case, explainer: segcam.Explainer) -> bool:
    """Sanity: explaining leaves no ``.grad`` on parameters and restores ``requires_grad``/mode."""
    case.model.zero_grad(set_to_none=True)
    case.model.requires_grad_(True)
    case.model.train()
    segcam_single(case, explainer)
    segcam_many(case, explainer, "loop")
    segcam_many(case, explainer, "batched")
    params = list(case.model.parameters())
    ok = (
        all(p.grad is None for p in params)
        and all(p.requires_grad for p in params)
        and all(m.training for m in case.model.modules())
    )
    case.model.eval()
    return ok


def minmax(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (all-constant maps become 0)."""
    span = float(a.max() - a.min())
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def compare_maps(case: Case, explainer: segcam.Explainer) -> dict[str, float]:
    """Pearson r and max |Δ| (after min-max scaling) between segcam's and grad-cam's maps.

    ``pearson_r``/``max_abs_diff`` use segcam's ``map`` (torch bilinear upsampling, corners
    not aligned); the ``_cv2`` pair resizes segcam's ``layer_map`` with ``cv2.resize`` as
    pytorch-grad-cam does, to isolate any difference due to resizing.  Also compares ``map``
    with :func:`reference_single` and describes the map (share of positive layer cells, size of
    the raw values: the models are untrained, so the raw maps are tiny but well inside float32).
    """
    import cv2

    case.model.zero_grad(set_to_none=True)
    exp = segcam_single(case, explainer)
    ours = exp.map[0].numpy().astype(np.float64)
    theirs = gradcam_single(case, gradcam_mask(case))[0].astype(np.float64)
    h, w = case.image.shape[2:]
    ours_cv2 = cv2.resize(exp.layer_map[0].numpy().astype(np.float32), (w, h)).astype(np.float64)
    reference = reference_single(case)[0].numpy().astype(np.float64)
    case.model.zero_grad(set_to_none=True)
    return {
        "pearson_r": float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]),
        "max_abs_diff_reference": float(np.abs(ours - reference).max()),
        "max_abs_diff": float(np.abs(minmax(ours) - minmax(theirs)).max()),
        "pearson_r_cv2": float(np.corrcoef(ours_cv2.ravel(), theirs.ravel())[0, 1]),
        "max_abs_diff_cv2": float(np.abs(minmax(ours_cv2) - minmax(theirs)).max()),
        "positive_cells": float((exp.layer_map > 0).float().mean()),
        "raw_abs_max": float(exp.raw.abs().max()),
    }


# ------------------------------------------------------------------------- one case
def run_case(case: Case, reps: int, warmup: int, monitor: CpuMonitor) -> dict[str, Any]:
    """All timings, figures and checks for one model."""
    explainer = segcam.Explainer(case.model)
    case.model.requires_grad_(True)  # as in a training step; segcam freezes them itself
    mask = gradcam_mask(case)
    fns: dict[str, Callable[[], object]] = {
        "train_step": lambda: train_step(case),
        "segcam_single": lambda: segcam_single(case, explainer),
        "segcam_many_loop": lambda: segcam_many(case, explainer, "loop"),
        "segcam_many_batched": lambda: segcam_many(case, explainer, "batched"),
        "gradcam_single": lambda: gradcam_single(case, mask),
        "reference_single": lambda: reference_single(case),
    }
    waited = monitor.waited_s
    times, loads = interleaved(
        fns, reps, warmup, monitor, before=lambda: case.model.zero_grad(set_to_none=True)
    )
    med = {name: statistics.median(t) for name, t in times.items()}
    low = {name: min(t) for name, t in times.items()}

    def ratio(num: str, den: str) -> dict[str, float]:
        return {"median": med[num] / med[den], "min": low[num] / low[den]}

    return {
        "layer": case.layer,
        "layer_note": case.layer_note,
        "input": list(case.image.shape),
        "target": repr(case.target),
        "many": [repr(t) for t in case.many],
        "batched_backward": batched_backward_status(case, explainer),
        "timings": {name: summary(t) for name, t in times.items()},
        "foreign_load_cores": {
            "per_round": loads,
            "max": max(loads),
            "rounds_over": sum(v >= QUIET_CORES for v in loads),
            "waited_for_quiet_s": round(monitor.waited_s - waited, 1),
        },
        "figures": {
            "explain_vs_train_step": ratio("segcam_single", "train_step"),
            "many_loop_vs_single": ratio("segcam_many_loop", "segcam_single"),
            "many_batched_vs_single": ratio("segcam_many_batched", "segcam_single"),
            "gradcam_vs_segcam": ratio("gradcam_single", "segcam_single"),
            "segcam_vs_reference": ratio("segcam_single", "reference_single"),
        },
        "match": compare_maps(case, explainer),
        "no_param_grads": check_no_param_grads(case, explainer),
    }


# ------------------------------------------------------------------------- reporting
def machine_info() -> dict[str, Any]:
    """Versions, thread count and CPU model."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": ver("torchvision"),
        "segcam": segcam.__version__,
        "grad-cam": ver("grad-cam"),
        "opencv": ver("opencv-python-headless"),
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def verdict(value: float, goal: float, at_most: bool) -> str:
    """Say whether ``value`` meets ``goal`` (``<=`` it if ``at_most``, else ``>=``)."""
    return "ok" if (value <= goal if at_most else value >= goal) else "MISSED"


def report(info: dict[str, Any], config: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """The printed tables: setup, timings, figures against their goals, map agreement, checks."""
    names = list(results)
    col = max(26, *(len(n) + 2 for n in names))

    def row(label: str, cells: list[str], width: int = 34) -> str:
        return f"{label:<{width}}" + "".join(f"{c:>{col}}" for c in cells)

    lines = [
        "segcam engine benchmark (CPU)",
        f"  torch {info['torch']}, torchvision {info['torchvision']}, grad-cam {info['grad-cam']}, "
        f"opencv {info['opencv']}, numpy {info['numpy']}, python {info['python']}",
        f"  torch threads {info['torch_threads']} (of {info['cpu_count']} CPUs), "
        f"CPU: {info['cpu']}",
        f"  {config['warmup']} warm-up round(s), then {config['reps']} interleaved rounds; "
        f"K={K}; method {METHOD}",
    ]
    for n in names:
        r = results[n]
        lines += [
            f"  {n}: input {'x'.join(map(str, r['input']))}, layer {r['layer_note']}",
            f"      target {r['target']}; batched backward: {r['batched_backward']}",
        ]
    rows = [
        ("bare fwd+bwd (train step)", "train_step"),
        ("segcam 1 region", "segcam_single"),
        (f"segcam K={K} loop", "segcam_many_loop"),
        (f"segcam K={K} batched", "segcam_many_batched"),
        ("pytorch-grad-cam 1 region", "gradcam_single"),
        ("(ref) hand-written minimum", "reference_single"),
    ]
    lines += ["", row("time, ms: median [min-max]", names)]
    for label, key in rows:
        cells = []
        for n in names:
            t = results[n]["timings"][key]
            cells.append(f"{t['median_ms']:.1f} [{t['min_ms']:.0f}-{t['max_ms']:.0f}]")
        lines.append(row(label, cells))
    lines.append(
        row(
            "other processes' CPU, cores (max)",
            [f"{results[n]['foreign_load_cores']['max']:.2f}" for n in names],
        )
    )
    figures = [
        ("1  segcam / fwd+bwd", "explain_vs_train_step", GOALS["explain_vs_train_step"], True),
        (f"2a K={K} loop / 1 region", "many_loop_vs_single", GOALS["many_vs_single"], True),
        (f"2b K={K} batched / 1 region", "many_batched_vs_single", GOALS["many_vs_single"], True),
        ("3  grad-cam / segcam", "gradcam_vs_segcam", GOALS["gradcam_vs_segcam"], False),
        ("(ref) segcam / hand-written", "segcam_vs_reference", None, True),
    ]
    lines += [
        "",
        f"{'figure: median ratio (min)':<28}{'goal':>6}" + "".join(f"{n:>{col}}" for n in names),
    ]
    for label, key, goal, at_most in figures:
        cells = []
        for n in names:
            fig = results[n]["figures"][key]
            mark = "" if goal is None else " " + verdict(fig["median"], goal, at_most)
            cells.append(f"{fig['median']:.2f} ({fig['min']:.2f}){mark}")
        goal_text = "" if goal is None else ("<=" if at_most else ">=") + f"{goal:g}"
        lines.append(f"{label:<28}{goal_text:>6}" + "".join(f"{c:>{col}}" for c in cells))
    checks = [
        ("map vs grad-cam: Pearson r", "pearson_r", f">{MIN_CORRELATION}", "{:.6f}"),
        ("map vs grad-cam: max |d|", "max_abs_diff", "", "{:.1e}"),
        ("  (cv2 resize): Pearson r", "pearson_r_cv2", "", "{:.6f}"),
        ("  (cv2 resize): max |d|", "max_abs_diff_cv2", "", "{:.1e}"),
        ("map vs hand-written: max |d|", "max_abs_diff_reference", "", "{:.1e}"),
        ("positive cells in layer map", "positive_cells", "", "{:.2f}"),
        ("max |raw map| (untrained)", "raw_abs_max", "", "{:.1e}"),
    ]
    lines.append("")
    for label, key, goal, fmt in checks:
        lines.append(
            f"{label:<28}{goal:>6}"
            + "".join(f"{fmt.format(results[n]['match'][key]):>{col}}" for n in names)
        )
    lines.append(
        f"{'no .grad left on params':<28}{'':>6}"
        + "".join(f"{results[n]['no_param_grads']!s:>{col}}" for n in names)
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).with_name("results.json"),
        help="where to write the results (default: benchmarks/results.json)",
    )
    p.add_argument("--quick", action="store_true", help="1 warm-up round and 3 timed rounds")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 9; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 2; quick 1)")
    p.add_argument(
        "--deeplab-size",
        type=int,
        default=256,
        help="DeepLab input side (default 256, like the U-Net; 520 is torchvision's)",
    )
    p.add_argument("--models", default="unet,deeplab", help="comma-separated: unet, deeplab")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds in all to wait for other processes to leave the CPU (default 60)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables, write the JSON; non-zero if a check fails."""
    args = parse_args(argv)
    reps = args.reps if args.reps is not None else (3 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    config: dict[str, Any] = {
        "reps": reps,
        "warmup": warmup,
        "seed": args.seed,
        "deeplab_size": args.deeplab_size,
        "quick": args.quick,
    }
    info = machine_info()
    monitor = CpuMonitor(args.quiet_wait)
    builders = {
        "unet": lambda: unet_case(args.seed),
        "deeplab": lambda: deeplab_case(args.seed, args.deeplab_size),
    }
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for key in args.models.split(","):
        case = builders[key.strip()]()
        print(f"[bench] {case.name} ...", file=sys.stderr, flush=True)
        results[case.name] = run_case(case, reps, warmup, monitor)
    config["wall_s"] = round(time.perf_counter() - started, 1)
    config["waited_for_quiet_s"] = round(monitor.waited_s, 1)
    print(report(info, config, results))
    contended = {
        n: r["foreign_load_cores"]["rounds_over"]
        for n, r in results.items()
        if r["foreign_load_cores"]["rounds_over"]
    }
    if contended:
        print(
            f"\nWARNING: other processes used >= {QUIET_CORES} cores during some rounds "
            f"{contended}; OpenMP threads then stall and timings inflate (see JSON per_round)."
        )
    print(
        f"\n(total {config['wall_s']} s, of which {config['waited_for_quiet_s']} s waiting for "
        f"a quiet CPU; JSON: {args.json})"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": info, "config": config, "results": results}, indent=2)
    )
    bad = {
        n: r["match"]["pearson_r"]
        for n, r in results.items()
        if not r["match"]["pearson_r"] > MIN_CORRELATION
    }
    if bad:
        print(f"FAILED: segcam and pytorch-grad-cam maps differ (Pearson r {bad})", file=sys.stderr)
        return 1
    if not all(r["no_param_grads"] for r in results.values()):
        print("FAILED: segcam left .grad on parameters or did not restore them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
