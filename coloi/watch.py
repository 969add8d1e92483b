"""``coloi watch``: colourise every photo that lands in a folder, exactly once.

- At start, the backlog: every photo already there and not yet done; then every new one.
- File events (inotify, or polling for network filesystems) only mark a path as *pending*; a
  pending photo is read once it has been stable (same size and mtime) for ``settle`` seconds,
  so half-written files, slow writers and scanner programs are never read early. Hidden and
  temporary names (rsync's ``.name.XXXXXX``, ``*.part``...) are ignored until renamed.
- Outputs go to a folder outside the watched one and are written atomically; the journal
  (:mod:`coloi.journal`) records each finished photo, so a restart after a crash neither
  repeats nor loses one. A photo that changes is done again; one that fails is logged and not
  retried until it changes. An output that cannot be written (full disk, read-only folder) is
  logged but not remembered as failed, so a restart retries it once the folder is fixed.
- Links are never followed out of the watched folder, nor into linked subfolders.
- ``photo_timeout`` bounds the time one photo may take; one over it fails like a bad file.
- SIGTERM, SIGINT and SIGHUP finish the current photo and exit 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from coloi.batch import SUFFIX_FORMAT, Job, output_path, render, write_output
from coloi.discovery import find_photos, is_hidden_or_temporary, is_photo_name, refuse_overlap
from coloi.errors import (
    ColoiError,
    MissingPhoto,
    PhotoError,
    PhotoTimeout,
    UnreadablePhoto,
    UnwritableOutput,
)
from coloi.imageio import Limits
from coloi.journal import JOURNAL_NAME, Journal, Signature
from coloi.sdnotify import Notifier

if TYPE_CHECKING:
    from coloi.api import Colouriser

log = logging.getLogger("coloi")
class _EventsToQueue(FileSystemEventHandler):
    """Hands every path an event touches to the main loop; the main loop decides."""

    def __init__(self, paths: queue.SimpleQueue[Path]) -> None:
        self.paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads, our own included, change nothing
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self.paths.put(Path(os.fsdecode(raw)))


@dataclass
class _Pending:
    signature: Signature | None
    stable_since: float


@dataclass
class Counts:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    known_bad: int = 0
    pending: int = 0

    def status(self) -> str:
        return (f"{self.done} colourised, {self.failed} failed, {self.skipped} already done, "
                f"{self.known_bad} bad and unchanged, {self.pending} waiting")


@dataclass
class Watcher:
    """The daemon for one watched folder. Call :meth:`run`."""

    root: Path
    output_dir: Path
    colouriser: Colouriser
    limits: Limits = field(default_factory=Limits)
    polling: bool = False
    settle: float = 1.0
    poll_interval: float = 1.0
    quality: int = 95
    photo_timeout: float | None = None
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.output_dir = self.output_dir.resolve()
        refuse_overlap(self.root, self.output_dir)
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            # The journal first: it locks the folder, so that a second daemon cannot remove
            # the first one's partial outputs as leftovers.
            self.journal = Journal(self.output_dir / JOURNAL_NAME)
            self._remove_partial_outputs()
        except OSError as error:
            raise ColoiError(f"{self.output_dir}: cannot keep the journal in the output folder "
                             f"({error.strerror or error})") from None
        self.pending: dict[Path, _Pending] = {}
        self.events: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self._timed: Path | None = None  # the photo the time limit is running for
        self._lock = threading.Lock()  # journal and counts, shared with the writer thread
        self._in_flight: dict[str, Signature] = {}  # colourised, waiting to be written
        self._writes: deque[Future[None]] = deque()
        self._last_ping = self._last_status = 0.0

    def _remove_partial_outputs(self) -> None:
        """Delete temporary files a killed run left mid-write (their outputs were never
        renamed into place, so those photos are simply done again)."""
        for partial in self.output_dir.rglob(".*.coloi-partial"):
            with contextlib.suppress(OSError):
                partial.unlink()
                log.info("removed %s, left by an interrupted run", partial)

    # -- discovering work -------------------------------------------------------------------

    def _escapes(self, path: Path) -> str | None:
        """Why ``path`` must not be read: it leads (through a link, itself or a folder on the
        way) outside the watched folder, or round in a loop; None if it stays inside."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # RuntimeError: a link loop (Python 3.11, 3.12)
            return "a link that leads round in a loop"
        if self.root not in real.parents:
            return "a link to outside the watched folder"
        return None

    def _mark(self, path: Path, now: float) -> None:
        """Note that ``path`` may have changed; it is read once it has stayed the same."""
        if self.root not in path.parents:
            return
        # The discovery rule, for live events as for the backlog: nothing in a hidden or
        # temporary folder (a ".thumbnails" cache, a folder still being copied as "x.tmp").
        if any(map(is_hidden_or_temporary, path.relative_to(self.root).parts[:-1])):
            return
        if path.is_dir() and not path.is_symlink():
            if not is_hidden_or_temporary(path.name):
                for photo in find_photos(path):  # a folder moved or copied in
                    self._mark(photo, now)
        elif is_photo_name(path.name):
            reason = self._escapes(path)
            if reason:
                log.warning("ignored %s: %s", path.relative_to(self.root), reason)
                return
            self.pending[path] = _Pending(None, now)

    def _start_observer(self) -> BaseObserver:
        handler = _EventsToQueue(self.events)
        if not self.polling:
            try:
                observer: BaseObserver = Observer()
                observer.schedule(handler, str(self.root), recursive=True)
                observer.start()
                return observer
            except OSError as error:  # no inotify, or out of watches
                log.warning("inotify unavailable (%s); polling %s every %.1f s",
                            error.strerror or error, self.root, self.poll_interval)
        # lstat, so that a linked folder is not a folder to the walk: it is never followed (a
        # link to '.' would otherwise make every photo arrive again under each level of it).
        observer = PollingObserverVFS(os.lstat, os.scandir, polling_interval=self.poll_interval)
        observer.schedule(handler, str(self.root), recursive=True)
        observer.start()
        return observer

    # -- doing work -------------------------------------------------------------------------

    def _job(self, path: Path) -> Job:
        relative = path.relative_to(self.root)
        return Job(path, output_path(path, relative, self.output_dir, None),
                   SUFFIX_FORMAT[path.suffix.lower()])

    def _record(self, relative: str, signature: Signature, result: str,
                reason: str = "") -> None:
        try:
            with self._lock:  # the main thread records failures, the writer thread successes
                self.journal.record(relative, signature, result, reason)
        except OSError as error:
            # The output folder filled up or went read-only. The photo's result stands; it is
            # only not remembered, so a restart does it again.
            log.error("journal: cannot record %s (%s)", relative, error.strerror or error)

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
        if not self.photo_timeout or signal.getsignal(signal.SIGALRM) != self._expire:
            yield
            return
        self._timed = path
        signal.setitimer(signal.ITIMER_REAL, self.photo_timeout)
        try:
            yield
        finally:
            self._timed = None  # disarmed first: an alarm that fires now raises nothing
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        if self._timed is not None:
            raise PhotoTimeout(self._timed, f"took longer than {self.photo_timeout:g} s "
                                            f"(--photo-timeout)")

    def _process(self, path: Path, signature: Signature) -> None:
        relative = path.relative_to(self.root).as_posix()
        job = self._job(path)
        escape = self._escapes(path)  # again: the path may have been replaced since
        if escape:
            log.warning("ignored %s: %s", relative, escape)
            return
        previous = self.journal.entries.get(relative)
        try:
            written_after = previous is None and job.target.exists() and (
                job.target.stat().st_mtime_ns >= signature.mtime_ns)
        except OSError:
            written_after = False
        if written_after:
            # Written just before a crash, before its journal line: keep it, do not redo it.
            self._record(relative, signature, "done")
            self._count("skipped")
            return
        started = time.perf_counter()
        try:
            with self._time_limit(path):
                data = render(job, self.colouriser, self.limits, self.quality)
        except MissingPhoto:
            log.warning("skipped %s: removed before it could be read", relative)
            return
        except PhotoError as error:
            # Only a fault of the photo itself is remembered, so that it is not retried until
            # it changes; a broken model, a plugin's exception, memory or a timeout under load
            # are not the photo's, and a restart tries it again.
            if isinstance(error, UnreadablePhoto):
                self._record(relative, signature, "failed", error.reason)
            self._count("failed")
            log.error("failed %s: %s", relative, error.reason)
            return
        # Writing overlaps the next photo's decoding and inference. At most two writes wait,
        # which bounds memory; a write lost to a crash is simply done again after a restart.
        self._in_flight[relative] = signature
        self._writes.append(self._writer.submit(self._write, job, data, relative, signature,
                                                started))
        while len(self._writes) > 2:
            self._writes.popleft().result()

    def _write(self, job: Job, data: bytes, relative: str, signature: Signature,
               started: float) -> None:
        """On the writer thread: the output, then its journal line, then the log line."""
        try:
            write_output(job, data, overwrite=True)
        except UnwritableOutput as error:
            # Not the photo's fault: not remembered as failed, so a restart tries it again.
            self._count("failed")
            log.error("failed %s: %s", relative, error.reason)
        else:
            self._record(relative, signature, "done")
            self._count("done")
            log.info("done %s -> %s (%.2f s)", relative, job.target,
                     time.perf_counter() - started)
        finally:
            self._in_flight.pop(relative, None)

    def _count(self, field_name: str) -> None:
        with self._lock:
            setattr(self.counts, field_name, getattr(self.counts, field_name) + 1)

    def _finish_writes(self) -> None:
        while self._writes:
            self._writes.popleft().result()

    def _ready(self, now: float) -> list[tuple[Path, Signature]]:
        """Pending photos that have been stable for ``settle`` seconds, oldest first."""
        ready = []
        for path, state in list(self.pending.items()):
            try:
                signature = Signature.of(path)
            except OSError:
                del self.pending[path]  # deleted or moved away meanwhile
                continue
            if signature != state.signature:
                self.pending[path] = _Pending(signature, now)
            elif now - state.stable_since >= self.settle:
                del self.pending[path]
                relative = path.relative_to(self.root).as_posix()
                settled = self.journal.settled(relative, signature)
                if settled is None and self._in_flight.get(relative) != signature:
                    ready.append((path, signature))
                else:  # "already done" counts only photos that were done
                    self._count("skipped" if settled is None or settled.result == "done"
                                else "known_bad")
        return ready

    def _drain_events(self, now: float) -> None:
        while True:
            try:
                path = self.events.get_nowait()
            except queue.Empty:
                return
            self._mark(path, now)

    def _heartbeat(self, notifier: Notifier) -> None:
        """WATCHDOG=1 and STATUS for systemd, each at its own pace."""
        now = time.monotonic()
        self.counts.pending = len(self.pending)
        if notifier.watchdog_interval and now - self._last_ping >= notifier.watchdog_interval:
            notifier.notify(watchdog=1)
            self._last_ping = now
        if now - self._last_status >= 5.0:
            notifier.notify(status=self.counts.status())
            self._last_status = now

    def run(self, notifier: Notifier | None = None) -> Counts:
        """Watch until SIGTERM/SIGINT/SIGHUP (or :attr:`stopping` is set); returns the counts."""
        notifier = notifier or Notifier()
        # SIGHUP (its terminal closed) stops it as cleanly as SIGTERM: nothing to reload.
        previous_handlers = {sig: signal.getsignal(sig)
                             for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

        def shutdown(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()

        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            for sig in previous_handlers:
                signal.signal(sig, shutdown)
            previous_handlers[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._expire)
        elif self.photo_timeout:
            log.warning("the photo time limit is not enforced: it needs the daemon to run in "
                        "the main thread")
        observer = self._start_observer()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coloi-writer")
        try:
            now = time.monotonic()
            for photo in find_photos(self.root):  # the backlog
                self._mark(photo, now)
            notifier.notify(ready=1, status=f"watching {self.root}")
            log.info("watching %s -> %s (%d waiting)", self.root, self.output_dir,
                     len(self.pending))
            while not self.stopping.is_set():
                self._drain_events(time.monotonic())
                for path, signature in self._ready(time.monotonic()):
                    if self.stopping.is_set():
                        break
                    self._process(path, signature)
                    self._drain_events(time.monotonic())
                    self._heartbeat(notifier)  # a long burst must not starve the watchdog
                self._heartbeat(notifier)
                self.stopping.wait(0.2)
            self._finish_writes()  # the photos already colourised are written out
            notifier.notify(stopping=1, status=self.counts.status())
            log.info("stopping: %s", self.counts.status())
        finally:
            self._writer.shutdown(wait=True)
            observer.stop()
            observer.join()
            try:
                self.journal.close()
            except OSError as error:  # its last line could not be flushed (full disk)
                log.error("journal: cannot close %s (%s)", self.journal.path,
                          error.strerror or error)
            if in_main_thread:
                for sig, handler in previous_handlers.items():
                    signal.signal(sig, handler)
        return self.counts
