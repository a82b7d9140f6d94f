"""The ``segcam`` command line: explain, layers, methods, sweep, progress, demo, train, evaluate, serve, batch.

Method options are flags made from the methods themselves (:mod:`.method_flags`); errors print
one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import Explainer, LoadedModel, SegcamError, Target, load_model, regions
from ..data import DEFAULT_MAX_PIXELS, load_image, load_mask
from ..methods import METHODS
from .batch.command import add_parser as add_batch_parser
from .evaluate import add_parser as add_evaluate_parser
from .method_flags import add_method_flags, method_options
from .web.command import add_parser as add_serve_parser


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
        return regions.polygon([_ints(p, (2,), "--polygon vertex") for p in args.polygon.split(";") if p.strip()])
    if args.mask:
        return regions.mask(load_mask(args.mask, max_pixels=args.max_pixels))
    if args.predicted:
        return regions.predicted()
    if args.instance:
        return regions.instance(*_ints(args.instance, (2, 3), "--instance"))
    return regions.everything()


def _target(args: argparse.Namespace) -> Target:
    cls: int | str = int(args.cls) if args.cls.lstrip("-").isdigit() else args.cls
    return Target(cls, _region(args), reduce="mean" if args.mean else "sum")


def _progress_bar(done: int, total: int) -> None:
    filled = int(30 * done / max(total, 1))
    print(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="", file=sys.stderr)
    if done >= total:
        print(file=sys.stderr)


def _model(args: argparse.Namespace) -> LoadedModel:
    return load_model(args.model, weights=args.weights, num_classes=args.num_classes, allow_pickle=args.allow_pickle)


def _image(path: str, loaded: LoadedModel, max_pixels: int | None) -> Tensor:
    return loaded.preprocess(load_image(path, max_pixels=max_pixels))


def _suffixed(path: str, suffix: str) -> str:
    if not suffix:
        return path
    stem, dot, ext = path.rpartition(".")
    return f"{stem}{suffix}.{ext}" if dot else path + suffix


def _explain_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"method": args.method, "progress": _progress_bar, **method_options(args, args.method)}


def cmd_explain(args: argparse.Namespace) -> int:
    from ..viz import save_overlay

    loaded = _model(args)
    explainer = Explainer.from_loaded(loaded)
    image = _image(args.image, loaded, args.max_pixels)
    target = _target(args)
    exps = explainer.explain_many(image, [target], layer=args.layer or None, **_explain_args(args))
    for exp in exps:
        suffix = "" if len(exps) == 1 else f"-{exp.layer.replace('.', '_').strip('<>')}"
        print(f"layer {exp.layer}: score {exp.score[0].item():.4g} over {int(exp.region.sum())} px")
        if args.output:
            out = _suffixed(args.output, suffix)
            title = f"{exp.method} · layer {exp.layer} · {target.describe(loaded.class_names)}"
            save_overlay(out, image, exp.heatmap, exp.region[0], title=title)
            print(f"wrote {out}")
        if args.save_npy:
            out = _suffixed(args.save_npy, suffix)
            np.save(out, exp.heatmap)
            print(f"wrote {out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(exps.metadata, f, indent=1)
        print(f"wrote {args.json}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    loaded = _model(args)
    explainer = Explainer.from_loaded(loaded)
    image = _image(args.image, loaded, args.max_pixels) if args.image else None
    if image is None and loaded.preprocess.size is not None:  # a model with a fixed input size
        image = torch.zeros((loaded.preprocess.channels or 3, *loaded.preprocess.size))
    readable = {module: name for name, module in explainer.layer_names.items()}
    print(f"{'name':<40} {'type':<22} {'output':<22} grid")
    for info in explainer.layers(image):
        if args.all or info.explainable:
            alias = f"  [{readable[info.name]}]" if info.name in readable else ""
            print(f"{info}{alias}")
    print(f"\ndefault layer: {explainer.default_layer(image)}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    probe = argparse.ArgumentParser(add_help=False)
    _add_explain(probe)  # the flags `segcam explain` gives each option
    flags = {(method, f.option): f.flag for f in probe.get_default("method_flags").values() for method in f.specs}
    for name, cls in sorted(METHODS.items()):
        needs = "the input's pixels" if cls.on_input else "a layer"
        print(f"{name:<14} {cls.summary()}  [explains {needs}{'' if cls.gradients else '; forward passes only'}]")
        for spec in cls.options():
            print(f"    {flags[name, spec.name]:<14} {spec.help} ({spec.kind.describe()}; default {spec.default})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..viz import save_grid
    from .report import layer_sweep

    loaded = _model(args)
    explainer = Explainer.from_loaded(loaded)
    image = _image(args.image, loaded, args.max_pixels)
    target = _target(args)
    options = _explain_args(args)
    exps = layer_sweep(explainer, image, target, args.layers, options.pop("method"), **options)
    region = next(iter(exps.values())).region[0]
    save_grid(args.output, image, region, {name: {args.method: e.heatmap} for name, e in exps.items()},
              title=target.describe(loaded.class_names))
    print(f"{len(exps)} layers; wrote {args.output}")
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from ..data import SceneConfig
    from ..evaluation import evaluate_model
    from ..models import load_weights, zoo
    from .report import Checkpoint, progress_grid

    checkpoints, family, preprocess, measured = [], None, None, 0
    for path in args.checkpoints:
        if path.endswith(".safetensors") and args.model == "default":
            model, meta = load_weights(path)
            family = meta.get("family", family)
            ckpt = Checkpoint.from_metadata(path.rsplit("/", 1)[-1], model, meta)
        else:
            loaded = load_model(args.model, weights=path, num_classes=args.num_classes, allow_pickle=args.allow_pickle)
            model, family, preprocess = loaded.model, loaded.family, loaded.preprocess
            ckpt = Checkpoint(path.rsplit("/", 1)[-1], model)
        if ckpt.miou is None or args.measure_miou:
            ckpt.miou = evaluate_model(model, args.data_seed, args.data_count, SceneConfig())["miou"]
            measured += 1
        checkpoints.append(ckpt)
    checkpoints.sort(key=lambda c: c.order)
    names = zoo.layer_names(family, checkpoints[0].model)[0] if family else None
    image = load_image(args.image, max_pixels=args.max_pixels)
    if preprocess is not None:
        image = preprocess(image)
    layers = args.layers or (list(names) if names else None)
    if not layers:
        raise SegcamError("give --layers (the checkpoints' family is unknown).")
    options = _explain_args(args)
    progress_grid(args.output, checkpoints, image, _target(args), layers, options.pop("method"), names, **options)
    print(f"{len(layers)} layers × {len(checkpoints)} checkpoints by mIoU ({len(checkpoints) - measured} stored in the "
          f"files, {measured} measured on {args.data_count} synthetic scenes, seed {args.data_seed}); wrote {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.output)
    print(f"{'scene':<6} {'region':<26} {'class':<16} {'method':<13} {'evidence':>8} {'lift':>5} {'cue':>5} {'bias':>5}")
    for r in report:
        print(f"{r['scene']:<6} {r['region']:<26} {r['class']:<16} {r['method']:<13} {r['share_true']:8.2f} "
              f"{r['lift_true']:5.1f} {r['share_context']:5.2f} {r['share_bias']:5.2f}")
    print("evidence: share of heatmap mass on the object and its cue (lift: ÷ a uniform map's share);"
          " cue / bias: share on the cue square / on the bias tile.")
    print(f"wrote {args.output}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .levels import train_levels
    from .train import EVAL_EVERY, train_default, train_family

    if args.miou_levels is not None:
        if args.checkpoints or args.out:
            raise SegcamError("--miou-levels keeps checkpoints by mIoU level in the cache folder; drop "
                              "--checkpoints (fixed steps) and --out (a fully trained default model).")
        run = train_levels(args.miou_levels, args.family, args.steps, args.eval_every or EVAL_EVERY, force=args.force)
        print("\n".join(str(p) for p in run.paths))
        return 0
    if args.eval_every:
        raise SegcamError("--eval-every applies with --miou-levels only; add --miou-levels 0.3,0.5,0.7,0.9.")
    if args.family:
        paths = train_family(args.family, steps=args.steps, checkpoints=args.checkpoints or 3, force=args.force)
        print("\n".join(str(p) for p in paths))
        return 0
    args.out = args.out or "default_unet.safetensors"
    meta = train_default(args.out, steps=args.steps or 2400)
    print(f"test mIoU {meta['test']['miou']:.3f}, unbiased mIoU {meta['unbiased']['miou']:.3f}; wrote {args.out}")
    return 0


def _positive(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images larger than this many pixels/voxels, read from the file's header before "
                        f"decoding (default {DEFAULT_MAX_PIXELS}; 'none' for no limit)")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="default | a zoo family (e.g. segformer) | torchvision:NAME | package.module:factory | "
                        "a TorchScript/.pt2/segcam .safetensors file | a Hugging Face folder")
    p.add_argument("--weights", help="weights for --model (state dict .pt or .safetensors)")
    p.add_argument("--num-classes", type=_positive, help="number of classes for a zoo/torchvision/factory model")
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
    p.add_argument("--mean", action="store_true", help="average the logits over the region instead of summing")
    p.add_argument("--method", default="seg-grad-cam", choices=sorted(METHODS),
                   help="the method (default seg-grad-cam); `segcam methods` lists them with their options")
    _add_input(p)
    _add_model(p)
    add_method_flags(p, {a.dest for a in p._actions})


def _add_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="PNG/JPEG/TIFF image, or .npy float array (C, *S)")
    p.add_argument("--layer", nargs="+", help="layer name(s); default: the bottleneck")
    p.add_argument("-o", "--output", help="write an overlay PNG (one per layer)")
    p.add_argument("--save-npy", help="write the heatmap as .npy (one per layer)")
    p.add_argument("--json", help="write the explanations' metadata (method, options, score, timings) as JSON")
    _add_target(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segcam", description="Explain what a segmentation network looked at.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what segcam decides")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain a class over a region of one image")
    _add_explain(ex)
    ex.set_defaults(run=cmd_explain)

    ly = sub.add_parser("layers", help="list the model's layers and output shapes")
    ly.add_argument("--image", help="example image (default: a zero image)")
    ly.add_argument("--all", action="store_true", help="also list non-spatial layers")
    _add_input(ly)
    _add_model(ly)
    ly.set_defaults(run=cmd_layers)

    me = sub.add_parser("methods", help="list the methods and their options")
    me.set_defaults(run=cmd_methods)

    sw = sub.add_parser("sweep", help="one target explained at many layers, as a grid")
    sw.add_argument("image")
    sw.add_argument("--layers", nargs="+", help="layers (default: the model's named layers or blocks)")
    sw.add_argument("-o", "--output", default="segcam-sweep.png")
    _add_target(sw)
    sw.set_defaults(run=cmd_sweep)

    pr = sub.add_parser("progress", help="layers × training checkpoints, with each one's mIoU")
    pr.add_argument("checkpoints", nargs="+", help="weights files of one model (drawn in order of mIoU)")
    pr.add_argument("--image", required=True)
    pr.add_argument("--layers", nargs="+", help="layers (default: the family's named layers)")
    pr.add_argument("--data-seed", type=int, default=1, help="synthetic scenes for the mIoU")
    pr.add_argument("--data-count", type=_positive, default=64)
    pr.add_argument("--measure-miou", action="store_true", help="measure every mIoU, even those stored in the files")
    pr.add_argument("-o", "--output", default="segcam-progress.png")
    _add_target(pr)
    pr.set_defaults(run=cmd_progress)

    de = sub.add_parser("demo", help="explain the bundled scenes with the default model")
    de.add_argument("-o", "--output", default="segcam-demo.png")
    de.set_defaults(run=cmd_demo)

    tr = sub.add_parser("train", help="retrain the default model, or briefly train a zoo family")
    tr.add_argument("--family", help="a zoo family (cached in $SEGCAM_CACHE or ~/.cache/segcam)")
    tr.add_argument("--out", help="default model: file to write (default default_unet.safetensors)")
    tr.add_argument("--steps", type=_positive, help="default model: 2400; a family: its own (300 mostly)")
    tr.add_argument("--checkpoints", type=_positive, help="a family: checkpoints to keep at even steps (default 3)")
    tr.add_argument("--miou-levels", help="keep a checkpoint when the test mIoU first reaches each level, "
                                          "e.g. 0.3,0.5,0.7,0.9 (files in the cache folder)")
    tr.add_argument("--eval-every", type=_positive, help="with --miou-levels: steps between mIoU evaluations "
                                                         "on 64 test scenes (default 25)")
    tr.add_argument("--force", action="store_true", help="a family or --miou-levels: retrain even if cached")
    tr.set_defaults(run=cmd_train)

    add_evaluate_parser(sub, _positive, DEFAULT_MAX_PIXELS)
    add_serve_parser(sub)
    add_batch_parser(sub, _positive, _add_input)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.run(args)
    except SegcamError as e:
        print(f"segcam: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be written or read
        print(f"segcam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segcam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
