"""Long explanations (RISE, Score-CAM) run in the background, report progress and can be cancelled.

A :class:`Job` wraps one call ``work(progress)``; the method calls ``progress(done, total)`` as
it goes (the engine's progress protocol), and a cancelled job's next report raises
:class:`Cancelled`, which stops the method where it is.  At most ``workers`` jobs run at once;
the others wait in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...errors import SegcamError
from .sessions import new_id


class Cancelled(SegcamError):
    """The user cancelled the job."""


class TooMany(SegcamError):
    """Too many jobs at once (HTTP 429)."""


class Job:
    """One background explanation: ``state`` is queued, running, done, cancelled or error."""

    def __init__(self, work: Callable[[Callable[[int, int], None]], dict[str, Any]]):
        self.id = new_id("j")
        self.state = "queued"
        self.done, self.total = 0, 0
        self.result: dict[str, Any] | None = None
        self.error: dict[str, str] | None = None
        self._work = work
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    def progress(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise Cancelled("the job was cancelled.")
        with self._lock:
            self.done, self.total = int(done), int(total)

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            if self.state in ("queued", "running"):
                self.state = "cancelled"

    def run(self) -> None:
        with self._lock:
            if self._cancel.is_set():
                return
            self.state = "running"
        try:
            result = self._work(self.progress)
        except Cancelled:
            return
        except SegcamError as e:
            with self._lock:
                self.state, self.error = "error", {"kind": type(e).__name__, "message": str(e)}
            return
        except Exception as e:  # noqa: BLE001 - a job's failure is reported to its page, not raised in a worker
            with self._lock:
                self.state = "error"
                self.error = {"kind": "InternalError", "message": f"the explanation failed: {type(e).__name__}: {e}"}
            return
        with self._lock:
            if not self._cancel.is_set():
                self.state, self.result = "done", result

    def status(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"job": self.id, "state": self.state, "done": self.done, "total": self.total}
            if self.result is not None:
                out["result"] = self.result
            if self.error is not None:
                out["error"] = self.error
            return out


class JobRunner:
    """Runs jobs on ``workers`` background threads."""

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segcam-job")

    def submit(self, job: Job) -> Job:
        self._pool.submit(job.run)
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
