"""The watch daemon's memory of what it has done, kept across restarts and crashes.

An append-only file of JSON lines in the output folder, one line per finished photo: its path
relative to the watched folder, the size and mtime it had when it was read, and the result.
A line is written (and synced) only after the output file is complete, so after a crash a photo
is either recorded, or its output was never renamed into place, or (the one gap) its output is
there without a line, which :meth:`Journal.adopt` records without doing the photo again.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from coloi.errors import ColoiError

JOURNAL_NAME = ".coloi-watch-journal.jsonl"


@dataclass(frozen=True)
class Signature:
    """What identifies one version of a file: a changed photo has a new signature."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> Signature:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Entry:
    source: str
    size: int
    mtime_ns: int
    result: str  # "done" or "failed"
    reason: str = ""

    @property
    def signature(self) -> Signature:
        return Signature(self.size, self.mtime_ns)


def _parse(line: bytes) -> Entry | None:
    """The entry on one journal line; None for a line that is not one (cut short by a crash,
    or damaged): that photo is then simply done again, rather than the daemon failing to
    start and systemd restarting it into the same journal for ever."""
    try:
        fields = json.loads(line.decode("utf-8"))
        entry = Entry(**fields)
    except (ValueError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    typed = (isinstance(entry.source, str) and isinstance(entry.reason, str)
             and entry.result in ("done", "failed")
             and all(isinstance(n, int) and not isinstance(n, bool)
                     for n in (entry.size, entry.mtime_ns)))
    return entry if typed else None


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
            raise ColoiError(f"{path.parent}: another coloi watch is already writing to this "
                             f"output folder; stop it first, or choose another folder") from None
        if path.exists():
            for line in path.read_bytes().splitlines():
                entry = _parse(line)
                if entry is not None:
                    self.entries[entry.source] = entry
            self._compact()
        self._stream: IO[str] = path.open("a", encoding="utf-8")

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
        return entry if entry is not None and entry.signature == signature else None

    def record(self, source: str, signature: Signature, result: str, reason: str = "") -> None:
        entry = Entry(source, signature.size, signature.mtime_ns, result, reason)
        self.entries[source] = entry
        self._stream.write(json.dumps(asdict(entry)) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._lock.close()  # closing the file lets go of its lock
