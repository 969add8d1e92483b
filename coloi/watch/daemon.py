"""The daemon's loop: hear, settle, work, keep systemd informed; and notice going deaf."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from coloi.discovery import refuse_overlap
from coloi.errors import ColoiError, shown
from coloi.imageio import Limits
from coloi.journal import JOURNAL_NAME, Journal
from coloi.sdnotify import Notifier
from coloi.watch.settle import Settler
from coloi.watch.sources import Source, ThreadDeaths, start_source
from coloi.watch.worker import Counts, Worker

if TYPE_CHECKING:
    from coloi.api import Colouriser

log = logging.getLogger("coloi")
HEALTH_EVERY = 1.0  # seconds between checks that the watched folder is still the one watched


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


@dataclass
class Watcher:
    """The daemon for one watched folder. Call :meth:`run`.

    ``rescan`` is how often (seconds) the whole folder is walked for photos that no file event
    announced; a photo found so while inotify is in use means events are being missed (the
    watch limit, a dropped queue), and the daemon turns to polling.
    """

    root: Path
    output_dir: Path
    colouriser: Colouriser
    limits: Limits = field(default_factory=Limits)
    polling: bool = False
    settle: float = 1.0
    poll_interval: float = 1.0
    quality: int = 95
    photo_timeout: float | None = None
    rescan: float = 60.0

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
            raise ColoiError(
                f"{self.output_dir}: cannot keep the journal in the output folder "
                f"({error.strerror or error})"
            ) from None
        self.worker = Worker(
            self.root,
            self.output_dir,
            self.colouriser,
            self.journal,
            self.limits,
            self.quality,
            self.photo_timeout,
        )
        self.settler = Settler(
            self.root, self.journal, self.settle, self.worker.count, self.worker.in_flight
        )
        self.events: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.deaf: str | None = None  # why nothing can be heard now, while so
        self._identity = _identity(self.root)
        self._last_ping = self._last_status = self._last_health = 0.0
        self._last_rescan = time.monotonic()

    @property
    def counts(self) -> Counts:
        return self.worker.counts

    def _remove_partial_outputs(self) -> None:
        """Delete temporary files a killed run left mid-write (their outputs were never
        renamed into place, so those photos are simply done again)."""
        for partial in self.output_dir.rglob(".*.coloi-partial"):
            with contextlib.suppress(OSError):
                partial.unlink()
                log.info("removed %s, left by an interrupted run", partial)

    # -- hearing ----------------------------------------------------------------------------

    def _drain_events(self, now: float) -> None:
        while True:
            try:
                path = self.events.get_nowait()
            except queue.Empty:
                return
            self.settler.mark(path, now)

    def _check_hearing(self, source: Source, deaths: ThreadDeaths, now: float) -> Source:
        """Notice a folder deleted or replaced, a dead event thread, or missed events; mend
        what can be mended. Returns the source to listen to from now on."""
        if now - self._last_health < HEALTH_EVERY:
            return source
        self._last_health = now
        identity = _identity(self.root)
        if identity is None:
            if self.deaf is None:
                self.deaf = "the watched folder is gone"
                log.error(
                    "%s: the watched folder is gone; waiting for it to come back "
                    "(systemd's watchdog is no longer fed)",
                    self.root,
                )
                source.stop()
            return source
        if self.deaf is not None:  # the folder is back: watch it as at the start
            log.warning("%s: the watched folder is back; watching it again", self.root)
            self._identity, self.deaf = identity, None
            source = start_source(self.root, self.events, self.polling, self.poll_interval)
            self.settler.mark_unsettled(now)
            return source
        problem = source.problem() or (deaths.deaths.pop(0) if deaths.deaths else None)
        replaced = identity != self._identity
        if not replaced and problem is None:
            if now - self._last_rescan >= self.rescan:
                self._last_rescan = now
                self._drain_events(now)  # what was heard is not missed
                missed = self.settler.mark_unsettled(now, quiet_for=max(2.0, 2 * self.settle))
                if missed and not self.polling:
                    log.warning(
                        "file events missed %d photo(s), e.g. %s (inotify's watch "
                        "limit?); polling from now on",
                        len(missed),
                        shown(missed[0].relative_to(self.root)),
                    )
                    source.stop()
                    self.polling = True
                    return start_source(self.root, self.events, True, self.poll_interval)
            return source
        # Deaf: watch again, from scratch, and catch up with a walk of the whole folder.
        if problem is not None:
            log.error("%s: %s; polling from now on", self.root, problem)
            self.polling = True  # a dead inotify thread is shared: it cannot be restarted
        elif replaced:
            log.warning("%s: the watched folder was replaced; watching the new one", self.root)
        source.stop()
        self._identity, self.deaf = identity, None
        source = start_source(self.root, self.events, self.polling, self.poll_interval)
        self.settler.mark_unsettled(now)
        return source

    # -- systemd ----------------------------------------------------------------------------

    def _heartbeat(self, notifier: Notifier) -> None:
        """WATCHDOG=1 and STATUS for systemd, each at its own pace; no WATCHDOG=1 while deaf,
        so that systemd restarts a daemon that cannot work."""
        now = time.monotonic()
        self.counts.pending = len(self.settler.pending)
        if (
            notifier.watchdog_interval
            and self.deaf is None
            and now - self._last_ping >= notifier.watchdog_interval
        ):
            notifier.notify(watchdog=1)
            self._last_ping = now
        if now - self._last_status >= 5.0:
            status = self.counts.status() if self.deaf is None else f"deaf: {self.deaf}"
            notifier.notify(status=status)
            self._last_status = now

    # -- the loop ---------------------------------------------------------------------------

    def run(self, notifier: Notifier | None = None) -> Counts:
        """Watch until SIGTERM/SIGINT/SIGHUP (or :attr:`stopping` is set); returns the counts."""
        notifier = notifier or Notifier()
        # SIGHUP (its terminal closed) stops it as cleanly as SIGTERM: nothing to reload.
        previous_handlers = {
            sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }

        def shutdown(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()

        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            for sig in previous_handlers:
                signal.signal(sig, shutdown)
            previous_handlers[signal.SIGALRM] = signal.signal(signal.SIGALRM, self.worker.expire)
        elif self.photo_timeout:
            log.warning(
                "the photo time limit is not enforced: it needs the daemon to run in "
                "the main thread"
            )
        source = start_source(self.root, self.events, self.polling, self.poll_interval)
        try:
            with ThreadDeaths() as deaths:
                now = time.monotonic()
                self.settler.mark_unsettled(now, backlog=True)
                notifier.notify(ready=1, status=f"watching {self.root}")
                log.info(
                    "watching %s -> %s (%d waiting)",
                    self.root,
                    self.output_dir,
                    len(self.settler.pending),
                )
                while not self.stopping.is_set():
                    self._drain_events(time.monotonic())
                    for path, signature in self.settler.ready(time.monotonic()):
                        if self.stopping.is_set():
                            break
                        self.worker.process(path, signature, self.settler.escapes(path))
                        self._drain_events(time.monotonic())
                        self._heartbeat(notifier)  # a long burst must not starve the watchdog
                    source = self._check_hearing(source, deaths, time.monotonic())
                    self._heartbeat(notifier)
                    # Not stopping.wait(): the signal handler sets the Event, and would wait
                    # forever for its lock if the signal came while this thread held it.
                    time.sleep(0.2)
                self.worker.finish()  # the photos already colourised are written out
                notifier.notify(stopping=1, status=self.counts.status())
                log.info("stopping: %s", self.counts.status())
        finally:
            self.worker.close()
            source.stop()
            try:
                self.journal.close()
            except OSError as error:  # its last line could not be flushed (full disk)
                log.error(
                    "journal: cannot close %s (%s)", self.journal.path, error.strerror or error
                )
            if in_main_thread:
                for sig, handler in previous_handlers.items():
                    signal.signal(sig, handler)
        return self.counts
