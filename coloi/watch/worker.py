"""Doing one photo: read, colourise and encode it under a time limit, write it out on a
writer thread, and record the result in the journal."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from coloi.batch import SUFFIX_FORMAT, Job, output_path, render, write_output
from coloi.errors import (
    MissingPhoto,
    PhotoError,
    PhotoTimeout,
    UnreadablePhoto,
    UnwritableOutput,
    shown,
)
from coloi.imageio import Limits
from coloi.journal import Journal, Signature

if TYPE_CHECKING:
    from coloi.api import Colouriser

log = logging.getLogger("coloi")


@dataclass
class Counts:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    known_bad: int = 0
    pending: int = 0

    def status(self) -> str:
        return (
            f"{self.done} colourised, {self.failed} failed, {self.skipped} already done, "
            f"{self.known_bad} bad and unchanged, {self.pending} waiting"
        )


class Worker:
    """Renders photos on the calling (main) thread and writes them on one writer thread, so
    that writing overlaps the next photo's decoding and inference."""

    def __init__(
        self,
        root: Path,
        output_dir: Path,
        colouriser: Colouriser,
        journal: Journal,
        limits: Limits,
        quality: int,
        photo_timeout: float | None,
    ) -> None:
        self.root, self.output_dir, self.colouriser = root, output_dir, colouriser
        self.journal, self.limits, self.quality = journal, limits, quality
        self.photo_timeout = photo_timeout
        self.counts = Counts()
        self._lock = threading.Lock()  # journal and counts, shared with the writer thread
        self._in_flight: dict[str, Signature] = {}  # colourised, waiting to be written
        self._writes: deque[Future[None]] = deque()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coloi-writer")
        self._timed: Path | None = None  # the photo the time limit is running for

    def in_flight(self, relative: str) -> Signature | None:
        return self._in_flight.get(relative)

    def count(self, field_name: str) -> None:
        with self._lock:
            setattr(self.counts, field_name, getattr(self.counts, field_name) + 1)

    def _job(self, path: Path) -> Job:
        relative = path.relative_to(self.root)
        return Job(
            path,
            output_path(path, relative, self.output_dir, None),
            SUFFIX_FORMAT[path.suffix.lower()],
        )

    def _journal(self, action: str, relative: str, signature: Signature, *args: str) -> None:
        try:
            with self._lock:  # the main thread records failures, the writer thread successes
                getattr(self.journal, action)(relative, signature, *args)
        except OSError as error:
            # The output folder filled up or went read-only. The photo's result stands; it is
            # only not remembered, so a restart does it again.
            log.error("journal: cannot record %s (%s)", shown(relative), error.strerror or error)

    # -- the time limit ---------------------------------------------------------------------

    @contextmanager
    def _time_limit(self, path: Path) -> Iterator[None]:
        """Raise PhotoTimeout inside the block once it has run for ``photo_timeout`` seconds.

        Why a timer signal: Python cannot stop a thread, and a worker process per photo would
        need a second copy of the model in memory and a reload after each timeout. SIGALRM
        interrupts the main thread between two Python bytecodes, so a photo stops at the end
        of whichever OpenCV or LiteRT call is running (each is bounded by the pixel limit),
        and the exception unwinds like any other: ``with`` blocks release the backend lock and
        close the file. Only the reading, colourising and encoding run under the limit, never
        the writing, so nothing is ever cut off half-written. SIGTERM and SIGINT keep working:
        they only set an Event, and the handler for SIGALRM raises only while a photo is timed.
        """
        if not self.photo_timeout or signal.getsignal(signal.SIGALRM) != self.expire:
            yield
            return
        self._timed = path
        signal.setitimer(signal.ITIMER_REAL, self.photo_timeout)
        try:
            yield
        finally:
            self._timed = None  # disarmed first: an alarm that fires now raises nothing
            signal.setitimer(signal.ITIMER_REAL, 0)

    def expire(self, signum: int, frame: FrameType | None) -> None:
        """The SIGALRM handler (installed by the daemon in the main thread)."""
        if self._timed is not None:
            raise PhotoTimeout(
                self._timed, f"took longer than {self.photo_timeout:g} s (--photo-timeout)"
            )

    # -- one photo --------------------------------------------------------------------------

    def process(self, path: Path, signature: Signature, escape: str | None) -> None:
        relative = path.relative_to(self.root).as_posix()
        if escape:  # checked again by the caller: the path may have been replaced since
            log.warning("ignored %s: %s", shown(relative), escape)
            return
        job = self._job(path)
        previous = self.journal.entries.get(relative)
        try:
            written_after = (
                previous is None
                and job.target.exists()
                and (job.target.stat().st_mtime_ns >= signature.mtime_ns)
            )
        except OSError:
            written_after = False
        if written_after:
            # Written just before a crash, before its journal line: keep it, do not redo it.
            self._journal("record", relative, signature, "done")
            self.count("skipped")
            return
        started = time.perf_counter()
        self._journal("begin", relative, signature)
        try:
            with self._time_limit(path):
                data = render(job, self.colouriser, self.limits, self.quality)
        except MissingPhoto:
            self._journal("record", relative, signature, "retry")
            log.warning("skipped %s: removed before it could be read", shown(relative))
            return
        except PhotoError as error:
            # Only a fault of the photo itself is remembered, so that it is not retried until
            # it changes; a broken model, a plugin's exception, memory or a timeout under load
            # are not the photo's, and a restart tries it again.
            own = isinstance(error, UnreadablePhoto)
            self._journal(
                "record",
                relative,
                signature,
                "failed" if own else "retry",
                error.reason if own else "",
            )
            self.count("failed")
            log.error("failed %s: %s", shown(relative), error.reason)
            return
        # At most two writes wait, which bounds memory; a write lost to a crash is simply
        # done again after a restart.
        self._in_flight[relative] = signature
        self._writes.append(
            self._writer.submit(self._write, job, data, relative, signature, started)
        )
        while len(self._writes) > 2:
            self._writes.popleft().result()

    def _write(
        self, job: Job, data: bytes, relative: str, signature: Signature, started: float
    ) -> None:
        """On the writer thread: the output, then its journal line, then the log line."""
        try:
            write_output(job, data, overwrite=True)
        except UnwritableOutput as error:
            # Not the photo's fault: not remembered as failed, so a restart tries it again.
            self._journal("record", relative, signature, "retry")
            self.count("failed")
            log.error("failed %s: %s", shown(relative), error.reason)
        else:
            self._journal("record", relative, signature, "done")
            self.count("done")
            log.info(
                "done %s -> %s (%.2f s)",
                shown(relative),
                shown(job.target),
                time.perf_counter() - started,
            )
        finally:
            self._in_flight.pop(relative, None)

    def finish(self) -> None:
        """Wait for the writes in progress."""
        while self._writes:
            self._writes.popleft().result()

    def close(self) -> None:
        self._writer.shutdown(wait=True)
