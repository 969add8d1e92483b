"""Where the daemon hears about new and changed files: inotify (through watchdog) or a poller,
and how it tells that it has gone deaf.

Each source only hands paths to a queue; the main loop decides what they mean. Directory
"modified" events are dropped: every file arriving in a folder also modifies the folder, and
treating that as "look at the whole folder" re-walked it for every arrival (round 2, fault 10).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from types import TracebackType

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from coloi.discovery import walk_photos
from coloi.journal import Signature

log = logging.getLogger("coloi")
MAX_USER_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")


class EventsToQueue(FileSystemEventHandler):
    """Hands every path an event touches to the main loop."""

    def __init__(self, paths: queue.SimpleQueue[Path]) -> None:
        self.paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads, our own included, change nothing
        if event.is_directory and event.event_type in ("modified", "closed"):
            return  # a file in it changed: that file has its own event
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self.paths.put(Path(os.fsdecode(raw)))


class Source:
    """One way of hearing about files; :meth:`problem` says why it no longer hears."""

    def stop(self) -> None:
        raise NotImplementedError

    def problem(self) -> str | None:
        raise NotImplementedError


class InotifySource(Source):
    def __init__(self, root: Path, paths: queue.SimpleQueue[Path]) -> None:
        self.observer: BaseObserver = Observer()
        self.observer.schedule(EventsToQueue(paths), str(root), recursive=True)
        self.observer.start()  # OSError: no inotify, or no watches left for the root

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=10)

    def problem(self) -> str | None:
        if not self.observer.is_alive():
            return "the file-event thread stopped"
        return None


class PollingSource(Source):
    """Walks the folder every ``interval`` seconds and queues photos whose signature changed.

    For network filesystems, where inotify hears nothing of other machines' writes, and as
    the fallback when inotify fails. Its walk (:func:`coloi.discovery.walk_photos`) never
    follows a link and keeps its own stack, so no tree makes it loop or overflow.
    """

    def __init__(self, root: Path, paths: queue.SimpleQueue[Path], interval: float) -> None:
        self.root, self.paths, self.interval = root, paths, interval
        self._stopping = threading.Event()
        self._seen = self._snapshot()
        self._thread = threading.Thread(target=self._run, name="coloi-poller", daemon=True)
        self._thread.start()

    def _snapshot(self) -> dict[Path, Signature]:
        return {path: Signature.of_stat(stat) for path, stat in walk_photos(self.root)}

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            current = self._snapshot()
            for path, signature in current.items():
                if self._seen.get(path) != signature:
                    self.paths.put(path)
            self._seen = current

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def problem(self) -> str | None:
        return None if self._thread.is_alive() else "the polling thread stopped"


def folder_count(root: Path) -> int:
    """How many folders inotify would need a watch for: every real folder under ``root``,
    hidden ones included (the observer watches them too, though discovery skips their
    photos); linked folders are not followed."""
    count, stack = 1, [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                folders = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        count += len(folders)
        stack += folders
    return count


def watch_limit() -> int | None:
    """The kernel's inotify watch limit for this user, when it can be read."""
    try:
        return int(MAX_USER_WATCHES.read_text())
    except (OSError, ValueError):
        return None


def start_source(
    root: Path, paths: queue.SimpleQueue[Path], polling: bool, interval: float
) -> Source:
    """inotify unless ``polling`` is asked for or inotify cannot cover the folder; else
    the poller, with a warning saying why."""
    if not polling:
        limit, folders = watch_limit(), folder_count(root)
        if limit is not None and folders > limit // 2:
            log.warning(
                "%s has %d folders, too many for inotify's limit of %d watches "
                "(fs.inotify.max_user_watches); polling every %.1f s instead",
                root,
                folders,
                limit,
                interval,
            )
        else:
            try:
                return InotifySource(root, paths)
            except OSError as error:
                log.warning(
                    "inotify unavailable (%s); polling %s every %.1f s",
                    error.strerror or error,
                    root,
                    interval,
                )
    return PollingSource(root, paths, interval)


class ThreadDeaths:
    """Notes exceptions that end any thread while installed (watchdog's threads die silently
    from a RecursionError on a very deep tree, and then nothing is heard any more)."""

    def __init__(self) -> None:
        self.deaths: list[str] = []
        self._previous = threading.excepthook

    def __enter__(self) -> ThreadDeaths:
        threading.excepthook = self._hook
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        threading.excepthook = self._previous

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "a thread"
        self.deaths.append(f"{name} died of {args.exc_type.__name__}: {args.exc_value}")
