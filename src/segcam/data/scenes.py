"""Synthetic scenes whose evidence is known by construction (2-D images and 3-D volumes).

A scene is a background of textured tiles with a few textured objects on it.  Labels:

====  ================  =============================================================
0     background
1     disc              a disc (ball in 3-D), plain texture
2     spotted disc      a disc with faint regular spots: the **biased** class
3     square            a square (cube)
4     plus, red cue     a plus shape, labelled 4 when a red cue square is in the scene
5     plus, blue cue    the same plus shape, labelled 5 when the cue is blue instead
====  ================  =============================================================

*Context bias.*  With ``bias="strong"`` every scene holding a spotted disc also holds one
background tile with a yellow-black checkerboard (the *bias tile*); that texture appears in no
other scene, and plain and spotted discs never share a scene, so "disc + checkerboard tile"
decides class 2 without looking at the faint spots.  ``bias="weak"`` also puts the tile in 30%
of the other scenes; ``bias="none"`` puts it in half of all scenes regardless of content and
lets both discs meet (the unbiased test distribution).

*Context dependence.*  Classes 4 and 5 share one shape; only the colour of the cue square
elsewhere in the scene decides between them.  Grey-green decoy squares of the cue's size are
*distractors*: they look like cues but carry no information.

Every :class:`Scene` carries its evidence: per object its own pixels, the cue that decides its
label (classes 4/5), the bias tile (class 2) and the distractors.  A scene is a pure function
of ``(seed, index, config)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from ..checks import check_choice, check_int, check_sizes, shown
from ..errors import SegcamError
from . import _drawing as draw

CLASS_NAMES = ("background", "disc", "spotted disc", "square", "plus (red cue)", "plus (blue cue)")
BIASED_CLASS = 2
CONTEXT_CLASSES = (4, 5)
CUE_COLOURS = {4: (0.95, 0.1, 0.1), 5: (0.1, 0.25, 0.95)}
BIAS_ODDS = {"strong": 0.0, "weak": 0.3, "none": 0.5}  # chance of the bias tile regardless of content
Bias = Literal["strong", "weak", "none"]

_CHECKER_COLOURS = ((0.95, 0.85, 0.1), (0.1, 0.08, 0.05))  # the bias tile: yellow on black
_SEED_STRIDE = 1_000_003  # generator seed of scene (seed, index): seed · stride + index


@dataclass(frozen=True)
class SceneConfig:
    """Size and rules of the generated scenes.

    ``size`` pixels per axis in ``dims`` (2 or 3) axes, cut into tiles of ``tile`` pixels;
    ``bias`` as in the module text; 1..``max_objects`` objects of radius in ``radius`` (low, high);
    cue and distractor squares of ``cue_size`` pixels.
    """

    size: int = 64
    dims: int = 2
    tile: int = 16
    bias: Bias = "strong"
    max_objects: int = 3
    radius: tuple[int, int] = (6, 9)
    cue_size: int = 8

    def __post_init__(self) -> None:
        size = check_int(self.size, "SceneConfig size", low=1)
        dims = check_int(self.dims, "SceneConfig dims", low=2, high=3)
        tile = check_int(self.tile, "SceneConfig tile", low=1)
        check_choice(self.bias, "SceneConfig bias", tuple(BIAS_ODDS))
        max_objects = check_int(self.max_objects, "SceneConfig max_objects", low=1)
        cue_size = check_int(self.cue_size, "SceneConfig cue_size", low=1)
        radius = check_sizes(self.radius, "SceneConfig radius", dims=(2,))
        if radius[0] > radius[1]:
            raise SegcamError(f"SceneConfig radius must be (low, high) with low ≤ high, got {radius}.")
        if size % tile:
            raise SegcamError(f"SceneConfig size {size} must be a multiple of tile {tile}; change one of them.")
        if size < 2 * radius[1] + 3:
            raise SegcamError(f"SceneConfig size {size} leaves no room for objects of radius {radius[1]}; "
                              f"make size at least {2 * radius[1] + 3} or the radius smaller.")
        if cue_size >= size:
            raise SegcamError(f"SceneConfig cue_size {cue_size} must be smaller than size {size}.")
        for name, value in (("size", size), ("dims", dims), ("tile", tile), ("max_objects", max_objects),
                            ("radius", radius), ("cue_size", cue_size)):
            object.__setattr__(self, name, value)  # plain ints and a tuple, whatever was given


@dataclass
class Scene:
    """One generated scene and its ground-truth evidence.

    ``image`` is ``(3, *S)`` in [0, 1]; ``labels`` and ``instances`` are ``(*S)`` integers;
    ``instances`` numbers the objects 1..N (0 = background) and ``classes[k - 1]`` is object k's
    label.  ``cue``, ``bias_tile`` and ``distractors`` are boolean masks ``(*S)``.
    """

    image: Tensor
    labels: Tensor
    instances: Tensor
    classes: list[int]
    cue: Tensor
    bias_tile: Tensor
    distractors: Tensor
    seed: int = 0
    index: int = 0
    config: SceneConfig = field(default_factory=SceneConfig)

    def evidence(self, instance: int) -> dict[str, Tensor]:
        """Evidence masks for object ``instance`` (1-based).

        ``object``: its own pixels; ``context``: what decides its label beyond its pixels (the
        cue, for classes 4 and 5); ``bias``: the spurious bias tile (class 2 only);
        ``distractors``: the decoy squares.
        """
        cls = self.classes[self._check_instance(instance) - 1]
        empty = torch.zeros_like(self.cue)
        return {
            "object": self.instances == instance,
            "context": self.cue.clone() if cls in CONTEXT_CLASSES else empty,
            "bias": self.bias_tile.clone() if cls == BIASED_CLASS else empty.clone(),
            "distractors": self.distractors.clone(),
        }

    def class_evidence(self, cls: int) -> dict[str, Tensor]:
        """:meth:`evidence` united (logical or) over every object of class ``cls``."""
        parts = [self.evidence(k) for k, c in enumerate(self.classes, start=1) if c == cls]
        if not parts:
            raise SegcamError(f"the scene has no object of class {cls} (it has {self.classes}).")
        return {key: torch.stack([p[key] for p in parts]).any(0) for key in parts[0]}

    def centre_of(self, instance: int) -> tuple[int, ...]:
        """The pixel of object ``instance`` closest to its centroid."""
        instance = self._check_instance(instance)
        points = torch.nonzero(self.instances == instance).float()
        best = (points - points.mean(0)).pow(2).sum(1).argmin()
        return tuple(int(v) for v in points[best])

    def instance_at(self, *point: int) -> int:
        """The object number under ``point`` (0 for background)."""
        shape = tuple(self.instances.shape)
        if len(point) != len(shape):
            raise SegcamError(f"a point in this {len(shape)}-D scene has {len(shape)} coordinates, got {point}.")
        point = tuple(check_int(p, "point coordinate", low=0, high=n - 1) for p, n in zip(point, shape))
        return int(self.instances[point])

    def _check_instance(self, instance: int) -> int:
        instance = check_int(instance, "instance")
        if not 1 <= instance <= len(self.classes):
            raise SegcamError(f"the scene has objects 1..{len(self.classes)}, not {instance}; "
                              "pick one of them (Scene.instance_at(point) finds the one under a pixel).")
        return instance


def make_scene(index: int, seed: int = 0, config: SceneConfig = SceneConfig()) -> Scene:
    """Scene number ``index`` of the stream ``seed``; the same arguments give the same scene.

    The generator is seeded with ``seed · 1000003 + index``, which must be below ``2**64``.
    """
    index = check_int(index, "index", low=0)
    seed = check_int(seed, "seed", low=0)
    if not isinstance(config, SceneConfig):
        raise SegcamError(f"config must be a SceneConfig, got {shown(config)}.")
    key = seed * _SEED_STRIDE + index
    if key >= 2**64:
        raise SegcamError(f"seed · {_SEED_STRIDE} + index must be below 2**64, got seed={seed}, index={index}; "
                          "use a smaller seed.")
    gen = torch.Generator().manual_seed(key)
    coords = draw.grid(config.size, config.dims)
    tiles = draw.tiles(coords, config.size, config.tile)

    image = draw.background(gen, coords, tiles)
    instances, placed, taken = _place_objects(gen, coords, config)
    always = BIASED_CLASS in placed and config.bias != "none"
    bias_tile = draw.bias_tile(gen, tiles, taken, always, BIAS_ODDS[config.bias])
    if bias_tile.any():
        light, dark = (torch.tensor(c)[:, None] for c in _CHECKER_COLOURS)
        image[:, bias_tile] = torch.where(draw.checkerboard(coords)[bias_tile][None], light, dark)
    _paint_objects(gen, image, coords, instances, placed)
    cue = _cue(gen, image, coords, taken, instances, placed, config)
    distractors = draw.distractors(gen, image, coords, taken, config.cue_size, config.size)

    kept = [k for k, c in enumerate(placed, start=1) if c >= 0]  # objects dropped by _cue are -1
    numbered = torch.zeros_like(instances)
    for new, old in enumerate(kept, start=1):
        numbered[instances == old] = new
    classes = [placed[k - 1] for k in kept]
    labels = torch.zeros_like(numbered)
    for k, cls in enumerate(classes, start=1):
        labels[numbered == k] = cls
    return Scene(image.clamp(0, 1), labels, numbered, classes, cue, bias_tile, distractors, seed, index, config)


def make_batch(start: int, count: int, seed: int = 0, config: SceneConfig = SceneConfig()) -> tuple[Tensor, Tensor]:
    """Images ``(count, 3, *S)`` and labels ``(count, *S)`` of scenes ``start .. start+count-1``."""
    start = check_int(start, "start", low=0)
    count = check_int(count, "count", low=1)
    scenes = [make_scene(start + i, seed, config) for i in range(count)]
    return torch.stack([s.image for s in scenes]), torch.stack([s.labels for s in scenes])


def _pick_classes(gen: torch.Generator, config: SceneConfig) -> list[int]:
    """1..max_objects classes; one plus label per scene; both discs only with ``bias="none"``."""
    n = 1 + draw.choice(gen, config.max_objects)
    plus_label = 4 + draw.choice(gen, 2)
    while True:
        kinds = [(1, 2, 3, plus_label)[draw.choice(gen, 4)] for _ in range(n)]
        if config.bias == "none" or not (1 in kinds and BIASED_CLASS in kinds):
            return kinds


def _place_objects(gen: torch.Generator, coords: list[Tensor], config: SceneConfig) -> tuple[Tensor, list[int], Tensor]:
    """Objects at random places, 3 pixels apart; one that finds no room is left out.

    Returns the instance numbers ``(*S)``, the placed classes, and the pixels taken (objects
    grown by 3 pixels).
    """
    shape = coords[0].shape
    instances = torch.zeros(shape, dtype=torch.long)
    taken = torch.zeros(shape, dtype=torch.bool)
    placed: list[int] = []
    for cls in _pick_classes(gen, config):
        for _ in range(draw.TRIES):
            r = draw.uniform(gen, *config.radius)
            centre = [draw.uniform(gen, r + 1, config.size - r - 2) for _ in range(config.dims)]
            mask = draw.shape(cls, coords, centre, r)
            grown = draw.shape(cls, coords, centre, r + 3)
            if not (grown & taken).any():
                taken |= grown
                placed.append(cls)
                instances[mask] = len(placed)
                break
    return instances, placed, taken


def _paint_objects(
    gen: torch.Generator, image: Tensor, coords: list[Tensor], instances: Tensor, placed: list[int]
) -> None:
    """Each object gets one colour plus noise ``N(0, 0.04²)``; spotted discs are darkened by 0.12
    on their dots."""
    for k, cls in enumerate(placed, start=1):
        mask = instances == k
        colour = draw.hue_colour(gen)
        values = colour[:, None] + 0.04 * torch.randn((3, int(mask.sum())), generator=gen)
        if cls == BIASED_CLASS:
            values = values - 0.12 * draw.dots(coords)[mask].float()[None]
        image[:, mask] = values


def _cue(
    gen: torch.Generator, image: Tensor, coords: list[Tensor], taken: Tensor, instances: Tensor,
    placed: list[int], config: SceneConfig,
) -> Tensor:
    """Paint the cue square of the scene's pluses and mark it taken.  Without room for it the
    pluses' labels would be undecidable, so they are removed (background, class -1 in ``placed``)."""
    plus = [c for c in placed if c in CONTEXT_CLASSES]
    if not plus:
        return torch.zeros_like(taken)
    cue = draw.free_box(gen, coords, taken, config.cue_size, config.size)
    if cue is not None:
        taken |= cue
        image[:, cue] = torch.tensor(CUE_COLOURS[plus[0]])[:, None]
        return cue
    for k, cls in enumerate(placed, start=1):
        if cls in CONTEXT_CLASSES:
            instances[instances == k] = 0
            placed[k - 1] = -1
    return torch.zeros_like(taken)
