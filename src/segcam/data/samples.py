"""Scenes on disk: ``.npz`` files without pickles, and the samples bundled with segcam."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..checks import check_int, check_path, shown
from ..errors import SegcamError
from .files import save_image
from .scenes import BIASED_CLASS, CONTEXT_CLASSES, Scene, SceneConfig, make_scene

SAMPLES = Path(__file__).parent / "samples"
SAMPLE_SEED = 3
MAX_SEARCH = 10_000  # scenes :func:`pick_samples` looks through before giving up

_MASKS = ("image", "labels", "instances", "cue", "bias_tile", "distractors")
_WANTED: tuple[tuple[str, Callable[[Scene], bool]], ...] = (
    ("a context-dependent plus beside another object",
     lambda s: any(c in CONTEXT_CLASSES for c in s.classes) and len(s.classes) >= 2),
    ("a spotted (biased) disc", lambda s: BIASED_CLASS in s.classes),
    ("three or more classes", lambda s: len(set(s.classes)) >= 3),
)


def save_scene(scene: Scene, path: str | Path) -> None:
    """Write a scene (image, labels, instances, evidence, origin and config) to a compressed
    ``.npz``; everything is stored as plain arrays, the config as a JSON string."""
    if not isinstance(scene, Scene):
        raise SegcamError(f"scene must be a Scene (from segcam.data.make_scene), got {shown(scene)}.")
    path = check_path(path, "path")
    arrays = {name: getattr(scene, name).detach().cpu().numpy() for name in _MASKS}
    np.savez_compressed(
        path, **arrays, classes=np.asarray(scene.classes, dtype=np.int64),
        origin=np.asarray([scene.seed, scene.index], dtype=np.int64),
        config=np.asarray(json.dumps(dataclasses.asdict(scene.config))),
    )


def load_scene(path: str | Path, config: SceneConfig | None = None) -> Scene:
    """Read a scene written by :func:`save_scene` (no pickles).

    The scene's config is the one the file records; files without one (written by older
    versions, like the bundled samples) get ``config``, by default ``SceneConfig()``.  A
    ``config`` that differs from the recorded one is an error.
    """
    path = check_path(path, "path")
    if config is not None and not isinstance(config, SceneConfig):
        raise SegcamError(f"config must be a SceneConfig or None, got {shown(config)}.")
    if not path.is_file():
        raise SegcamError(f"no scene file at {str(path)!r}; write one with segcam.data.save_scene.")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise SegcamError(f"cannot read {str(path)!r} as a scene file ({error}); write scenes with "
                          "segcam.data.save_scene.") from error
    missing = [k for k in (*_MASKS, "classes", "origin") if k not in arrays]
    if missing:
        raise SegcamError(f"{str(path)!r} is not a scene file (it lacks {', '.join(missing)}); "
                          "write scenes with segcam.data.save_scene.")
    recorded = _recorded_config(arrays, path)
    if recorded is not None and config is not None and config != recorded:
        raise SegcamError(f"{str(path)!r} records {recorded}, not the config given ({config}); "
                          "leave config out to use the recorded one.")
    t = {k: torch.from_numpy(arrays[k]) for k in _MASKS}
    seed, index = (int(v) for v in arrays["origin"])
    return Scene(t["image"], t["labels"], t["instances"], arrays["classes"].tolist(), t["cue"], t["bias_tile"],
                 t["distractors"], seed, index, recorded or config or SceneConfig())


def _recorded_config(arrays: dict[str, np.ndarray], path: Path) -> SceneConfig | None:
    if "config" not in arrays:
        return None
    try:
        return SceneConfig(**json.loads(str(arrays["config"])))
    except (ValueError, TypeError) as error:
        raise SegcamError(f"{str(path)!r} records a broken scene config ({error}); write it again with "
                          "segcam.data.save_scene.") from error


def sample_scenes() -> list[Scene]:
    """The scenes bundled with segcam: one with a context-dependent plus, one with a spotted
    (biased) disc, one with several classes (see :func:`pick_samples`)."""
    return [load_scene(p) for p in sorted(SAMPLES.glob("scene-*.npz"))]


def pick_samples(seed: int = SAMPLE_SEED, config: SceneConfig = SceneConfig()) -> list[Scene]:
    """The first scenes of stream ``seed`` that show, in turn, each thing the demo explains: a
    context-dependent plus beside another object, a spotted disc, three or more classes."""
    seed = check_int(seed, "seed", low=0)
    picked: list[Scene] = []
    for index in range(MAX_SEARCH):
        scene = make_scene(index, seed, config)
        if _WANTED[len(picked)][1](scene):
            picked.append(scene)
            if len(picked) == len(_WANTED):
                return picked
    raise SegcamError(f"no scene among the first {MAX_SEARCH} of stream {seed} shows "
                      f"{_WANTED[len(picked)][0]} with {config}; allow more objects or another bias.")


def bundle_samples(directory: str | Path = SAMPLES) -> list[Path]:
    """Write :func:`pick_samples` as ``scene-K.npz`` and ``scene-K.png`` into ``directory``;
    returns the ``.npz`` paths."""
    directory = check_path(directory, "directory")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, scene in enumerate(pick_samples(), start=1):
        save_scene(scene, directory / f"scene-{k}.npz")
        save_image(directory / f"scene-{k}.png", scene.image)
        paths.append(directory / f"scene-{k}.npz")
    return paths
