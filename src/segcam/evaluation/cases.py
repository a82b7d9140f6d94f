"""What a benchmark explains: images, and in each the targets of three region kinds.

For an object of class ``c`` whose centre the model labels ``c``:

* ``pixel`` — the object's centre pixel;
* ``object`` — the predicted object (connected instance) under that pixel;
* ``class`` — every pixel predicted as ``c``.

On segcam's synthetic scenes each case carries its true evidence (the object, its cue, the
bias tile, the distractors: :meth:`segcam.data.Scene.evidence`); on a user's images the
objects are the predicted ones and the evidence is the ground-truth mask when one is given
(``object`` only), else none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..checks import check_callable, check_choice, check_int, shown
from ..core import Target
from ..core.regions import flood_fill, instance, pixel, predicted
from ..data import Scene, SceneConfig, make_scene
from ..errors import SegcamError
from ..explainer import Explainer

KINDS = ("pixel", "object", "class")


@dataclass(frozen=True)
class Case:
    """One target in one image: its kind, the target, the true evidence if known, a caption."""

    kind: str
    target: Target
    evidence: dict[str, Tensor] | None
    caption: str


@dataclass(frozen=True)
class ImageCases:
    """One image ``(C, *S)`` with the model's prediction ``(*S)`` and the cases explained in it;
    ``truth`` is a label map when known (for figures)."""

    name: str
    image: Tensor
    predicted: Tensor
    cases: list[Case]
    truth: Tensor | None = None
    evidence_masks: dict[str, Tensor] = field(default_factory=dict)


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple of known region kinds (at least one)."""
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise SegcamError(f"kinds must be a non-empty list of {', '.join(KINDS)}, got {shown(kinds)}.")
    return tuple(dict.fromkeys(check_choice(k, "region kind", KINDS) for k in kinds))


def scene_cases(
    explainer: Explainer, count: int, seed: int, config: SceneConfig = SceneConfig(),
    kinds: Sequence[str] = KINDS, preprocess: Callable[[Tensor], Tensor] | None = None,
) -> Iterator[ImageCases]:
    """``count`` fresh scenes of stream ``seed``, each with the cases of one object per kind.

    The object is the first one whose centre the model labels correctly (a scene without one is
    skipped, so fewer than ``count`` come); its class is explained as a whole class.
    ``preprocess`` (e.g. a loaded model's normalisation) is applied to each scene's image; it
    must keep the image's size, since the evidence is known pixel by pixel.
    """
    count, seed, kinds = check_int(count, "scenes", low=1), check_int(seed, "seed", low=0), check_kinds(kinds)
    if preprocess is not None:
        check_callable(preprocess, "preprocess")
    for index in range(count):
        scene = make_scene(index, seed, config)
        image = scene.image if preprocess is None else preprocess(scene.image)
        if tuple(image.shape[1:]) != tuple(scene.image.shape[1:]):
            raise SegcamError(f"the model's preprocessing turns the {tuple(scene.image.shape[1:])} scenes into "
                              f"{tuple(image.shape[1:])} images, so their known evidence no longer fits; "
                              "evaluate this model on your own images (segcam evaluate --images DIR).")
        pred = _predict(explainer, image)
        for k, cls in enumerate(scene.classes, start=1):
            centre = scene.centre_of(k)
            if int(pred[centre]) == cls:
                cases = [_scene_case(scene, kind, k, cls, centre) for kind in kinds]
                masks = {"cue": scene.cue, "bias tile": scene.bias_tile}
                yield ImageCases(f"scene {seed}/{index}", image, pred, cases, scene.labels, masks)
                break


def _scene_case(scene: Scene, kind: str, k: int, cls: int, centre: tuple[int, ...]) -> Case:
    if kind == "pixel":
        return Case(kind, Target(cls, pixel(*centre)), scene.evidence(k), f"pixel {centre}")
    if kind == "object":
        return Case(kind, Target(cls, instance(*centre)), scene.evidence(k), f"object at {centre}")
    return Case(kind, Target(cls, predicted()), scene.class_evidence(cls), "whole class")


def image_cases(
    explainer: Explainer, images: Sequence[tuple[str, Tensor, Tensor | None]], kinds: Sequence[str] = KINDS,
    background: int | None = 0,
) -> Iterator[ImageCases]:
    """A user's images ``(name, image (C, *S), ground truth (*S) or None)``: per image the
    largest predicted object (skipping class ``background``) gives the cases; an image where
    only the background is predicted is skipped."""
    kinds = check_kinds(kinds)
    for name, image, truth in images:
        fwd = explainer.forward(image)
        pred = fwd.predicted[0]
        if truth is not None:
            _check_truth(name, truth, pred, fwd.logits.n_classes)
        found = _largest_object(pred, background)
        if found is None:
            continue
        cls, obj, centre = found
        cases = []
        for kind in kinds:
            evidence = None if truth is None else _truth_evidence(truth, cls, obj if kind != "class" else None)
            region = {"pixel": pixel(*centre), "object": instance(*centre), "class": predicted()}[kind]
            caption = {"pixel": f"pixel {centre}", "object": f"object at {centre}", "class": "whole class"}[kind]
            cases.append(Case(kind, Target(cls, region), evidence, caption))
        yield ImageCases(name, image, pred, cases, truth)


def _check_truth(name: str, truth: Any, pred: Tensor, n_classes: int) -> None:
    if not isinstance(truth, Tensor) or truth.dtype.is_floating_point or tuple(truth.shape) != tuple(pred.shape):
        raise SegcamError(f"the label map of {name!r} must be an integer map of the image's size {tuple(pred.shape)} "
                          f"(after the model's preprocessing), got {shown(truth)}; save label maps at the "
                          "model's input size.")
    if truth.numel() and not (0 <= int(truth.min()) and int(truth.max()) < n_classes):
        raise SegcamError(f"the label map of {name!r} holds labels {int(truth.min())}..{int(truth.max())} but the "
                          f"model has classes 0..{n_classes - 1}; store class indices (not 0/255 masks).")


def _predict(explainer: Explainer, image: Tensor) -> Tensor:
    return explainer.forward(image).predicted[0]


def _largest_object(pred: Tensor, background: int | None) -> tuple[int, Tensor, tuple[int, ...]] | None:
    """The class, mask and most central pixel of the largest connected predicted object."""
    best: tuple[int, Tensor] | None = None
    for cls in torch.unique(pred).tolist():
        if cls == background:
            continue
        for part in _components(pred == cls):
            if best is None or int(part.sum()) > int(best[1].sum()):
                best = (int(cls), part)
    if best is None:
        return None
    points = torch.nonzero(best[1]).float()
    centre = points[(points - points.mean(0)).pow(2).sum(1).argmin()]
    return best[0], best[1], tuple(int(v) for v in centre)


def _components(mask: Tensor) -> list[Tensor]:
    """Connected parts (face neighbours) of a boolean mask."""
    parts, left = [], mask.clone()
    while bool(left.any()):
        seed = tuple(int(v) for v in torch.nonzero(left)[0])
        part = flood_fill(left, seed)
        parts.append(part)
        left &= ~part
    return parts


def _truth_evidence(truth: Tensor, cls: int, obj: Tensor | None) -> dict[str, Tensor]:
    """The ground truth of class ``cls`` (touching ``obj`` when given) as ``object`` evidence."""
    true = truth == cls
    if obj is not None:
        parts = [p for p in _components(true) if bool((p & obj).any())]
        true = torch.stack(parts).any(0) if parts else torch.zeros_like(true)
    empty = torch.zeros_like(true)
    return {"object": true, "context": empty, "bias": empty, "distractors": empty}
