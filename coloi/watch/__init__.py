"""``coloi watch``: colourise every photo that lands in a folder, exactly once.

- At start, the backlog: every photo already there and not yet done; then every new one.
- File events (inotify, or a poller for network filesystems) only mark a path as *pending*;
  a pending photo is read once it has been stable (same size, mtime and ctime) for ``settle``
  seconds, so half-written files, slow writers and scanner programs are never read early.
  Hidden and temporary names (rsync's ``.name.XXXXXX``, ``*.part``...) are ignored until
  renamed (:mod:`coloi.watch.settle`).
- Outputs go to a folder outside the watched one and are written atomically; the journal
  (:mod:`coloi.journal`) records each finished photo, so a restart after a crash neither
  repeats nor loses one. A photo that changes is done again; one that fails is logged and not
  retried until it changes; one that takes the daemon down twice is recorded as failed
  (:mod:`coloi.watch.worker`).
- Links are never followed out of the watched folder, nor into linked subfolders.
- The daemon does not go deaf: a watched folder deleted and made again, a file-event thread
  that dies, or events missed (the inotify watch limit) are noticed, logged and mended by
  watching again or polling; while it cannot watch, it stops reassuring systemd's watchdog
  (:mod:`coloi.watch.sources`, :mod:`coloi.watch.daemon`).
- SIGTERM, SIGINT and SIGHUP finish the current photo and exit 0.
"""

from coloi.watch.daemon import Counts, Watcher

__all__ = ["Counts", "Watcher"]
