"""Who has what on the server: sessions, their images and results, and the kept forward passes.

A session is a random id; it owns at most ``max_images`` images and ``max_results`` results
(oldest dropped first) and its jobs.  Forward passes (with their autograd graphs, so a new
region costs one backward pass) live in one :class:`ForwardCache` shared by all sessions,
bounded in bytes: the least recently used entries go first, and a session's entries go with it.
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

from ...errors import SegcamError


class NotFound(SegcamError):
    """An unknown or expired session, image, result or job (HTTP 404)."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass
class Picture:
    """An uploaded image or volume: ``raw`` is ``(C, *S)`` as decoded."""

    name: str
    raw: Tensor

    @property
    def dims(self) -> int:
        return self.raw.ndim - 1

    def info(self, image_id: str) -> dict[str, Any]:
        return {"image": image_id, "name": self.name, "dims": self.dims, "shape": list(self.raw.shape[1:]),
                "channels": int(self.raw.shape[0])}


@dataclass
class Session:
    id: str
    images: OrderedDict[str, Picture] = field(default_factory=OrderedDict)
    results: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    jobs: OrderedDict[str, Any] = field(default_factory=OrderedDict)


def forward_bytes(tensors: list[Tensor]) -> int:
    """Bytes held by ``tensors``, each storage counted once."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
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


class ForwardCache:
    """Least-recently-used values bounded by their total bytes (``cap``); keys start with the session id."""

    def __init__(self, cap: int):
        self.cap = cap
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._items.values())

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Keep ``value``; older entries are dropped until the total fits (a value larger than
        the cap is not kept at all: the caller still has it for this request)."""
        with self._lock:
            self._items.pop(key, None)
            if size > self.cap:
                return
            self._items[key] = (value, size)
            total = sum(s for _, s in self._items.values())
            while total > self.cap:
                _, (_, dropped) = self._items.popitem(last=False)
                total -= dropped
                self.evictions += 1

    def drop(self, match: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if match(k)]:
                del self._items[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class SessionStore:
    """Sessions by id, at most ``max_sessions`` (the least recently used dropped first)."""

    def __init__(self, max_sessions: int, max_images: int, max_results: int, cache_bytes: int):
        self.max_sessions, self.max_images, self.max_results = max_sessions, max_images, max_results
        self.cache = ForwardCache(cache_bytes)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.RLock()

    def create(self) -> Session:
        with self._lock:
            session = Session(new_id("s"))
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                old, _ = self._sessions.popitem(last=False)
                self.cache.drop(lambda key, old=old: key[0] == old)
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
        with self._lock:
            session = self.get(session_id)
            image_id = new_id("i")
            session.images[image_id] = picture
            while len(session.images) > self.max_images:
                old, _ = session.images.popitem(last=False)
                self.cache.drop(lambda key, old=old: key[0] == session_id and key[1] == old)
            return image_id

    def image(self, session_id: str, image_id: str) -> Picture:
        with self._lock:
            picture = self.get(session_id).images.get(image_id)
            if picture is None:
                raise NotFound(f"unknown image {image_id!r} in this session (each session keeps its last "
                               f"{self.max_images}); upload it again.")
            return picture

    def add_result(self, session_id: str, result: Any) -> str:
        with self._lock:
            session = self.get(session_id)
            result_id = new_id("r")
            session.results[result_id] = result
            while len(session.results) > self.max_results:
                session.results.popitem(last=False)
            return result_id

    def result(self, session_id: str, result_id: str) -> Any:
        with self._lock:
            result = self.get(session_id).results.get(result_id)
            if result is None:
                raise NotFound(f"unknown result {result_id!r} in this session (each session keeps its last "
                               f"{self.max_results}); explain again.")
            return result

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
