"""Who has what on the server: sessions, their images and results, and the kept forward passes.

A session is a random id; it owns at most ``max_images`` images and ``max_results`` results
(oldest dropped first) and its jobs.  Its pictures, results and forward passes (with their
autograd graphs, so a new region costs one backward pass) live in one :class:`ByteCache` shared
by all sessions, bounded in bytes: the least recently used entries go first, and a session's
entries go with it.
Every method takes the store's lock, so any number of request threads may call them.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ...errors import SegcamError, TooLargeError


class NotFound(SegcamError):
    """An unknown or expired session, image, result or job (HTTP 404)."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass
class Picture:
    """An uploaded image or volume: ``raw`` is ``(C, *S)`` as decoded."""

    name: str
    raw: Tensor
    sample: bool = False  # a bundled sample (its file ships with segcam)

    @property
    def dims(self) -> int:
        return self.raw.ndim - 1

    def info(self, image_id: str) -> dict[str, Any]:
        return {"image": image_id, "name": self.name, "dims": self.dims, "shape": list(self.raw.shape[1:]),
                "channels": int(self.raw.shape[0])}


@dataclass
class Session:
    id: str
    images: OrderedDict[str, None] = field(default_factory=OrderedDict)  # ids; the pictures are in the cache
    results: OrderedDict[str, None] = field(default_factory=OrderedDict)
    jobs: OrderedDict[str, Any] = field(default_factory=OrderedDict)


def forward_bytes(tensors: list[Tensor], exclude: list[Tensor] = ()) -> int:
    """Bytes held by ``tensors``, each storage counted once, leaving out the storages of
    ``exclude`` (a model's weights, which autograd saves but the model holds anyway)."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
            if storage.data_ptr() not in skip:
                seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


class SavedBytes:
    """Counts the tensors autograd saves while a forward pass records its graph (a context)."""

    def __init__(self) -> None:
        self.tensors: list[Tensor] = []

    def __enter__(self) -> SavedBytes:  # noqa: PYI034 - typing.Self needs Python 3.11
        def pack(t: Tensor) -> Tensor:
            self.tensors.append(t)
            return t
        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


class ByteCache:
    """Least-recently-used values bounded by their total bytes (``cap``).

    Keys are tuples starting with the session id (then the image id where there is one), so a
    session's or an image's entries can be dropped together.  ``keep`` entries (the users'
    pictures) take at most half the cap, oldest dropped first, and are never dropped for other
    entries: forward passes and results can be made again, an uploaded picture cannot.  The other
    half, :attr:`room`, is always there for forward passes, results and hover tables.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self.room = cap - cap // 2  # never held by keep entries
        self._kept = 0  # bytes of keep entries
        self._items: OrderedDict[Hashable, tuple[Any, int, bool]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._total

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any, size: int, keep: bool = False) -> bool:
        """Keep ``value``, dropping the least recently used entries until it fits: ``keep`` ones
        for a ``keep`` one (within half the cap), others for others.  Whether ``value`` was kept
        (a value over its share is not; the caller still has it for this request)."""
        with self._lock:
            self._pop(key)
            if size > (self.cap // 2 if keep else self.room):
                return False
            while keep and self._kept + size > self.cap // 2:
                self._pop(next(k for k, item in self._items.items() if item[2]))
                self.evictions += 1
            self._items[key] = (value, size, keep)
            self._total += size
            self._kept += size if keep else 0
            while self._total > self.cap:
                self._pop(next(k for k, item in self._items.items() if not item[2]))
                self.evictions += 1
            return True

    def drop(self, match: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if match(k)]:
                self._pop(key)

    def _pop(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._total -= item[1]
            self._kept -= item[1] if item[2] else 0

    def snapshot(self) -> list[Hashable]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class SessionStore:
    """Sessions by id, at most ``max_sessions`` (the least recently used dropped first).

    A session lists its images and results (at most ``max_images`` and ``max_results``, oldest
    dropped first); the tensors themselves live in the shared :class:`ByteCache` beside the
    forward passes, so everything the server keeps for its users stays within ``cache_bytes``.
    """

    def __init__(self, max_sessions: int, max_images: int, max_results: int, cache_bytes: int):
        self.max_sessions, self.max_images, self.max_results = max_sessions, max_images, max_results
        self.cache = ByteCache(cache_bytes)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.RLock()

    def create(self) -> Session:
        with self._lock:
            session = Session(new_id("s"))
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                old, dropped = self._sessions.popitem(last=False)
                self.cache.drop(lambda key, old=old: key[0] == old)
                for job in list(dropped.jobs.values()):  # nobody can read their results any more
                    job.cancel()
            return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise NotFound(f"unknown session {session_id!r} (it may have expired); reload the page "
                               "or POST /api/sessions for a new one.")
            self._sessions.move_to_end(session_id)
            return session

    def add_image(self, session_id: str, picture: Picture) -> str:
        """Keep ``picture`` for the session (its oldest image dropped beyond ``max_images``)."""
        image_id = self._add(session_id, "i", "images", picture, picture.raw.nbytes, self.max_images)
        if image_id is None:
            raise TooLargeError(f"{picture.name} needs {picture.raw.nbytes / 2**20:.0f} MB, more than this server "
                                f"keeps for the pictures of all users ({self.cache.cap // 2 / 2**20:.0f} MB); "
                                "upload a smaller image or start the server with a larger --cache-mb.")
        return image_id

    def image(self, session_id: str, image_id: str) -> Picture:
        return self._get(session_id, "images", image_id, f"unknown image {image_id!r} in this session (a session "
                         f"keeps its last {self.max_images} images while the server's memory allows); upload it again.")

    def add_result(self, session_id: str, result: Any, size: int) -> str:
        """Keep ``result`` for the session (its oldest result dropped beyond ``max_results``; a result
        the cache cannot keep is answered once and then unknown)."""
        return self._add(session_id, "r", "results", result, size, self.max_results) or new_id("r")

    def result(self, session_id: str, result_id: str) -> Any:
        return self._get(session_id, "results", result_id, f"unknown result {result_id!r} in this session (a session "
                         f"keeps its last {self.max_results} results while the server's memory allows); explain again.")

    def _add(self, session_id: str, prefix: str, listing: str, value: Any, size: int, limit: int) -> str | None:
        """Put ``value`` in the cache (pictures as ``keep`` entries) and list its new id in the
        session's ``listing``; ``None`` when the cache cannot keep it."""
        with self._lock:
            ids: OrderedDict[str, None] = getattr(self.get(session_id), listing)
            new = new_id(prefix)
            if not self.cache.put((session_id, new, listing), value, size, keep=listing == "images"):
                return None
            ids[new] = None
            while len(ids) > limit:
                old, _ = ids.popitem(last=False)
                self.cache.drop(lambda key, old=old: key[0] == session_id and key[1] == old)
            return new

    def _get(self, session_id: str, listing: str, item_id: str, unknown: str) -> Any:
        with self._lock:
            found = self.cache.get((session_id, item_id, listing)) \
                if item_id in getattr(self.get(session_id), listing) else None
            if found is None:
                raise NotFound(unknown)
            return found

    @property
    def lock(self) -> threading.RLock:
        """The store's lock (re-entrant): hold it to change a session's jobs."""
        return self._lock

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
