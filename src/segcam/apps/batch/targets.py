"""What a batch run explains in each item: the target kinds, and the targets they give.

A :class:`TargetSpec` (from the command line: :func:`parse_targets`, e.g. ``instances:1,3``)
turns an item's predicted label map, its ground truth or its manifest row into
``(key, Target)`` pairs with :func:`targets_for`:

* ``predicted`` — each class present in the prediction, over the pixels predicted as it
  (``regions.predicted()``), key ``c<class>``;
* ``instances`` — each predicted object of the given classes: a face-connected component
  (4-neighbours in 2-D, 6 in 3-D) of one class, as ``regions.instance(*first_pixel)``, key
  ``c<class>-i<k>`` with ``k`` counting the class's objects by their first pixel in raster order;
* ``truth`` — each class present in the ground-truth mask, over its ground-truth pixels
  (``regions.mask(truth == c)``), key ``t<class>``;
* ``manifest`` — the item's explicit targets (``Target.from_dict``), key ``m<k>``.

Keys are stable and filesystem-safe: they number objects among *all* of a class's components,
so changing ``min_pixels`` or ``max_targets`` drops keys but never renames one (a resumed run
finds its earlier results under the same keys).  ``predicted`` and ``instance`` regions are kept
as regions, not masks: their JSON form can be stored and reloaded, and at explain time they
resolve to the same pixels, from the same model's prediction of the same image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ... import SegcamError, Target, TargetError, regions
from ...errors import closest

KINDS = ("predicted", "instances", "truth", "manifest")
BACKGROUND = 0

Candidate = tuple[str, Target, int]  # key, target, its pixel count (0 for manifest targets, not counted)


@dataclass(frozen=True)
class TargetSpec:
    """Which targets to explain in each item (see the module docstring for the kinds).

    ``classes`` (indices or names) limits ``predicted`` and ``truth`` to those classes and says
    whose objects ``instances`` explains; explicit classes are taken as given, background
    included.  Without ``classes``, ``skip_background`` leaves class 0 out.  ``min_pixels``
    drops classes and objects with fewer pixels; ``max_targets`` keeps, per item, the largest
    targets (ties: the earlier one), returned in the usual order — or the first ones for
    ``manifest``, whose targets are taken as written.
    """

    kind: str
    classes: tuple[int | str, ...] | None = None
    skip_background: bool = True
    min_pixels: int = 1
    max_targets: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SegcamError(f"unknown target kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        if self.classes is not None:
            object.__setattr__(self, "classes", _checked_classes(self.classes))
        if self.kind == "instances" and self.classes is None:
            raise SegcamError("'instances' explains the objects of given classes; name them, e.g. instances:1,3.")
        if self.kind == "manifest" and self.classes is not None:
            raise SegcamError("'manifest' targets are explained as the manifest writes them; drop the classes.")
        if not isinstance(self.skip_background, bool):
            raise SegcamError(f"skip_background must be True or False, got {self.skip_background!r}.")
        _check_count(self.min_pixels, "min_pixels")
        if self.max_targets is not None:
            _check_count(self.max_targets, "max_targets")

    @property
    def text(self) -> str:
        """The command-line form, ``kind`` or ``kind:c1,c2`` (:func:`parse_targets` reads it back)."""
        return self.kind if self.classes is None else f"{self.kind}:{','.join(map(str, self.classes))}"


def parse_targets(text: str, *, skip_background: bool = True, min_pixels: int = 1,
                  max_targets: int | None = None) -> TargetSpec:
    """A spec from ``kind`` or ``kind:class,class`` (``predicted``, ``instances:1,3``,
    ``truth:disc``, ``manifest``); a class is an index or a name."""
    if not isinstance(text, str) or not text.strip():
        raise SegcamError(f"targets must be one of {', '.join(KINDS)} (with ':classes' for instances), got {text!r}.")
    kind, colon, rest = text.strip().partition(":")
    classes = None
    if colon:
        cells = [c.strip() for c in rest.split(",")]
        if not all(cells):
            raise SegcamError(f"{text!r} has an empty class; write classes separated by commas, e.g. {kind}:1,3.")
        classes = tuple(int(c) if c.isdigit() else c for c in cells)
    return TargetSpec(kind.strip().lower(), classes, skip_background, min_pixels, max_targets)


def targets_for(
    spec: TargetSpec,
    predicted: Tensor,
    truth: Tensor | None = None,
    manifest: Sequence[dict[str, Any]] | None = None,
    class_names: Sequence[str] | None = None,
    *,
    n_classes: int | None = None,
) -> list[tuple[str, Target]]:
    """The ``(key, target)`` pairs of one item, in a fixed order (class, then object by first
    pixel; manifest order): ``predicted`` and ``truth`` are integer label maps ``(*S)``, 2-D
    ``(H, W)`` or 3-D ``(D, H, W)``, ``manifest`` the item's target dicts.  Ground-truth labels
    the model has no class for (``≥ n_classes``, e.g. 255 for "ignore") are not targets."""
    if not isinstance(spec, TargetSpec):
        raise SegcamError(f"spec must be a TargetSpec (see parse_targets), got {type(spec).__name__}.")
    _check_labels(predicted, "the predicted label map")
    wanted = None if spec.classes is None else _class_indices(spec.classes, class_names)
    if spec.kind == "manifest":
        return [(key, target) for key, target, _ in _manifest_targets(manifest)[: spec.max_targets]]
    if spec.kind == "truth":
        labels, key, region = _truth(truth, predicted), "t{}", lambda c: regions.mask(truth == c)
        if n_classes is not None:
            labels = labels[labels < n_classes]  # the classes present; their masks come from truth
    else:
        labels, key, region = predicted, "c{}", lambda c: regions.predicted()
    if spec.kind == "instances":
        found = _instance_targets(predicted, torch.tensor(wanted, device=predicted.device))
    else:
        found = _class_targets(labels, wanted, spec.skip_background, key, region)
    return _kept(found, spec.min_pixels, spec.max_targets)


def _class_targets(labels: Tensor, wanted: list[int] | None, skip_background: bool, key: str,
                   region: Callable[[int], regions.Region]) -> list[Candidate]:
    """One target per class present in ``labels`` (all, or those ``wanted``), by class."""
    classes, counts = torch.unique(labels, return_counts=True)
    out = []
    for c, n in zip(classes.tolist(), counts.tolist()):
        if (c in wanted) if wanted is not None else not (skip_background and c == BACKGROUND):
            out.append((key.format(c), Target(c, region(c)), n))
    return out


def _instance_targets(labels: Tensor, wanted: Tensor) -> list[Candidate]:
    """One ``instance`` target per component of a wanted class, by class then first pixel."""
    firsts, sizes = components(labels, wanted)
    classes = labels.flatten()[firsts]
    seeds = torch.stack(torch.unravel_index(firsts, labels.shape), 1)
    out = []
    for c in sorted(set(classes.tolist())):
        mine = (classes == c).nonzero().flatten().tolist()
        for k, j in enumerate(mine):
            out.append((f"c{c}-i{k}", Target(c, regions.instance(*seeds[j].tolist())), int(sizes[j])))
    return out


def components(labels: Tensor, wanted: Tensor) -> tuple[Tensor, Tensor]:
    """``(first, size)`` of every face-connected component of equal labels among the pixels
    whose label is in ``wanted``: the flat raster index of its first pixel, and its pixel count,
    sorted by ``first``.

    Each pixel starts with its own flat index ``r(p) = p``; ``r(p) ← min(r(p), r(q))`` over face
    neighbours ``q`` of the same label, then ``r(p) ← r(r(p))`` (pointer jumping), until nothing
    changes: ``r`` is then the smallest index of the component, its first pixel.  These are the
    components :func:`segcam.regions.flood_fill` grows, found all at once.
    """
    n = labels.numel()
    index = torch.arange(n, device=labels.device).reshape(labels.shape)
    inside = torch.isin(labels, wanted)
    root = torch.where(inside, index, n)
    links = [(axis, labels.narrow(axis, 1, s - 1) == labels.narrow(axis, 0, s - 1))
             for axis, s in enumerate(labels.shape) if s > 1]
    outside = torch.full((1,), n, device=labels.device)
    while True:
        new = root.clone()
        for axis, same in links:
            s = labels.shape[axis]
            low, high = new.narrow(axis, 0, s - 1), new.narrow(axis, 1, s - 1)
            low.copy_(torch.where(same, torch.minimum(low, root.narrow(axis, 1, s - 1)), low))
            high.copy_(torch.where(same, torch.minimum(high, root.narrow(axis, 0, s - 1)), high))
        new = torch.cat([new.flatten(), outside])[new]
        if torch.equal(new, root):
            return torch.unique(root[inside], return_counts=True)
        root = new


def _manifest_targets(manifest: Sequence[dict[str, Any]] | None) -> list[Candidate]:
    if not manifest:
        raise SegcamError("'manifest' targets come from the manifest's 'targets' column, and this item has none; "
                          'fill it (e.g. [{"cls": 2}]) or choose another target kind.')
    out = []
    for k, data in enumerate(manifest):
        try:
            out.append((f"m{k}", Target.from_dict(data), 0))
        except SegcamError as e:
            raise type(e)(f"manifest target {k}: {e}") from None
    return out


def _kept(found: list[Candidate], min_pixels: int, max_targets: int | None) -> list[tuple[str, Target]]:
    """Targets of at least ``min_pixels`` pixels; the ``max_targets`` largest of them, in order."""
    big = [c for c in found if c[2] >= min_pixels]
    if max_targets is not None and len(big) > max_targets:
        largest = sorted(range(len(big)), key=lambda i: -big[i][2])[:max_targets]  # stable: ties keep order
        big = [big[i] for i in sorted(largest)]
    return [(key, target) for key, target, _ in big]


def _truth(truth: Tensor | None, predicted: Tensor) -> Tensor:
    if truth is None:
        raise SegcamError("'truth' targets need a ground-truth mask for each item; give a manifest with a "
                          "'mask' column, or choose 'predicted'.")
    _check_labels(truth, "the ground-truth mask")
    if truth.shape != predicted.shape:
        raise SegcamError(f"the ground-truth mask has shape {tuple(truth.shape)} but the prediction "
                          f"{tuple(predicted.shape)}; give a mask of the image's size.")
    return truth


def _check_labels(labels: Any, what: str) -> None:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dtype.is_complex \
            or labels.dtype == torch.bool or labels.ndim not in (2, 3):
        shown = f"{labels.dtype} of shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise SegcamError(f"{what} must be an integer tensor (H, W) or (D, H, W) of class labels, got {shown}; "
                          "give one item's labels, without the batch axis.")
    if labels.numel() and int(labels.min()) < 0:
        raise SegcamError(f"{what} holds negative labels; class labels are 0, 1, 2, ….")


def _checked_classes(classes: Any) -> tuple[int | str, ...]:
    if isinstance(classes, (str, int)) or not isinstance(classes, Sequence) or not classes:
        raise SegcamError(f"classes must be a non-empty list of class indices or names, got {classes!r}.")
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, str)) or (isinstance(c, int) and c < 0) or c == "":
            raise SegcamError(f"a class is an index ≥ 0 or a name, got {c!r} in {tuple(classes)}.")
    return tuple(classes)


def check_classes(spec: TargetSpec, class_names: Sequence[str] | None) -> None:
    """Refuse class names or indices of ``spec`` that ``class_names`` does not have (before a run)."""
    if spec.classes is not None:
        _class_indices(spec.classes, class_names)


def _class_indices(classes: tuple[int | str, ...], class_names: Sequence[str] | None) -> list[int]:
    """Class indices of ``classes``, names looked up in ``class_names`` (and indices checked there)."""
    out = []
    for c in classes:
        if isinstance(c, str):
            if not class_names or c not in class_names:
                near = closest(c, class_names or [])
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else "; use class indices."
                raise TargetError(f"unknown class name {c!r}{hint}")
            c = list(class_names).index(c)
        elif class_names and c >= len(class_names):
            raise TargetError(f"class {c} is out of range: the model has {len(class_names)} classes, "
                              f"so use 0..{len(class_names) - 1}.")
        out.append(c)
    return out


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SegcamError(f"{name} must be a positive integer, got {value!r}.")
