"""The ``segcam explain`` command and the Python snippet that reproduce what the page shows.

Both are built from the explanation itself (its method options with their defaults filled in,
its module layer, the region drawn), so they repeat the view exactly.  A region drawn with the
brush (or a polygon on a volume's slice) has no command-line form: the page offers it as
``region.npy``, passed with ``--mask``; a volume's slice explained by a 2-D model is offered as
``image.npy``.  Uploaded models, and zoo models served without weights, are named by their spec:
the command repeats the view only where that spec loads the same weights.
"""

from __future__ import annotations

import shlex
from typing import Any

from ... import regions
from ...core import INPUT
from ...data import SAMPLES
from ...methods import METHODS
from .config import ModelSpec


def _image_path(picture: Any, sliced: bool) -> str:
    if picture.sample:
        return str(SAMPLES / picture.name)
    return "image.npy" if sliced else picture.name  # a volume's slice: the page's image.npy download


def _region_flags(region: regions.Region) -> list[str]:
    if isinstance(region, regions.Pixels) and len(region.points) == 1:
        return ["--pixel", ",".join(map(str, region.points[0]))]
    if isinstance(region, regions.Box):
        return ["--box", ",".join(map(str, (*region.start, *region.stop)))]
    if isinstance(region, regions.Polygon):
        return ["--polygon", ";".join(f"{y:g},{x:g}" for y, x in region.vertices)]
    if isinstance(region, regions.Instance):
        return ["--instance", ",".join(map(str, region.point))]
    if isinstance(region, regions.Predicted):
        return ["--predicted"]
    if isinstance(region, regions.Everything):
        return ["--all"]
    return ["--mask", "region.npy"]


def _option_text(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _model_flags(spec: ModelSpec) -> list[str]:
    flags = ["--model", spec.spec]
    if spec.weights:
        flags += ["--weights", spec.weights]
    if spec.num_classes:
        flags += ["--num-classes", str(spec.num_classes)]
    return flags


def _region_code(region: regions.Region) -> str:
    if isinstance(region, regions.Mask) or (isinstance(region, regions.Pixels) and len(region.points) != 1):
        return 'segcam.regions.mask(np.load("region.npy"))'
    return f"segcam.regions.{region!r}"


def commands(served: Any, picture: Any, exp: Any, region: regions.Region, view: tuple[int, int] | None
             ) -> tuple[str, str]:
    """``(command, python)`` reproducing explanation ``exp`` of ``picture`` by ``served`` for the
    ``region`` drawn (``view``: the slice shown of a volume)."""
    image = _image_path(picture, view is not None and served.dims == 2)
    defaults = {s.name: s.default for s in METHODS[exp.method].options()} if exp.method in METHODS else {}
    words = ["segcam", "explain", image, *_model_flags(served.spec), "--class", str(exp.cls),
             *_region_flags(region), "--method", exp.method]
    for key, value in exp.options.items():
        if value is None and defaults.get(key) is None:
            continue  # none is the default: nothing to say
        words += ["--" + key.replace("_", "-"), "none" if value is None else _option_text(value)]
    if exp.layer != INPUT:
        words += ["--layer", exp.layer]
    words += ["-o", "figure.png", "--save-npy", "heatmap.npy"]
    command = shlex.join(words)
    spec = served.spec
    load = [repr(spec.spec)] + ([f"weights={spec.weights!r}"] if spec.weights else []) + \
        ([f"num_classes={spec.num_classes}"] if spec.num_classes else [])
    keywords = "".join(f", {k}={v!r}" for k, v in exp.options.items())
    layer = "" if exp.layer == INPUT else f", layer={exp.layer!r}"
    python = "\n".join([
        "import numpy as np",
        "import segcam",
        "",
        f"loaded = segcam.load_model({', '.join(load)})",
        "explainer = segcam.Explainer.from_loaded(loaded)",
        f"image = loaded.preprocess(segcam.data.load_image({image!r}))",
        f"target = segcam.Target({exp.cls}, {_region_code(region)})",
        f"exp = explainer.explain(image, target, method={exp.method!r}{layer}{keywords})",
        'np.save("heatmap.npy", exp.heatmap)',
    ])
    return command, python + "\n"
