"""The ``segcam`` command line: ``explain``, ``layers`` and ``demo``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from . import regions
from .errors import SegcamError
from .explainer import Explainer
from .io import load_image, load_mask
from .methods import METHODS
from .models import default
from .targets import Target

MODELS: dict[str, Callable[[], nn.Module]] = {"default": default}


def _ints(text: str, n: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise SegcamError(f"{what} takes comma-separated integers, got {text!r}.") from None
    if len(values) not in n:
        raise SegcamError(f"{what} takes {' or '.join(map(str, n))} integers, got {text!r}.")
    return values


def _region(args: argparse.Namespace) -> regions.Region:
    if args.pixel:
        return regions.pixel(*_ints(args.pixel, (2, 3), "--pixel"))
    if args.box:
        return regions.box(*_ints(args.box, (4, 6), "--box"))
    if args.polygon:
        points = [_ints(p, (2,), "--polygon vertex") for p in args.polygon.split(";") if p.strip()]
        return regions.polygon(points)
    if args.mask:
        return regions.mask(load_mask(args.mask))
    if args.predicted:
        return regions.predicted()
    if args.instance:
        return regions.instance(*_ints(args.instance, (2, 3), "--instance"))
    return regions.everything()


def _window(text: str) -> int | tuple[int, ...] | None:
    if text == "full":
        return None
    parts = text.lower().replace("x", ",").split(",")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise SegcamError(f"--window takes N, HxW or 'full', got {text!r}.") from None
    return sizes[0] if len(sizes) == 1 else sizes


def _model(name: str) -> nn.Module:
    if name not in MODELS:
        raise SegcamError(f"unknown model {name!r}; available: {', '.join(MODELS)}.")
    return MODELS[name]()


def cmd_explain(args: argparse.Namespace) -> int:
    from .viz import save_overlay

    model = _model(args.model)
    explainer = Explainer(model)
    image = load_image(args.image)
    options: dict[str, object] = {}
    if args.method == "seg-xres-cam":
        options["pool"] = args.pool
        if args.window is not None:
            options["window"] = _window(args.window)
    elif args.window is not None:
        raise SegcamError(f"--window only applies to seg-xres-cam, not {args.method}.")
    target = Target(args.cls, _region(args), reduce="mean" if args.mean else "sum")
    layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
    result = explainer.explain(image, target, method=args.method, layer=layer, **options)
    explanations = result if isinstance(result, dict) else {result.layer: result}
    for name, exp in explanations.items():
        suffix = "" if len(explanations) == 1 else f"-{name.replace('.', '_')}"
        print(f"layer {name}: score {exp.score[0].item():.4g} over {int(exp.region.sum())} px")
        if args.output:
            out = _suffixed(args.output, suffix)
            title = f"{args.method} · layer {name} · {target.describe()}"
            save_overlay(out, image, exp.heatmap, exp.region[0], title=title)
            print(f"wrote {out}")
        if args.save_npy:
            out = _suffixed(args.save_npy, suffix)
            np.save(out, exp.heatmap)
            print(f"wrote {out}")
    return 0


def _suffixed(path: str, suffix: str) -> str:
    if not suffix:
        return path
    stem, dot, ext = path.rpartition(".")
    return f"{stem}{suffix}.{ext}" if dot else path + suffix


def cmd_layers(args: argparse.Namespace) -> int:
    explainer = Explainer(_model(args.model))
    image = load_image(args.image) if args.image else None
    infos = explainer.layers(image)
    print(f"{'name':<40} {'type':<22} {'output':<22} grid")
    for info in infos:
        if args.all or info.explainable:
            print(info)
    print(f"\ndefault layer (bottleneck): {explainer.default_layer(image)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.output)
    print(f"{'scene':<6} {'region':<26} {'class':<16} {'method':<13} "
          f"{'evidence':>8} {'lift':>5} {'cue':>5} {'bias':>5}")
    for r in report:
        print(f"{r['scene']:<6} {r['region']:<26} {r['class']:<16} {r['method']:<13} "
              f"{r['share_true']:8.2f} {r['lift_true']:5.1f} {r['share_context']:5.2f} "
              f"{r['share_bias']:5.2f}")
    print("evidence: share of heatmap mass on the object and its cue (lift: ÷ a uniform map's share);"
          " cue / bias: share on the cue square / on the bias tile.")
    print(f"wrote {args.output}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train_default

    meta = train_default(args.out, steps=args.steps)
    print(f"test mIoU {meta['test']['miou']:.3f}, unbiased mIoU {meta['unbiased']['miou']:.3f}; "
          f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segcam", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what segcam decides")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain a class over a region of one image")
    ex.add_argument("image", help="PNG/JPEG/TIFF image, or .npy float array (C, *S)")
    ex.add_argument("--class", dest="cls", type=int, required=True, help="class index")
    where = ex.add_mutually_exclusive_group()
    where.add_argument("--pixel", help="Y,X (or Z,Y,X)")
    where.add_argument("--box", help="Y0,X0,Y1,X1 end-exclusive (or 6 values in 3-D)")
    where.add_argument("--polygon", help="'y,x;y,x;y,x;...' (2-D)")
    where.add_argument("--mask", help="PNG (non-zero = in) or .npy boolean mask")
    where.add_argument("--predicted", action="store_true", help="all pixels predicted as the class")
    where.add_argument("--instance", help="Y,X: the predicted object under this pixel")
    where.add_argument("--all", action="store_true", help="the whole image (default)")
    ex.add_argument("--method", default="seg-grad-cam", choices=sorted(METHODS))
    ex.add_argument("--layer", nargs="+", help="layer name(s); default: the bottleneck")
    ex.add_argument("--window", help="seg-xres-cam window: N, HxW or 'full' (default 2)")
    ex.add_argument("--pool", default="max", choices=["max", "mean"], help="seg-xres-cam pooling")
    ex.add_argument("--mean", action="store_true", help="average the logits over the region")
    ex.add_argument("--model", default="default", help=f"model: {', '.join(MODELS)}")
    ex.add_argument("-o", "--output", help="write an overlay PNG")
    ex.add_argument("--save-npy", help="write the heatmap as .npy")
    ex.set_defaults(run=cmd_explain)

    ly = sub.add_parser("layers", help="list the model's layers and output shapes")
    ly.add_argument("--model", default="default")
    ly.add_argument("--image", help="example image (default: a zero image)")
    ly.add_argument("--all", action="store_true", help="also list non-spatial layers")
    ly.set_defaults(run=cmd_layers)

    de = sub.add_parser("demo", help="explain the bundled scenes with the default model")
    de.add_argument("-o", "--output", default="segcam-demo.png")
    de.set_defaults(run=cmd_demo)

    tr = sub.add_parser("train", help="retrain the default model (about 6 min on 2 cores)")
    tr.add_argument("--out", default="default_unet.safetensors", help="weights file to write")
    tr.add_argument("--steps", type=int, default=2400)
    tr.set_defaults(run=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.run(args)
    except SegcamError as e:
        print(f"segcam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
