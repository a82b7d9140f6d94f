"""Reading a batch's files ahead of the model, in worker processes, in order, with bounded memory.

:func:`decoded` yields one :class:`Decoded` per item, in the items' order, while up to
``ahead`` items are being read by ``workers`` processes (``0``: read in this process, for
debugging and for the plain-loop baseline; ``None``, the default, decides from the second item
(the first pays one-time costs): if reading it here took more than :data:`AUTO_READ_S`,
:data:`AUTO_WORKERS` processes read the
rest, else this process does — a worker costs seconds to start, as it imports torch, which small
files never win back).  Memory stays bounded whatever the number of items:
at most ``ahead`` decoded items exist at once.  A file that cannot be read becomes a
``Decoded`` with its ``error`` (the message of the :class:`~segcam.errors.SegcamError`), never an
exception: the run reports it and goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from torch import Tensor

from ...data import DEFAULT_MAX_PIXELS, Item, load_image, load_labels, load_nifti_affine, load_scene
from ...errors import SegcamError

AUTO_READ_S = 0.02  # reading the second file took longer: worker processes read the rest
AUTO_WORKERS = 2


@dataclass
class Decoded:
    """An item read: ``image (C, *S)``, its ground truth ``(*S)`` if the item has a mask (or is a
    scene), the NIfTI ``affine`` if the image is a NIfTI volume, the known ``evidence`` masks of
    each class of a scene (``{class: {"object", "context", "bias", "distractors": (*S) bool}}``),
    or the ``error`` that stopped it."""

    item: Item
    image: Tensor | None = None
    truth: Tensor | None = None
    affine: np.ndarray | None = None
    error: str | None = None
    evidence: dict[int, dict[str, Tensor]] | None = None


def is_nifti(item: Item) -> bool:
    return item.image.name.lower().endswith((".nii", ".nii.gz"))


def read(item: Item, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read ``item``'s files (in whatever process calls it)."""
    try:
        if is_scene(item):
            return _read_scene(item, max_pixels)
        image = load_image(item.image, max_pixels=max_pixels)
        truth = load_labels(item.mask, max_pixels=max_pixels) if item.mask is not None else None
        if truth is not None and tuple(truth.shape) != tuple(image.shape[1:]):
            raise SegcamError(f"the mask {item.mask.name} is {tuple(truth.shape)} but the image is "
                              f"{tuple(image.shape[1:])}; give a mask of the image's size.")
        affine = load_nifti_affine(item.image) if is_nifti(item) else None
    except SegcamError as e:
        return Decoded(item, error=str(e))
    except Exception as e:  # noqa: BLE001 - a reader's own failure (a decoder bug …) is this item's error too
        return Decoded(item, error=f"cannot read {item.image.name}: {type(e).__name__}: {e}")
    return Decoded(item, image, truth, affine)


def is_scene(item: Item) -> bool:
    return item.image.name.lower().endswith(".npz")


def _read_scene(item: Item, max_pixels: int | None) -> Decoded:
    """A synthetic scene (:func:`segcam.data.save_scene`): its image, its labels as the ground
    truth (a manifest's mask replaces them) and the evidence each of its classes really has."""
    scene = load_scene(item.image)
    if max_pixels is not None and scene.image[0].numel() > max_pixels:
        raise SegcamError(f"the scene {item.image.name} has {scene.image[0].numel()} pixels, over max_pixels="
                          f"{max_pixels}; raise --max-pixels.")
    truth = load_labels(item.mask, max_pixels=max_pixels) if item.mask is not None else scene.labels
    if tuple(truth.shape) != tuple(scene.image.shape[1:]):
        raise SegcamError(f"the mask {item.mask.name} is {tuple(truth.shape)} but the scene is "
                          f"{tuple(scene.image.shape[1:])}; give a mask of the scene's size.")
    evidence = {int(c): scene.class_evidence(int(c)) for c in scene.classes}
    return Decoded(item, scene.image, truth, None, None, evidence)


def _read_in_worker(item: Item, max_pixels: int | None) -> Decoded:
    torch.set_num_threads(1)  # the workers decode; the model's process keeps the cores' threads
    return read(item, max_pixels)


def decoded(items: Iterable[Item], *, workers: int | None = None, ahead: int = 8,
            max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Decoder:
    """``items`` read by ``workers`` processes (module docstring), yielded in order, at most
    ``ahead`` in flight; given workers start, and the first ``ahead`` items are sent to them,
    now (so that they start while the caller loads its model)."""
    check_workers(workers)
    if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 1:
        raise SegcamError(f"ahead must be a positive integer (items read in advance), got {ahead!r}.")
    return Decoder(iter(items), workers, ahead, max_pixels)


def check_workers(workers: object) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise SegcamError(f"workers must be an integer ≥ 0 (0: read in this process) or None (decide from the "
                          f"files), got {workers!r}.")


class Decoder:
    """The iterator :func:`decoded` returns; :meth:`close` (or the end, or ``with``) stops its
    workers.  One thread iterates and closes it (it is not shared between threads)."""

    def __init__(self, source: Iterator[Item], workers: int | None, ahead: int, max_pixels: int | None) -> None:
        self._source, self._ahead, self._max_pixels = source, ahead, max_pixels
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future[Decoded]] = deque()
        self._undecided = workers is None
        self._timed: list[float] = []
        self.workers = 0 if workers is None else workers  # how many read now
        if workers:
            self._start(workers)

    def _start(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers,  # spawned: no fork of the model's threads
                                         mp_context=multiprocessing.get_context("spawn"))
        for item in islice(self._source, self._ahead):
            self._pending.append(self._pool.submit(_read_in_worker, item, self._max_pixels))

    def __iter__(self) -> Decoder:
        return self

    def __next__(self) -> Decoded:
        if self._undecided:  # the first read pays one-time costs (imports, codecs): the second one decides
            self._undecided = len(self._timed) < 1
            start = time.perf_counter()
            got = read(next(self._source), self._max_pixels)
            self._timed.append(time.perf_counter() - start)
            if not self._undecided and self._timed[-1] > AUTO_READ_S:
                self._start(min(AUTO_WORKERS, os.cpu_count() or 1))
            return got
        if self._pool is None:
            return read(next(self._source), self._max_pixels)
        if not self._pending:
            self.close()
            raise StopIteration
        item = next(self._source, None)
        if item is not None:
            self._pending.append(self._pool.submit(_read_in_worker, item, self._max_pixels))
        try:
            return self._pending.popleft().result()
        except BrokenProcessPool:
            self.close()
            raise SegcamError("a process reading the files died (killed, or out of memory); re-run the same "
                              "command to resume, with --workers 0 to read in the main process.") from None

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Decoder:  # noqa: PYI034
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
