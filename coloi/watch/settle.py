"""Which paths are waiting to be read, and when each is ready: stable for ``settle`` seconds.

Pure bookkeeping over a clock passed in by the caller, so it is tested without sleeping.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coloi.discovery import is_hidden_or_temporary, is_photo_name, walk_photos
from coloi.errors import shown
from coloi.journal import Journal, Signature

log = logging.getLogger("coloi")
# A photo that failed for a reason not its own (a broken model or plugin, memory, a timeout
# under load) is tried again by a restart, or by the running daemon after a wait that doubles
# from the first to the longest, so that a broken model does not redo every photo at every walk.
RETRY_FIRST, RETRY_LONGEST = 60.0, 3600.0


@dataclass
class _Pending:
    signature: Signature | None
    stable_since: float


class Settler:
    """Pending photos of one watched folder. ``count`` is told "skipped" (already done) or
    "known_bad" (failed before, unchanged) for each photo that needs no work."""

    def __init__(
        self,
        root: Path,
        journal: Journal,
        settle: float,
        count: Callable[[str], None],
        in_flight: Callable[[str], Signature | None] = lambda _: None,
    ) -> None:
        self.root, self.journal, self.settle = root, journal, settle
        self.count, self.in_flight = count, in_flight
        self.pending: dict[Path, _Pending] = {}
        self._retries: dict[str, tuple[Signature, float, float]] = {}  # (version, due, wait)

    def escapes(self, path: Path) -> str | None:
        """Why ``path`` must not be read: it leads (through a link, itself or a folder on the
        way) outside the watched folder, or round in a loop; None if it stays inside."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # RuntimeError: a link loop (Python 3.11, 3.12)
            return "a link that leads round in a loop"
        if self.root not in real.parents:
            return "a link to outside the watched folder"
        return None

    def mark(self, path: Path, now: float) -> None:
        """Note that ``path`` may have changed; a folder stands for every photo in it."""
        if self.root not in path.parents:
            return
        # The discovery rule, for live events as for the backlog: nothing in a hidden or
        # temporary folder (a ".thumbnails" cache, a folder still being copied as "x.tmp").
        if any(map(is_hidden_or_temporary, path.relative_to(self.root).parts[:-1])):
            return
        if path.is_dir() and not path.is_symlink():
            if not is_hidden_or_temporary(path.name):
                for photo, _ in walk_photos(path):  # a folder moved or copied in
                    self.mark(photo, now)
        elif is_photo_name(path.name):
            reason = self.escapes(path)
            if reason:
                log.warning("ignored %s: %s", shown(path.relative_to(self.root)), reason)
                return
            self.pending[path] = _Pending(None, now)

    def mark_unsettled(
        self, now: float, backlog: bool = False, quiet_for: float = 0.0
    ) -> list[Path]:
        """Walk the whole folder and mark each photo that is neither done, failed, pending
        nor being written. At start (``backlog``) this is the backlog, and the photos done or
        failed before are counted; later, it finds photos that file events missed.

        Photos changed in the last ``quiet_for`` seconds are left for file events (theirs may
        still be on the way) or the next walk, so that every photo this returns is evidence
        that events were missed."""
        missed = []
        for path, stat in walk_photos(self.root):
            relative = path.relative_to(self.root).as_posix()
            signature = Signature.of_stat(stat)
            settled = self.journal.settled(relative, signature)
            if settled is not None and backlog:
                self.count("skipped" if settled.result == "done" else "known_bad")
            if path in self.pending or settled is not None or self.in_flight(relative) == signature:
                continue
            if not backlog and self._waits_to_retry(path, relative, signature, now):
                continue
            if time.time() - max(stat.st_mtime, stat.st_ctime) < quiet_for:
                continue
            missed.append(path)
            self.mark(path, now)
        return missed

    def _waits_to_retry(self, path: Path, relative: str, signature: Signature, now: float) -> bool:
        """Whether this version of the photo failed in this run for a reason not its own and
        its next try is not yet due. A try that is due is marked here: it is not a photo that
        file events missed."""
        entry = self.journal.entries.get(relative)
        if entry is None or entry.result != "retry" or not entry.signature.matches(signature):
            self._retries.pop(relative, None)
            return False
        known = self._retries.get(relative)
        if known is None or known[0] != signature:
            self._retries[relative] = (signature, now + RETRY_FIRST, RETRY_FIRST)
            return True
        _, due, wait = known
        if now < due:
            return True
        wait = min(2 * wait, RETRY_LONGEST)
        self._retries[relative] = (signature, now + wait, wait)
        self.mark(path, now)
        return True

    def ready(self, now: float) -> list[tuple[Path, Signature]]:
        """Pending photos that have been stable for ``settle`` seconds, oldest first."""
        ready = []
        for path, state in list(self.pending.items()):
            try:
                signature = Signature.of_stat(os.stat(path))
            except OSError:
                del self.pending[path]  # deleted or moved away meanwhile
                continue
            if signature != state.signature:
                self.pending[path] = _Pending(signature, now)
            elif now - state.stable_since >= self.settle:
                del self.pending[path]
                relative = path.relative_to(self.root).as_posix()
                settled = self.journal.settled(relative, signature)
                if settled is None and self.in_flight(relative) != signature:
                    ready.append((path, signature))
                else:  # "already done" counts only photos that were done
                    self.count(
                        "skipped" if settled is None or settled.result == "done" else "known_bad"
                    )
        return ready
