"""``segcam batch INPUT --out DIR``: the local or the Ray engine from the command line
(``pip install 'segcam[batch]'``; ``'segcam[ray]'`` for ``--engine ray``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

from ...errors import SegcamError
from ..evaluate import ProgressBar
from ..method_flags import add_method_flags, methods_options
from .metrics import METRICS
from .ray_engine import RayConfig, run_batch_ray
from .runner import BatchConfig, Summary, run_batch


def add_parser(sub: argparse._SubParsersAction, positive: object,
               add_input: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``batch`` sub-command; ``add_input`` adds the input flags every command shares, before
    the methods' flags (which must not clash with them)."""
    p = sub.add_parser("batch", help="explain a folder, glob or CSV manifest of images or volumes into "
                                     "DIR/maps.zarr and DIR/explanations.parquet (resumable)")
    p.add_argument("input", help="a folder, a glob ('scans/*.nii.gz') or a CSV manifest (image[,mask][,targets])")
    p.add_argument("--out", required=True, help="output folder (a re-run resumes where the last one stopped)")
    p.add_argument("--model", default="default", help="a model spec as for `segcam explain --model`")
    p.add_argument("--weights", help="weights for --model")
    p.add_argument("--device", help="run the model on this device: cpu, cuda, cuda:1 … (default: where it loads, "
                                    "the CPU; with --engine ray use --gpus-per-actor)")
    p.add_argument("--num-classes", type=positive, help="number of classes for zoo/torchvision/factory models")
    p.add_argument("--targets", default="predicted",
                   help="predicted[:C,...] | instances:C,... | truth[:C,...] (needs masks) | manifest (default predicted)")
    p.add_argument("--methods", nargs="+", default=["seg-grad-cam"],
                   help="methods (default seg-grad-cam); each takes the method options below that apply to it")
    p.add_argument("--layers", nargs="+", help="layers (default: the model's default layer)")
    p.add_argument("--float32", action="store_true", help="store maps as float32 (default float16)")
    p.add_argument("--layer-maps", action="store_true", help="also store each map at its layer's resolution")
    p.add_argument("--csv", action="store_true", help="also write explanations.csv")
    p.add_argument("--metrics", type=_names, default=(),
                   help=f"comma-separated metrics per explanation: {','.join(METRICS)} (default none)")
    p.add_argument("--overlays", action="store_true", help="also write an overlay PNG per explanation to DIR/overlays")
    p.add_argument("--workers", type=_workers, default=None,
                   help="processes reading files ahead of the model (0: none; default auto: 2 when reading the "
                        "second file takes over 20 ms, else none)")
    p.add_argument("--batch-items", type=positive, default=8,
                   help="items through the model together, one backward pass per target slot (default 8; "
                        "1: one at a time)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine; ray: a pool of Ray actors (pip install 'segcam[ray]')")
    p.add_argument("--actors", type=positive, default=1, help="with --engine ray: actors, each holding one model")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="with --engine ray: GPUs per actor (0.5 shares)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="with --engine ray: CPUs (torch threads) per actor")
    p.add_argument("--address", help="with --engine ray: a running cluster to join ('auto', 'ray://head:10001'); "
                                     "default: a local Ray instance")
    add_input(p)
    add_method_flags(p, {a.dest for a in p._actions})
    p.set_defaults(run=cmd_batch)


def _workers(text: str) -> int | None:
    """``auto`` → ``None``; else an integer ≥ 0."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer ≥ 0, got {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    """``a,b,c`` → ``("a", "b", "c")`` (checked by :class:`~.runner.BatchConfig`)."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def cmd_batch(args: argparse.Namespace) -> int:
    config = BatchConfig(targets=args.targets, methods=tuple(args.methods),
                         options=methods_options(args, args.methods),
                         layers=tuple(args.layers) if args.layers else None,
                         dtype="float32" if args.float32 else "float16", layer_maps=args.layer_maps,
                         workers=args.workers, batch_size=args.batch_items, csv=args.csv, max_pixels=args.max_pixels,
                         metrics=args.metrics, overlays=args.overlays)
    summary = _engine(args)(args.input, args.out, model=args.model, weights=args.weights,
                            num_classes=args.num_classes, config=config, progress=ProgressBar())
    for line in summary.lines():
        print(line)
    return 0


def _engine(args: argparse.Namespace) -> Callable[..., Summary]:
    """``run_batch`` (on ``--device``), or ``run_batch_ray`` with the Ray options of ``args``."""
    if args.engine == "local":
        return partial(run_batch, device=args.device)
    if args.device is not None:
        raise SegcamError("--device places the model of the local engine; Ray places its actors' models: give "
                          "--gpus-per-actor 1 instead of --device with --engine ray.")
    ray = RayConfig(actors=args.actors, gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
                    address=args.address)
    return partial(run_batch_ray, ray=ray)
