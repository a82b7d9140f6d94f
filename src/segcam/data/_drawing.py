"""Drawing for the scene generator: random draws, coordinate grids, textures, shapes, and the
stages that know nothing of classes (background, bias tile, free boxes, distractors).

Every random number comes from the one :class:`torch.Generator` a scene is made with, drawn in
a fixed order, so a scene is a pure function of its seed and index.  Changing the order or the
number of draws here changes every scene (and the bundled samples and the default model, which
were made from them).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TRIES = 100  # placements tried per object or box before giving up on it


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    """One draw from ``U(low, high)``: ``low + (high - low) · u`` with ``u = torch.rand()``."""
    return low + (high - low) * float(torch.rand((), generator=gen))


def choice(gen: torch.Generator, n: int) -> int:
    """One draw from ``{0, …, n - 1}``."""
    return int(torch.randint(n, (), generator=gen))


def grid(size: int, dims: int) -> list[Tensor]:
    """Pixel coordinates of a ``size^dims`` scene, one float tensor per axis (``ij`` order)."""
    axes = [torch.arange(size, dtype=torch.float32)] * dims
    return list(torch.meshgrid(*axes, indexing="ij"))


def box(coords: list[Tensor], corner: list[int], size: int) -> Tensor:
    """The axis-aligned cube ``corner ≤ x < corner + size`` as a boolean mask."""
    inside = torch.ones_like(coords[0], dtype=torch.bool)
    for c, low in zip(coords, corner):
        inside &= (c >= low) & (c < low + size)
    return inside


def tiles(coords: list[Tensor], size: int, tile: int) -> list[Tensor]:
    """The ``(size / tile)^dims`` tiles of the scene as masks; tile ``t`` has corner
    ``tile · ⌊t / n^a⌋ mod n`` on axis ``a`` (``n = size / tile``)."""
    n = size // tile
    dims = len(coords)
    corners = ([(t // n**a) % n * tile for a in range(dims)] for t in range(n**dims))
    return [box(coords, corner, tile) for corner in corners]


def tile_texture(kind: int, coords: list[Tensor], period: float) -> Tensor:
    """A zero-mean pattern in [-1, 1]: ``sin(2π x_kind / period)`` (stripes across axis ``kind``)
    for ``kind < dims``, else the slow diagonal ramp ``sin(2π Σx / (3 · period))``."""
    if kind < len(coords):
        return torch.sin(2 * math.pi * coords[kind] / period)
    return torch.sin(2 * math.pi * sum(coords) / (3 * period))


def checkerboard(coords: list[Tensor]) -> Tensor:
    """Squares of 2 pixels: ``(Σ ⌊x / 2⌋) mod 2`` as booleans."""
    return (sum(torch.div(c, 2, rounding_mode="floor") for c in coords) % 2).bool()


def dots(coords: list[Tensor]) -> Tensor:
    """The regular spot pattern of spotted discs: pixels with ``x mod 4 = 1`` on every axis."""
    spots = torch.ones_like(coords[0], dtype=torch.bool)
    for c in coords:
        spots &= (c % 4) == 1
    return spots


def shape(cls: int, coords: list[Tensor], centre: list[float], radius: float) -> Tensor:
    """The mask of an object of class ``cls`` around ``centre``.

    Classes 1 and 2: the ball ``|x - m| ≤ r``; class 3: the cube ``max|x - m| ≤ 0.85 r``;
    classes 4 and 5: a plus, one bar per axis of half-length ``r`` and half-width ``r / 3``.
    """
    d = [c - m for c, m in zip(coords, centre)]
    if cls in (1, 2):
        return sum(x * x for x in d) <= radius * radius
    if cls == 3:
        return torch.stack([x.abs() for x in d]).amax(0) <= 0.85 * radius
    bars = []
    for axis in range(len(d)):
        bar = d[axis].abs() <= radius
        for other in range(len(d)):
            if other != axis:
                bar &= d[other].abs() <= radius / 3
        bars.append(bar)
    return torch.stack(bars).any(0)


def hue_colour(gen: torch.Generator) -> Tensor:
    """A random RGB colour from HSV with ``s ∈ [0.35, 0.6]``, ``v ∈ [0.65, 0.9]``: never as pure
    as the cue colours.  ``rgb_k = v - v·s·clamp(min(q_k, 4 - q_k), 0, 1)``, ``q_k = (k + 6h) mod 6``
    for ``k = 5, 3, 1``."""
    h, s, v = uniform(gen, 0, 1), uniform(gen, 0.35, 0.6), uniform(gen, 0.65, 0.9)
    q = (torch.tensor([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * torch.clamp(torch.minimum(q, 4 - q), 0, 1)


def background(gen: torch.Generator, coords: list[Tensor], tiles: list[Tensor]) -> Tensor:
    """Tiles of ``base + tint + contrast · texture`` in muted, nearly grey colours: ``(3, *S)``."""
    image = torch.empty((3, *coords[0].shape))
    for inside in tiles:
        base = uniform(gen, 0.25, 0.55)
        tint = torch.tensor([uniform(gen, -0.05, 0.05) for _ in range(3)])
        kind = choice(gen, len(coords) + 1)
        pattern = tile_texture(kind, coords, uniform(gen, 4, 8))
        contrast = uniform(gen, 0.06, 0.15)
        image[:, inside] = (base + tint)[:, None] + contrast * pattern[inside][None]
    return image


def bias_tile(gen: torch.Generator, tiles: list[Tensor], taken: Tensor, always: bool, odds: float) -> Tensor:
    """Where the bias tile goes: the free part of the tile with the fewest taken pixels (random
    tie-break), shown if ``always``, else with probability ``odds``; empty when not shown."""
    if not (always or uniform(gen, 0, 1) < odds):
        return torch.zeros_like(taken)
    ranked = [(int((inside & taken).sum()), uniform(gen, 0, 1), k) for k, inside in enumerate(tiles)]
    return tiles[min(ranked)[2]] & ~taken


def free_box(gen: torch.Generator, coords: list[Tensor], taken: Tensor, size: int, scene_size: int) -> Tensor | None:
    """A random cube of ``size`` pixels at least 2 pixels away from every taken pixel, or None."""
    for _ in range(TRIES):
        corner = [choice(gen, scene_size - size) for _ in coords]
        candidate = box(coords, corner, size)
        if not (box(coords, [c - 2 for c in corner], size + 4) & taken).any():
            return candidate
    return None


def distractors(
    gen: torch.Generator, image: Tensor, coords: list[Tensor], taken: Tensor, size: int, scene_size: int
) -> Tensor:
    """With probability 1/2, paint a grey-green decoy square of ``size`` pixels; its mask."""
    if uniform(gen, 0, 1) >= 0.5:
        return torch.zeros_like(taken)
    decoy = free_box(gen, coords, taken, size, scene_size)
    if decoy is None:
        return torch.zeros_like(taken)
    grey = uniform(gen, 0.45, 0.65)
    image[:, decoy] = torch.tensor([grey - 0.08, grey + 0.08, grey - 0.04])[:, None]
    return decoy
