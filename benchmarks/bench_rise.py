"""RISE speed on the default model: N masks against N bare forward passes in the same batches,
and against a one-mask-at-a-time loop.

    python benchmarks/bench_rise.py [--masks 2000] [--loop-masks 200]

Prints (median of ``--reps`` runs): RISE time, the time of the same number of forward passes
in the same batches (no masking, no weighting), their ratio (goal ≤ 1.15), and the per-mask
time of a straightforward loop that masks, runs and weighs one mask at a time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import segcam
from segcam import Target, regions
from segcam.core import batch_size_for, dice
from segcam.data import sample_scenes
from segcam.methods.rise import render_masks, rise_masks
from segcam.models import default


def timed(fn, reps: int) -> float:
    fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--masks", type=int, default=2000)
    parser.add_argument("--loop-masks", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    model = default()
    scene = sample_scenes()[0]
    image = scene.image
    point = scene.centre_of(next(k for k, c in enumerate(scene.classes, 1) if c in (4, 5)))
    target = Target(int(scene.labels[point]), regions.pixel(*point))
    explainer = segcam.Explainer(model)
    batch = batch_size_for(image)

    rise = timed(lambda: explainer.explain(image, target, method="rise", n_masks=args.masks), args.reps)

    def bare() -> None:
        with torch.inference_mode():
            model(image[None])
            for start in range(0, args.masks, batch):
                model(image[None].expand(min(batch, args.masks - start), *image.shape))

    forwards = timed(bare, args.reps)

    def loop() -> None:  # the textbook version: one mask, one forward, one weight at a time
        gen = torch.Generator().manual_seed(0)
        grids, shifts = rise_masks(args.loop_masks, image.shape[1:], 8, 0.5, gen)
        with torch.inference_mode():
            original = model(image[None]).argmax(1)[0] == target.cls
            total = torch.zeros(image.shape[1:])
            for i in range(args.loop_masks):
                m = render_masks(grids[i:i + 1], shifts[i:i + 1], image.shape[1:])[0]
                masked = image * m + image.mean((1, 2), keepdim=True) * (1 - m)
                pred = model(masked[None]).argmax(1) == target.cls
                region = scene.labels == target.cls
                total += dice(pred & region, original & region, 2)[0] * m

    per_mask_loop = timed(loop, 1) / args.loop_masks
    print(f"default model, input {tuple(image.shape)}, batch {batch}, torch threads {torch.get_num_threads()}")
    print(f"RISE, {args.masks} masks:                      {rise:8.2f} s")
    print(f"{args.masks} bare forward passes, same batches:  {forwards:8.2f} s")
    print(f"ratio RISE / bare forwards (goal <= 1.15):  {rise / forwards:8.2f}")
    print(f"one-mask-at-a-time loop, per mask:          {1e3 * per_mask_loop:8.2f} ms "
          f"(RISE: {1e3 * rise / args.masks:.2f} ms; {per_mask_loop * args.masks / rise:.1f}× slower)")


if __name__ == "__main__":
    main()
