"""Reading a batch's files ahead of the model, in worker processes, in order, with bounded memory.

:func:`decoded` yields one :class:`Decoded` per item, in the items' order, while up to
``ahead`` items are being read by ``workers`` processes (``0``: read in this process, for
debugging and for the plain-loop baseline).  Memory stays bounded whatever the number of items:
at most ``ahead`` decoded items exist at once.  A file that cannot be read becomes a
``Decoded`` with its ``error`` (the message of the :class:`~segcam.errors.SegcamError`), never an
exception: the run reports it and goes on.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...data import DEFAULT_MAX_PIXELS, Item, load_image, load_labels, load_nifti_affine
from ...errors import SegcamError


@dataclass
class Decoded:
    """An item read: ``image (C, *S)``, its ground truth ``(*S)`` if the item has a mask, the
    NIfTI ``affine`` if the image is a NIfTI volume, or the ``error`` that stopped it."""

    item: Item
    image: Tensor | None = None
    truth: Tensor | None = None
    affine: np.ndarray | None = None
    error: str | None = None


def is_nifti(item: Item) -> bool:
    return item.image.name.lower().endswith((".nii", ".nii.gz"))


def read(item: Item, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read ``item``'s files (in whatever process calls it)."""
    try:
        image = load_image(item.image, max_pixels=max_pixels)
        truth = load_labels(item.mask, max_pixels=max_pixels) if item.mask is not None else None
        if truth is not None and tuple(truth.shape) != tuple(image.shape[1:]):
            raise SegcamError(f"the mask {item.mask.name} is {tuple(truth.shape)} but the image is "
                              f"{tuple(image.shape[1:])}; give a mask of the image's size.")
        affine = load_nifti_affine(item.image) if is_nifti(item) else None
    except SegcamError as e:
        return Decoded(item, error=str(e))
    return Decoded(item, image, truth, affine)


def _read_in_worker(item: Item, max_pixels: int | None) -> Decoded:
    torch.set_num_threads(1)  # the workers decode; the model's process keeps the cores' threads
    return read(item, max_pixels)


def decoded(items: Iterable[Item], *, workers: int = 2, ahead: int = 8,
            max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[Decoded]:
    """``items`` read by ``workers`` processes, yielded in order, at most ``ahead`` in flight."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise SegcamError(f"workers must be an integer ≥ 0 (0: read in this process), got {workers!r}.")
    if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 1:
        raise SegcamError(f"ahead must be a positive integer (items read in advance), got {ahead!r}.")
    if workers == 0:
        for item in items:
            yield read(item, max_pixels)
        return
    context = multiprocessing.get_context("spawn")  # no forked copy of the model's threads and locks
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[Decoded]] = deque()
        source = iter(items)
        for item in source:
            pending.append(pool.submit(_read_in_worker, item, max_pixels))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
