"""The watch daemon's memory of what it has done, kept across restarts and crashes.

An append-only file of JSON lines in the output folder, one line per finished photo: its path
relative to the watched folder, the size, mtime and ctime it had when it was read, and the
result. A line is written (and synced) only after the output file is complete, so after a crash
a photo is either recorded, or its output was never renamed into place, or (the one gap) its
output is there without a line, which the daemon records without doing the photo again.

A photo is also noted as *started* before it is read. A photo that takes the daemon down with
it (a decoder crash, the kernel's OOM killer, systemd's watchdog) is then known at the restart:
it is tried once more, and after a second such death it is recorded as failed, so that one
crafted file cannot stall the inbox in a restart loop.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from coloi.errors import ColoiError

JOURNAL_NAME = ".coloi-watch-journal.jsonl"


RESULTS = ("done", "failed", "started", "retry")
DEATHS_BEFORE_FAILED = 2
SYNC_EVERY = 1.0  # seconds between fsyncs of the journal


@dataclass(frozen=True)
class Signature:
    """What identifies one version of a file: a changed photo has a new signature.

    The ctime is in it because size and mtime alone miss a file replaced by another of the
    same size whose mtime was copied over (``cp -p``, ``rsync -t``, ``touch -r``): any write or
    rename sets the ctime, and nothing can set it back. ``ctime_ns`` 0 is unknown (journals
    written before it was kept), and matches any.
    """

    size: int
    mtime_ns: int
    ctime_ns: int = 0

    @classmethod
    def of(cls, path: Path) -> Signature:
        return cls.of_stat(path.stat())

    @classmethod
    def of_stat(cls, stat: os.stat_result) -> Signature:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)

    def matches(self, other: Signature) -> bool:
        return (self.size, self.mtime_ns) == (other.size, other.mtime_ns) and (
            not self.ctime_ns or not other.ctime_ns or self.ctime_ns == other.ctime_ns
        )


@dataclass(frozen=True)
class Entry:
    source: str
    size: int
    mtime_ns: int
    result: str  # one of RESULTS: "started" before reading, "retry" after a fault not its own
    reason: str = ""
    ctime_ns: int = 0
    attempts: int = 0  # "started": how many times in a row it was begun

    @property
    def signature(self) -> Signature:
        return Signature(self.size, self.mtime_ns, self.ctime_ns)


def _parse(line: bytes) -> Entry | None:
    """The entry on one journal line; None for a line that is not one (cut short by a crash,
    or damaged): that photo is then simply done again, rather than the daemon failing to
    start and systemd restarting it into the same journal for ever."""
    try:
        fields = json.loads(line.decode("utf-8"))
        entry = Entry(**fields)
    except (ValueError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    typed = (
        isinstance(entry.source, str)
        and isinstance(entry.reason, str)
        and entry.result in RESULTS
        and all(
            isinstance(n, int) and not isinstance(n, bool)
            for n in (entry.size, entry.mtime_ns, entry.ctime_ns, entry.attempts)
        )
    )
    return entry if typed else None


def _after_restart(entry: Entry) -> Entry:
    """A photo still "started" when the journal is read was being done when the daemon died."""
    if entry.result == "started" and entry.attempts >= DEATHS_BEFORE_FAILED:
        return Entry(
            entry.source,
            entry.size,
            entry.mtime_ns,
            "failed",
            f"the daemon stopped {entry.attempts} times while colourising it (a crash, "
            f"or killed for memory or time); not tried again until it changes",
            entry.ctime_ns,
        )
    return entry


class Journal:
    """The latest entry per source, loaded at start and appended to as photos finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        # One daemon per output folder: a second would do the same photos again and its
        # compaction would orphan the first's journal. The lock is on a file of its own, since
        # the journal itself is replaced when compacted; the kernel lets go of it when the
        # process ends, however it ends.
        self._lock = (path.with_name(path.name + ".lock")).open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ColoiError(
                f"{path.parent}: another coloi watch is already writing to this "
                f"output folder; stop it first, or choose another folder"
            ) from None
        if path.exists():
            for line in path.read_bytes().splitlines():
                entry = _parse(line)
                if entry is not None:
                    self.entries[entry.source] = _after_restart(entry)
            self._compact()
        self._stream: IO[str] = path.open("a", encoding="utf-8")
        self._synced = 0.0

    def _compact(self) -> None:
        """Rewrite the file with one line per source, atomically."""
        partial = self.path.with_name(self.path.name + ".coloi-partial")
        with partial.open("w", encoding="utf-8") as stream:
            for entry in self.entries.values():
                stream.write(json.dumps(asdict(entry)) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        partial.replace(self.path)

    def settled(self, source: str, signature: Signature) -> Entry | None:
        """The entry if this version of ``source`` was already done or already failed."""
        entry = self.entries.get(source)
        return (
            entry
            if entry is not None
            and entry.result in ("done", "failed")
            and entry.signature.matches(signature)
            else None
        )

    def record(self, source: str, signature: Signature, result: str, reason: str = "") -> None:
        """A photo's result ("done", "failed"), or "retry": a fault that was not its own.

        Synced to disk at most once a second (a group commit): a line lost to a power cut
        costs nothing, since an output without its line is adopted at the restart and a bad
        photo without its line is only tried once more; an fsync per photo cost the daemon
        a tenth of its speed.
        """
        now = time.monotonic()
        sync = now - self._synced >= SYNC_EVERY
        self._write(
            Entry(source, signature.size, signature.mtime_ns, result, reason, signature.ctime_ns),
            sync=sync,
        )
        if sync:
            self._synced = now

    def begin(self, source: str, signature: Signature) -> None:
        """Note that this version of ``source`` is being read and colourised now.

        Not synced: the line only has to outlive the process (the kernel keeps it), not the
        machine; a second fsync per photo would slow the daemon for nothing.
        """
        previous = self.entries.get(source)
        attempts = 1 + (
            previous.attempts
            if previous is not None
            and previous.result == "started"
            and previous.signature.matches(signature)
            else 0
        )
        self._write(
            Entry(
                source,
                signature.size,
                signature.mtime_ns,
                "started",
                "",
                signature.ctime_ns,
                attempts,
            ),
            sync=False,
        )

    def _write(self, entry: Entry, sync: bool) -> None:
        self.entries[entry.source] = entry
        self._stream.write(json.dumps(asdict(entry)) + "\n")
        self._stream.flush()
        if sync:
            os.fsync(self._stream.fileno())

    def close(self) -> None:
        try:
            try:
                self._stream.flush()
                os.fsync(self._stream.fileno())
            finally:
                self._stream.close()
        finally:
            self._lock.close()  # closing the file lets go of its lock
