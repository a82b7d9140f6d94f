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
label (classes 4/5), the bias tile (class 2) and the distractors.  Generation is a pure
function of ``(seed, index)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

CLASS_NAMES = ("background", "disc", "spotted disc", "square", "plus (red cue)", "plus (blue cue)")
BIASED_CLASS = 2
CONTEXT_CLASSES = (4, 5)
CUE_COLOURS = {4: (0.95, 0.1, 0.1), 5: (0.1, 0.25, 0.95)}
Bias = Literal["strong", "weak", "none"]


@dataclass(frozen=True)
class SceneConfig:
    """Size and rules of the generated scenes."""

    size: int = 64
    dims: int = 2
    tile: int = 16
    bias: Bias = "strong"
    max_objects: int = 3
    radius: tuple[int, int] = (6, 9)
    cue_size: int = 8

    def __post_init__(self) -> None:
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims}.")
        if self.size % self.tile:
            raise ValueError(f"size {self.size} must be a multiple of tile {self.tile}.")
        if self.bias not in ("strong", "weak", "none"):
            raise ValueError(f"bias must be 'strong', 'weak' or 'none', got {self.bias!r}.")


@dataclass
class Scene:
    """One generated scene and its ground-truth evidence.

    ``instances`` numbers the objects 1..N (0 = background); ``classes[k - 1]`` is object k's
    label.  ``cue``, ``bias_tile`` and ``distractors`` are boolean masks of the scene.
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
        if not 1 <= instance <= len(self.classes):
            raise ValueError(f"the scene has objects 1..{len(self.classes)}, not {instance}.")
        cls = self.classes[instance - 1]
        empty = torch.zeros_like(self.cue)
        return {
            "object": self.instances == instance,
            "context": self.cue.clone() if cls in CONTEXT_CLASSES else empty,
            "bias": self.bias_tile.clone() if cls == BIASED_CLASS else empty.clone(),
            "distractors": self.distractors.clone(),
        }

    def class_evidence(self, cls: int) -> dict[str, Tensor]:
        """:meth:`evidence` united over every object of class ``cls``."""
        parts = [self.evidence(k) for k, c in enumerate(self.classes, start=1) if c == cls]
        if not parts:
            raise ValueError(f"the scene has no object of class {cls} (it has {self.classes}).")
        return {key: torch.stack([p[key] for p in parts]).any(0) for key in parts[0]}

    def centre_of(self, instance: int) -> tuple[int, ...]:
        """The pixel of object ``instance`` closest to its centroid."""
        points = torch.nonzero(self.instances == instance).float()
        best = (points - points.mean(0)).pow(2).sum(1).argmin()
        return tuple(int(v) for v in points[best])

    def instance_at(self, *point: int) -> int:
        """The object number under ``point`` (0 for background)."""
        return int(self.instances[point])


def _grid(config: SceneConfig) -> list[Tensor]:
    axes = [torch.arange(config.size, dtype=torch.float32)] * config.dims
    return list(torch.meshgrid(*axes, indexing="ij"))


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _choice(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=gen))


def _tile_texture(kind: int, coords: list[Tensor], period: float) -> Tensor:
    """A zero-mean pattern in [-1, 1]: stripes along one axis, or a smooth diagonal ramp."""
    if kind < len(coords):
        return torch.sin(2 * math.pi * coords[kind] / period)
    return torch.sin(2 * math.pi * sum(coords) / (3 * period))


def _checkerboard(coords: list[Tensor]) -> Tensor:
    return (sum(torch.div(c, 2, rounding_mode="floor") for c in coords) % 2).bool()


def _shape(cls: int, coords: list[Tensor], centre: list[float], radius: float) -> Tensor:
    d = [c - m for c, m in zip(coords, centre)]
    if cls in (1, 2):
        return sum(x * x for x in d) <= radius * radius
    if cls == 3:
        return torch.stack([x.abs() for x in d]).amax(0) <= 0.85 * radius
    arms = []  # plus: one bar per axis
    for axis in range(len(d)):
        bar = d[axis].abs() <= radius
        for other in range(len(d)):
            if other != axis:
                bar &= d[other].abs() <= radius / 3
        arms.append(bar)
    return torch.stack(arms).any(0)


def _box(coords: list[Tensor], corner: list[int], size: int) -> Tensor:
    inside = torch.ones_like(coords[0], dtype=torch.bool)
    for c, lo in zip(coords, corner):
        inside &= (c >= lo) & (c < lo + size)
    return inside


def _hue_colour(gen: torch.Generator) -> Tensor:
    """A moderately saturated colour (never as pure as the cues)."""
    h, s, v = _uniform(gen, 0, 1), _uniform(gen, 0.35, 0.6), _uniform(gen, 0.65, 0.9)
    k = torch.tensor([5.0, 3.0, 1.0])
    rgb = v - v * s * torch.clamp(torch.minimum((k + h * 6) % 6, 4 - (k + h * 6) % 6), 0, 1)
    return rgb


def _pick_classes(gen: torch.Generator, config: SceneConfig) -> list[int]:
    n = 1 + _choice(gen, config.max_objects)
    plus_label = 4 + _choice(gen, 2)
    while True:
        kinds = [(1, 2, 3, plus_label)[_choice(gen, 4)] for _ in range(n)]
        if config.bias == "none" or not (1 in kinds and 2 in kinds):
            return kinds


def make_scene(index: int, seed: int = 0, config: SceneConfig = SceneConfig()) -> Scene:
    """Scene number ``index`` of the stream ``seed``; the same arguments give the same scene."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    coords = _grid(config)
    spatial = coords[0].shape
    n_tiles = config.size // config.tile

    # background: tiles with stripes or ramps in muted colours
    image = torch.empty((3, *spatial))
    for t in range(n_tiles**config.dims):
        corner = [(t // n_tiles**a) % n_tiles * config.tile for a in range(config.dims)]
        inside = _box(coords, corner, config.tile)
        base = _uniform(gen, 0.25, 0.55)
        tint = torch.tensor([_uniform(gen, -0.05, 0.05) for _ in range(3)])
        pattern = _tile_texture(_choice(gen, config.dims + 1), coords, _uniform(gen, 4, 8))
        contrast = _uniform(gen, 0.06, 0.15)
        image[:, inside] = (base + tint)[:, None] + contrast * pattern[inside][None]

    classes = _pick_classes(gen, config)
    instances = torch.zeros(spatial, dtype=torch.long)
    labels = torch.zeros(spatial, dtype=torch.long)
    taken = torch.zeros(spatial, dtype=torch.bool)
    placed: list[int] = []
    for cls in classes:
        for _ in range(100):
            r = _uniform(gen, *config.radius)
            centre = [_uniform(gen, r + 1, config.size - r - 2) for _ in range(config.dims)]
            shape = _shape(cls, coords, centre, r)
            grown = _shape(cls, coords, centre, r + 3)
            if not (grown & taken).any():
                break
        else:
            continue  # no room left: fewer objects
        taken |= grown
        placed.append(cls)
        instances[shape] = len(placed)
        labels[shape] = cls

    def free_box(size: int) -> Tensor | None:
        for _ in range(100):
            corner = [_choice(gen, config.size - size) for _ in range(config.dims)]
            box = _box(coords, corner, size)
            grown = _box(coords, [c - 2 for c in corner], size + 4)
            if not (grown & taken).any():
                return box
        return None

    # the bias tile: the tile with the fewest object pixels gets the checkerboard
    biased = BIASED_CLASS in placed
    odds = {"strong": 0.0, "weak": 0.3, "none": 0.5}[config.bias]
    show_bias = biased if config.bias != "none" else False
    show_bias = show_bias or _uniform(gen, 0, 1) < odds
    bias_tile = torch.zeros(spatial, dtype=torch.bool)
    if show_bias:
        tiles = []
        for t in range(n_tiles**config.dims):
            corner = [(t // n_tiles**a) % n_tiles * config.tile for a in range(config.dims)]
            box = _box(coords, corner, config.tile)
            tiles.append((int((box & taken).sum()), _uniform(gen, 0, 1), box))
        bias_tile = min(tiles, key=lambda x: x[:2])[2] & ~taken
        check = _checkerboard(coords)[bias_tile]
        image[:, bias_tile] = torch.where(check[None], torch.tensor([0.95, 0.85, 0.1])[:, None],
                                          torch.tensor([0.1, 0.08, 0.05])[:, None])

    # objects: a colour each, mild noise; spotted discs get a faint regular dot pattern
    for k, cls in enumerate(placed, start=1):
        mask = instances == k
        colour = _hue_colour(gen)
        noise = 0.04 * torch.randn((3, int(mask.sum())), generator=gen)
        values = colour[:, None] + noise
        if cls == BIASED_CLASS:
            dots = torch.ones_like(coords[0], dtype=torch.bool)
            for c in coords:
                dots &= (c % 4) == 1
            values = values - 0.12 * dots[mask].float()[None]
        image[:, mask] = values

    cue = torch.zeros(spatial, dtype=torch.bool)
    plus = [c for c in placed if c in CONTEXT_CLASSES]
    if plus:
        box = free_box(config.cue_size)
        if box is not None:
            cue = box
            taken |= box
            image[:, box] = torch.tensor(CUE_COLOURS[plus[0]])[:, None]
        else:  # no room for the cue: the label would be undecidable, so drop the pluses
            for k, cls in enumerate(placed, start=1):
                if cls in CONTEXT_CLASSES:
                    labels[instances == k] = 0
                    instances[instances == k] = 0
            placed = [c if c not in CONTEXT_CLASSES else -1 for c in placed]
    distractors = torch.zeros(spatial, dtype=torch.bool)
    if _uniform(gen, 0, 1) < 0.5:
        box = free_box(config.cue_size)
        if box is not None:
            distractors = box
            grey = _uniform(gen, 0.45, 0.65)
            image[:, box] = torch.tensor([grey - 0.08, grey + 0.08, grey - 0.04])[:, None]

    instances, placed = _renumber(instances, placed)
    return Scene(image.clamp(0, 1), labels, instances, placed, cue, bias_tile, distractors,
                 seed, index, config)


def _renumber(instances: Tensor, classes: list[int]) -> tuple[Tensor, list[int]]:
    """Drop removed objects (class -1) and number the rest 1..N again."""
    keep = [k for k, c in enumerate(classes, start=1) if c >= 0]
    out = torch.zeros_like(instances)
    for new, old in enumerate(keep, start=1):
        out[instances == old] = new
    return out, [classes[k - 1] for k in keep]


def make_batch(
    start: int, count: int, seed: int = 0, config: SceneConfig = SceneConfig()
) -> tuple[Tensor, Tensor]:
    """Images ``(count, 3, *S)`` and labels ``(count, *S)`` of scenes ``start .. start+count-1``."""
    scenes = [make_scene(start + i, seed, config) for i in range(count)]
    return torch.stack([s.image for s in scenes]), torch.stack([s.labels for s in scenes])


SAMPLES = Path(__file__).parent / "samples"
SAMPLE_SEED = 3


def save_scene(scene: Scene, path: str | Path) -> None:
    """Write a scene (image, labels, instances and evidence) to a compressed ``.npz``."""
    np.savez_compressed(
        path, image=scene.image.numpy(), labels=scene.labels.numpy(),
        instances=scene.instances.numpy(), classes=np.asarray(scene.classes, dtype=np.int64),
        cue=scene.cue.numpy(), bias_tile=scene.bias_tile.numpy(),
        distractors=scene.distractors.numpy(), origin=np.asarray([scene.seed, scene.index]),
    )


def load_scene(path: str | Path, config: SceneConfig = SceneConfig()) -> Scene:
    """Read a scene written by :func:`save_scene` (no pickles)."""
    with np.load(path, allow_pickle=False) as f:
        t = {k: torch.from_numpy(f[k]) for k in f.files}
    seed, index = (int(v) for v in t["origin"])
    return Scene(t["image"], t["labels"], t["instances"], t["classes"].tolist(), t["cue"],
                 t["bias_tile"], t["distractors"], seed, index, config)


def sample_scenes() -> list[Scene]:
    """The scenes bundled with segcam: one with a context-dependent plus, one with a spotted
    (biased) disc, one with several classes (see :func:`pick_samples`)."""
    return [load_scene(p) for p in sorted(SAMPLES.glob("scene-*.npz"))]


def pick_samples(seed: int = SAMPLE_SEED, config: SceneConfig = SceneConfig()) -> list[Scene]:
    """The first scenes of stream ``seed`` that show each thing the demo explains."""
    wanted = [
        lambda s: any(c in CONTEXT_CLASSES for c in s.classes) and len(s.classes) >= 2,
        lambda s: BIASED_CLASS in s.classes,
        lambda s: len(set(s.classes)) >= 3,
    ]
    picked: list[Scene] = []
    index = 0
    while len(picked) < len(wanted):
        scene = make_scene(index, seed, config)
        if wanted[len(picked)](scene):
            picked.append(scene)
        index += 1
    return picked


def bundle_samples(directory: str | Path = SAMPLES) -> list[Path]:
    """Write :func:`pick_samples` as ``scene-K.npz`` and ``scene-K.png`` into ``directory``."""
    from .io import save_image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, scene in enumerate(pick_samples(), start=1):
        save_scene(scene, directory / f"scene-{k}.npz")
        save_image(directory / f"scene-{k}.png", scene.image)
        paths.append(directory / f"scene-{k}.npz")
    return paths


def evidence_score(heatmap: Tensor, evidence: dict[str, Tensor]) -> dict[str, float]:
    """How a heatmap's mass falls on the true evidence, the bias tile and the distractors.

    For a non-negative heatmap ``h`` and an evidence mask ``E``, the share is
    ``sum(h · E) / sum(h)``; a uniform map would get ``|E| / N``.  ``true`` is the object plus
    its context cue; ``lift_*`` is share ÷ uniform share (1 = no better than uniform).  An all-
    zero heatmap gets NaN shares (there is no mass to place).
    """
    h = torch.as_tensor(heatmap, dtype=torch.float64).clamp_min(0)
    total = float(h.sum())
    n = h.numel()
    masks = {
        "true": evidence["object"] | evidence["context"],
        "object": evidence["object"],
        "context": evidence["context"],
        "bias": evidence["bias"],
        "distractors": evidence["distractors"],
    }
    out: dict[str, float] = {}
    for name, m in masks.items():
        m = torch.as_tensor(m, dtype=torch.bool)
        share = float((h * m).sum()) / total if total > 0 else float("nan")
        uniform = float(m.sum()) / n
        out[f"share_{name}"] = share
        out[f"uniform_{name}"] = uniform
        out[f"lift_{name}"] = share / uniform if uniform > 0 else float("nan")
    return out
