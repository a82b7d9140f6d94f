"""``segcam batch INPUT --out DIR``: the local engine from the command line (``pip install 'segcam[batch]'``)."""

from __future__ import annotations

import argparse

from ..evaluate import ProgressBar
from .runner import BatchConfig, run_batch


def add_parser(sub: argparse._SubParsersAction, positive: object) -> None:
    p = sub.add_parser("batch", help="explain a folder, glob or CSV manifest of images or volumes into "
                                     "DIR/maps.zarr and DIR/explanations.parquet (resumable)")
    p.add_argument("input", help="a folder, a glob ('scans/*.nii.gz') or a CSV manifest (image[,mask][,targets])")
    p.add_argument("--out", required=True, help="output folder (a re-run resumes where the last one stopped)")
    p.add_argument("--model", default="default", help="a model spec as for `segcam explain --model`")
    p.add_argument("--weights", help="weights for --model")
    p.add_argument("--num-classes", type=positive, help="number of classes for zoo/torchvision/factory models")
    p.add_argument("--targets", default="predicted",
                   help="predicted[:C,...] | instances:C,... | truth[:C,...] (needs masks) | manifest (default predicted)")
    p.add_argument("--methods", nargs="+", default=["seg-grad-cam"], help="methods (default seg-grad-cam)")
    p.add_argument("--layers", nargs="+", help="layers (default: the model's default layer)")
    p.add_argument("--float32", action="store_true", help="store maps as float32 (default float16)")
    p.add_argument("--layer-maps", action="store_true", help="also store each map at its layer's resolution")
    p.add_argument("--csv", action="store_true", help="also write explanations.csv")
    p.add_argument("--workers", type=int, default=2, help="processes reading files ahead of the model (0: none)")
    p.set_defaults(run=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    config = BatchConfig(targets=args.targets, methods=tuple(args.methods),
                         layers=tuple(args.layers) if args.layers else None,
                         dtype="float32" if args.float32 else "float16", layer_maps=args.layer_maps,
                         workers=args.workers, csv=args.csv, max_pixels=args.max_pixels)
    summary = run_batch(args.input, args.out, model=args.model, weights=args.weights, num_classes=args.num_classes,
                        config=config, progress=ProgressBar())
    for line in summary.lines():
        print(line)
    return 0
