"""Data: synthetic scenes whose evidence is known, the bundled samples, image and volume files.

``scenes``: :func:`make_scene` / :func:`make_batch` generate 2-D and 3-D scenes with known
evidence (see :mod:`segcam.data.scenes` for the classes and the bias rules).  ``samples``:
scenes on disk and the three bundled with segcam.  ``files``: :func:`load_image`,
:func:`load_mask` and :func:`save_image`, bounded in memory for files from anyone, with NIfTI
volumes (:mod:`segcam.data.nifti`: :func:`load_nifti_affine`, :func:`save_nifti`).
``manifest``: :func:`iter_items` reads a folder, a glob or a CSV manifest as batch items.

This package never imports the engine (``segcam.core``, ``methods``, ``explainer`` …) nor
matplotlib.
"""

from __future__ import annotations

from .files import (
    DEFAULT_MAX_PIXELS,
    load_image,
    load_labels,
    load_mask,
    load_nifti_affine,
    save_image,
    save_nifti,
)
from .manifest import Item, count_items, iter_items
from .samples import SAMPLE_SEED, SAMPLES, bundle_samples, load_scene, pick_samples, sample_scenes, save_scene
from .scenes import (
    BIASED_CLASS,
    CLASS_NAMES,
    CONTEXT_CLASSES,
    CUE_COLOURS,
    Scene,
    SceneConfig,
    make_batch,
    make_scene,
)

__all__ = [
    "BIASED_CLASS",
    "CLASS_NAMES",
    "CONTEXT_CLASSES",
    "CUE_COLOURS",
    "DEFAULT_MAX_PIXELS",
    "SAMPLES",
    "SAMPLE_SEED",
    "Item",
    "Scene",
    "SceneConfig",
    "bundle_samples",
    "count_items",
    "iter_items",
    "load_image",
    "load_labels",
    "load_mask",
    "load_nifti_affine",
    "load_scene",
    "make_batch",
    "make_scene",
    "pick_samples",
    "sample_scenes",
    "save_image",
    "save_nifti",
    "save_scene",
]
