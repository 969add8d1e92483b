"""The bounded pool that colourises uploads: at most ``workers`` photos at once, at most
``queue`` more admitted and waiting, and every request beyond that refused at once with an
estimate of when to try again, rather than left to pile up in memory."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every worker is busy and the waiting line is full; try again in ``retry_after`` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy: try again in {retry_after} s")
        self.retry_after = retry_after


class WorkerPool:
    """Admission and execution. A request is admitted (:meth:`slot`) before its upload is
    read, so that a refused one costs no memory, and holds its place until it is answered.

    Admission is counted on the event loop's thread only; the workers' own count is locked.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.admitted = 0
        self._working = 0
        self._lock = threading.Lock()
        self._seconds_per_photo: float | None = None  # a moving average, for Retry-After
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="coloi-serve")

    @property
    def working(self) -> int:
        with self._lock:
            return self._working

    @property
    def waiting(self) -> int:
        """Requests admitted but not being colourised: uploading or queued for a worker."""
        return max(0, self.admitted - self.working)

    def retry_after(self) -> int:
        """Whole seconds until a place is likely to be free: the photos being done and those
        waiting, shared by the workers (1 until a photo has been timed)."""
        with self._lock:
            mean = self._seconds_per_photo or 0.0
        return max(1, math.ceil(mean * self.capacity / self.workers))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the pool's places for the request, or raise :class:`Busy`."""
        if self.admitted >= self.capacity:
            raise Busy(self.retry_after())
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, job: Callable[[], T]) -> T:
        """``job()`` on a worker thread, awaited without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, job)

    def _timed(self, job: Callable[[], T]) -> T:
        with self._lock:
            self._working += 1
        started = time.perf_counter()
        try:
            return job()
        finally:
            with self._lock:
                self._working -= 1
                seconds = time.perf_counter() - started
                mean = self._seconds_per_photo
                self._seconds_per_photo = seconds if mean is None else 0.8 * mean + 0.2 * seconds

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
