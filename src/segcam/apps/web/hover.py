"""Maps that follow the cursor: precomputed linear tables, built in the background.

A region score is linear in its mask, and for Seg-Grad-CAM, HiResCAM and Seg-XRes-CAM with mean
pooling the map is linear in the gradient, so a table ``P_u`` per output pixel (see
:mod:`segcam.linear`) turns any region's map into a weighted sum — no backward pass.  The first
hover request over a picture starts building its table on a background thread and is answered
by an ordinary backward pass, as are the following ones until the table is ready (benchmarks:
on the default model the table gives a map in about a tenth of a backward pass's time).  Tables
live in the session store's cache beside the forward passes, so they count against the same
memory cap and go with their session; a table too large for ``max_bytes`` is never built.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ... import LinearMaps, linear_method
from .sessions import ByteCache

MAX_REFUSED = 4096  # keys remembered as not worth building (then forgotten all at once)
MAX_PENDING = 4  # builds queued at once (each holds its forward pass); more hovers wait their turn


class HoverTables:
    """Linear tables by key; :meth:`get` returns one when ready, else starts building it."""

    def __init__(self, cache: ByteCache, max_bytes: int):
        self.cache, self.max_bytes = cache, max_bytes
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segcam-hover")
        self._building: set[Hashable] = set()
        self._refused: set[Hashable] = set()
        self._lock = threading.Lock()

    @staticmethod
    def key(base: tuple, method: Any) -> tuple:
        return (*base, "linear", method.name, json.dumps(method.to_dict(), sort_keys=True))

    def get(self, key: tuple, method: Any, build: Callable[[], LinearMaps]) -> LinearMaps | None:
        """The table for ``key`` if built; otherwise ``None``, after starting ``build`` once
        (for linear methods only, at most :data:`MAX_PENDING` queued; a table that failed or that
        the cache could not keep is not built again)."""
        if not linear_method(method):
            return None
        table = self.cache.get(key)
        if table is not None:
            return table
        with self._lock:
            if key in self._building or key in self._refused or len(self._building) >= MAX_PENDING:
                return None
            if len(self._refused) > MAX_REFUSED:
                self._refused.clear()
            self._building.add(key)
        try:
            self._pool.submit(self._build, key, build)
        except RuntimeError:  # the server is stopping
            with self._lock:
                self._building.discard(key)
        return None

    def _build(self, key: tuple, build: Callable[[], LinearMaps]) -> None:
        kept = False
        try:
            table = build()
            kept = self.cache.put(key, table, table.nbytes)
        except Exception:  # noqa: BLE001 - too large, no forward-mode derivatives, or anything else: backward passes serve
            kept = False
        finally:
            with self._lock:
                self._building.discard(key)
                if not kept:  # not built again for this key
                    self._refused.add(key)

    def wait(self) -> None:
        """Block until the builds started so far are done (for tests and benchmarks)."""
        self._pool.submit(lambda: None).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
