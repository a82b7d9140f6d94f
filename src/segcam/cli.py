"""The ``segcam`` command line: explain, layers, sweep, progress, demo, train."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import regions
from .errors import SegcamError
from .explainer import Explainer
from .io import load_image, load_mask
from .methods import METHODS
from .targets import Target


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


def _progress_bar(done: int, total: int) -> None:
    filled = int(30 * done / total)
    print(f"\r  masks [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="", file=sys.stderr)
    if done == total:
        print(file=sys.stderr)


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.method == "rise":
        options = {"n_masks": args.n_masks or 2000, "seed": args.seed, "progress": _progress_bar}
    elif args.n_masks is not None:
        raise SegcamError(f"--n-masks only applies to rise, not {args.method}.")
    if args.method == "seg-xres-cam":
        options["pool"] = args.pool
        if args.window is not None:
            options["window"] = _window(args.window)
    elif args.window is not None:
        raise SegcamError(f"--window only applies to seg-xres-cam, not {args.method}.")
    return options


def _target(args: argparse.Namespace) -> Target:
    cls = int(args.cls) if args.cls.lstrip("-").isdigit() else args.cls
    return Target(cls, _region(args), reduce="mean" if args.mean else "sum")


def _model(args: argparse.Namespace):
    from .loading import load_model

    return load_model(args.model, weights=args.weights, num_classes=args.num_classes,
                      allow_pickle=args.allow_pickle)


def _explainer(loaded) -> Explainer:
    if loaded.family is not None:
        from .zoo import explainer_for

        return explainer_for(loaded.family, loaded.model, class_names=loaded.class_names)
    return Explainer(loaded.model, class_names=loaded.class_names)


def _image(args: argparse.Namespace, loaded) -> Tensor:
    return loaded.preprocess(load_image(args.image))


def _suffixed(path: str, suffix: str) -> str:
    if not suffix:
        return path
    stem, dot, ext = path.rpartition(".")
    return f"{stem}{suffix}.{ext}" if dot else path + suffix


def cmd_explain(args: argparse.Namespace) -> int:
    from .viz import save_overlay

    loaded = _model(args)
    explainer = _explainer(loaded)
    image = _image(args, loaded)
    target = _target(args)
    layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
    result = explainer.explain(image, target, method=args.method, layer=layer, **_method_options(args))
    explanations = result if isinstance(result, dict) else {result.layer: result}
    for name, exp in explanations.items():
        suffix = "" if len(explanations) == 1 else f"-{name.replace('.', '_')}"
        print(f"layer {name}: score {exp.score[0].item():.4g} over {int(exp.region.sum())} px")
        if args.output:
            out = _suffixed(args.output, suffix)
            title = f"{args.method} · layer {name} · {target.describe(loaded.class_names)}"
            save_overlay(out, image, exp.heatmap, exp.region[0], title=title)
            print(f"wrote {out}")
        if args.save_npy:
            out = _suffixed(args.save_npy, suffix)
            np.save(out, exp.heatmap)
            print(f"wrote {out}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    loaded = _model(args)
    explainer = _explainer(loaded)
    image = _image(args, loaded) if args.image else None
    if image is None and loaded.preprocess.size is not None:  # a model with a fixed input size
        channels = loaded.preprocess.channels or 3
        image = torch.zeros((channels, *loaded.preprocess.size))
    infos = explainer.layers(image)
    readable = {module: name for name, module in explainer.layer_names.items()}
    print(f"{'name':<40} {'type':<22} {'output':<22} grid")
    for info in infos:
        if args.all or info.explainable:
            alias = f"  [{readable[info.name]}]" if info.name in readable else ""
            print(f"{info}{alias}")
    print(f"\ndefault layer: {explainer.default_layer(image)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .report import layer_sweep
    from .viz import save_grid

    loaded = _model(args)
    explainer = _explainer(loaded)
    image = _image(args, loaded)
    target = _target(args)
    exps = layer_sweep(explainer, image, target, args.layers, args.method, **_method_options(args))
    region = next(iter(exps.values())).region[0]
    cells = {name: {args.method: exp.heatmap} for name, exp in exps.items()}
    save_grid(args.output, image, region, cells, title=target.describe(loaded.class_names))
    print(f"{len(exps)} layers; wrote {args.output}")
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from .data import SceneConfig
    from .loading import load_model
    from .models import load_weights
    from .report import Checkpoint, progress_grid
    from .train import evaluate
    from .zoo import family

    checkpoints, family_name, preprocess = [], None, None
    for path in args.checkpoints:
        if path.endswith(".safetensors") and args.model == "default":
            model, meta = load_weights(path)
            family_name = meta.get("family", family_name)
            label = f"step {meta['step']}" if "step" in meta else path.rsplit("/", 1)[-1]
        else:
            loaded = load_model(args.model, weights=path, num_classes=args.num_classes,
                                allow_pickle=args.allow_pickle)
            model, family_name, preprocess = loaded.model, loaded.family, loaded.preprocess
            label = path.rsplit("/", 1)[-1]
        miou = evaluate(model, args.data_seed, args.data_count, SceneConfig())["miou"]
        checkpoints.append(Checkpoint(label, model, miou))
    names = family(family_name).layers(checkpoints[0].model) if family_name else None
    image = load_image(args.image)
    if preprocess is not None:
        image = preprocess(image)
    target = _target(args)
    layers = args.layers or (list(names) if names else None)
    if not layers:
        raise SegcamError("give --layers (the checkpoints' family is unknown).")
    progress_grid(args.output, checkpoints, image, target, layers, args.method, names,
                  **_method_options(args))
    print(f"{len(layers)} layers × {len(checkpoints)} checkpoints (mIoU on {args.data_count} "
          f"synthetic scenes, seed {args.data_seed}); wrote {args.output}")
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
    if args.family:
        from .train import train_family

        paths = train_family(args.family, steps=args.steps, checkpoints=args.checkpoints,
                             force=args.force)
        print("\n".join(str(p) for p in paths))
        return 0
    from .train import train_default

    meta = train_default(args.out, steps=args.steps or 2400)
    print(f"test mIoU {meta['test']['miou']:.3f}, unbiased mIoU {meta['unbiased']['miou']:.3f}; "
          f"wrote {args.out}")
    return 0


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="default | a zoo family (e.g. segformer) | torchvision:NAME | "
                        "package.module:factory | a TorchScript/.pt2 file | a Hugging Face folder")
    p.add_argument("--weights", help="weights for --model (state dict .pt or .safetensors)")
    p.add_argument("--num-classes", type=int, help="number of classes for a zoo/torchvision model")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load pickled files (they can run code: only for files you trust)")


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--class", dest="cls", required=True, help="class index or name")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pixel", help="Y,X (or Z,Y,X)")
    where.add_argument("--box", help="Y0,X0,Y1,X1 end-exclusive (or 6 values in 3-D)")
    where.add_argument("--polygon", help="'y,x;y,x;y,x;...' (2-D)")
    where.add_argument("--mask", help="PNG (non-zero = in) or .npy boolean mask")
    where.add_argument("--predicted", action="store_true", help="all pixels predicted as the class")
    where.add_argument("--instance", help="Y,X: the predicted object under this pixel")
    where.add_argument("--all", action="store_true", help="the whole image (default)")
    p.add_argument("--method", default="seg-grad-cam", choices=sorted(METHODS))
    p.add_argument("--window", help="seg-xres-cam window: N, HxW or 'full' (default 2)")
    p.add_argument("--pool", default="max", choices=["max", "mean"], help="seg-xres-cam pooling")
    p.add_argument("--mean", action="store_true", help="average the logits over the region")
    p.add_argument("--n-masks", type=int, help="rise: number of random masks (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="rise: random seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segcam", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what segcam decides")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain a class over a region of one image")
    ex.add_argument("image", help="PNG/JPEG/TIFF image, or .npy float array (C, *S)")
    _add_target(ex)
    _add_model(ex)
    ex.add_argument("--layer", nargs="+", help="layer name(s); default: the bottleneck")
    ex.add_argument("-o", "--output", help="write an overlay PNG")
    ex.add_argument("--save-npy", help="write the heatmap as .npy")
    ex.set_defaults(run=cmd_explain)

    ly = sub.add_parser("layers", help="list the model's layers and output shapes")
    _add_model(ly)
    ly.add_argument("--image", help="example image (default: a zero image)")
    ly.add_argument("--all", action="store_true", help="also list non-spatial layers")
    ly.set_defaults(run=cmd_layers)

    sw = sub.add_parser("sweep", help="one target explained at many layers, as a grid")
    sw.add_argument("image")
    _add_target(sw)
    _add_model(sw)
    sw.add_argument("--layers", nargs="+", help="layers (default: the model's named layers or blocks)")
    sw.add_argument("-o", "--output", default="segcam-sweep.png")
    sw.set_defaults(run=cmd_sweep)

    pr = sub.add_parser("progress", help="layers × training checkpoints, with each one's mIoU")
    pr.add_argument("checkpoints", nargs="+", help="weights files of one model, in training order")
    pr.add_argument("--image", required=True)
    _add_target(pr)
    _add_model(pr)
    pr.add_argument("--layers", nargs="+", help="layers (default: the family's named layers)")
    pr.add_argument("--data-seed", type=int, default=1, help="synthetic scenes for the mIoU")
    pr.add_argument("--data-count", type=int, default=64)
    pr.add_argument("-o", "--output", default="segcam-progress.png")
    pr.set_defaults(run=cmd_progress)

    de = sub.add_parser("demo", help="explain the bundled scenes with the default model")
    de.add_argument("-o", "--output", default="segcam-demo.png")
    de.set_defaults(run=cmd_demo)

    tr = sub.add_parser("train", help="retrain the default model, or briefly train a zoo family")
    tr.add_argument("--family", help="a zoo family (cached in $SEGCAM_CACHE or ~/.cache/segcam)")
    tr.add_argument("--out", default="default_unet.safetensors", help="default model: file to write")
    tr.add_argument("--steps", type=int, help="default model: 2400; a family: its own (300 mostly)")
    tr.add_argument("--checkpoints", type=int, default=3, help="a family: checkpoints to keep")
    tr.add_argument("--force", action="store_true", help="a family: retrain even if cached")
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
