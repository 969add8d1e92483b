"""``coloi watch``, round 2: the daemon must not go deaf, stall on one file, rescan whole
folders for each arrival, miss a replaced photo, or let a file name forge a log line. Each test
reproduces a fault found by the adversarial run (issue 12) on a real daemon and real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_plugin_control import fake_distribution
from tests.test_watch import (
    JOURNAL,
    daemon_after_one_photo,
    outputs,
    reap_daemons,  # noqa: F401 (an autouse fixture: it must be in this module's namespace)
    start_daemon,
    stop,
    wait_for,
    write_photo,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("polling", [False, True])
def test_a_watched_folder_deleted_and_made_again_is_watched_again(
    tmp_path: Path, polling: bool
) -> None:
    """Fault 3a: after `rm -r inbox; mkdir inbox` nothing new was ever done, silently."""
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    write_photo(watched / "a.png")
    daemon = start_daemon(watched, out, *(["--polling"] if polling else []))
    wait_for(lambda: outputs(out) == ["a.png"])
    shutil.rmtree(watched)
    time.sleep(1.5)
    watched.mkdir()
    write_photo(watched / "b.png", seed=1)
    try:
        wait_for(lambda: "b.png" in outputs(out), timeout=20)
    finally:
        log = stop(daemon)
    assert "the watched folder is gone" in log or "was replaced" in log, log


def test_a_very_deep_tree_moved_in_does_not_make_the_daemon_deaf(tmp_path: Path) -> None:
    """Fault 3b: a tree 1,500 levels deep killed watchdog's thread (RecursionError); the
    daemon lived on and heard nothing more."""
    watched, out, daemon = daemon_after_one_photo(tmp_path)
    deep = tmp_path / "deep"
    level = deep
    for _ in range(1500):  # one by one: os.makedirs itself recurses
        level = level / "d"
        level.mkdir(parents=level.parent == deep)
    os.rename(deep, watched / "deep")
    time.sleep(2.0)
    write_photo(watched / "after.png", seed=2)
    try:
        wait_for(lambda: "after.png" in outputs(out), timeout=20)
    finally:
        log = stop(daemon)
        remove_deep(watched / "deep")
    assert "Traceback" not in log


def remove_deep(top: Path) -> None:
    """Remove a chain of nested folders deepest first (shutil.rmtree recurses, and pytest's
    clean-up of old temporary folders would die of RecursionError on it)."""
    levels = [top]
    while (levels[-1] / "d").is_dir():
        levels.append(levels[-1] / "d")
    for level in reversed(levels):
        level.rmdir()


def test_photos_in_folders_inotify_cannot_watch_are_still_done(tmp_path: Path) -> None:
    """Fault 3c: with more folders than fs.inotify.max_user_watches, photos in the unwatched
    ones were never done, without a warning."""
    limit_file = Path("/proc/sys/fs/inotify/max_user_watches")
    if not os.access(limit_file, os.W_OK):
        pytest.skip("the inotify watch limit cannot be changed here (needs root)")
    watched, out, daemon = daemon_after_one_photo(tmp_path)
    limit = limit_file.read_text()
    try:
        limit_file.write_text("64")
        for i in range(200):
            (watched / f"f{i:03}").mkdir()
        time.sleep(0.5)
        write_photo(watched / "f199" / "late.png", seed=3)
        time.sleep(0.5)
    finally:
        limit_file.write_text(limit)
    try:
        # The daemon walks the folder for photos that events missed (here every 2 s).
        wait_for(lambda: "f199/late.png" in outputs(out), timeout=30)
    finally:
        log = stop(daemon)
    assert "missed" in log and "polling" in log, log


KILLER = '''
import os, signal
from coloi import hookimpl
from coloi.steps import PreprocessStep

class Killer(PreprocessStep):
    """Takes the whole process down on a photo 77 pixels wide, like a decoder crash."""
    name = "killer"

    def process(self, grey):
        if grey.shape[1] == 77:
            os.kill(os.getpid(), signal.SIGKILL)
        return grey

@hookimpl
def coloi_register_preprocessors():
    return [Killer]
'''


def test_a_photo_that_kills_the_daemon_twice_is_given_up(tmp_path: Path) -> None:
    """Fault 4: a photo that killed the worker was read again at every restart, so nothing
    behind it was ever done (systemd restarted it into the same file for ever)."""
    import cv2

    from tests.conftest import natural_photo

    site = fake_distribution(
        tmp_path / "site", "coloi-killer", {"killer": "coloi_killer"}, {"coloi_killer": KILLER}
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")])),
    }
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    cv2.imwrite(str(watched / "poison.png"), natural_photo(60, 77))

    def restart() -> tuple[int, str]:
        daemon = start_daemon(watched, out, "--pre", "killer", env=env)
        try:
            _, log = daemon.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # it did not die: the photo was skipped
            return 0, stop(daemon)
        return daemon.returncode, log

    assert restart()[0] == -signal.SIGKILL  # the crash
    assert restart()[0] == -signal.SIGKILL  # tried once more, in case it was not the photo
    for i in range(2):
        write_photo(watched / f"good{i}.png", seed=i)
    daemon = start_daemon(watched, out, "--pre", "killer", env=env)
    try:
        wait_for(lambda: outputs(out) == ["good0.png", "good1.png"], timeout=30)
    finally:
        log = stop(daemon)
    assert "1 bad and unchanged" in log, log
    entries = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    poison = [e for e in entries if e["source"] == "poison.png"][-1]
    assert poison["result"] == "failed" and "stopped 2 times" in poison["reason"]


def test_a_photo_replaced_with_the_same_size_and_mtime_is_done_again(tmp_path: Path) -> None:
    """Fault 8: a photo replaced by another of the same size, its mtime copied over (`cp -p`,
    `rsync -t`), was taken for the one already done, live and after a restart."""
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    write_photo(watched / "a.bmp", seed=1)  # BMP: the size depends only on the dimensions
    write_photo(watched / "b.bmp", seed=1)
    daemon = start_daemon(watched, out)
    wait_for(lambda: outputs(out) == ["a.bmp", "b.bmp"])
    first = (out / "a.bmp").read_bytes()

    def replace(name: str, seed: int) -> None:
        old = (watched / name).stat()
        write_photo(tmp_path / name, seed=seed)
        assert (tmp_path / name).stat().st_size == old.st_size
        os.utime(tmp_path / name, ns=(old.st_atime_ns, old.st_mtime_ns))
        os.replace(tmp_path / name, watched / name)

    replace("a.bmp", 2)  # while the daemon runs
    wait_for(lambda: (out / "a.bmp").read_bytes() != first, timeout=20)
    stop(daemon)
    second = (out / "b.bmp").read_bytes()
    replace("b.bmp", 3)  # while it is stopped
    daemon = start_daemon(watched, out)
    try:
        wait_for(lambda: (out / "b.bmp").read_bytes() != second, timeout=20)
    finally:
        stop(daemon)


def test_an_arrival_does_not_make_the_daemon_walk_its_folder_again(tmp_path: Path) -> None:
    """Fault 10: each photo arriving in a folder of 20,000 done photos re-walked all of them
    (a directory's "modified" event was taken for "look at everything in it")."""
    watched, out = tmp_path / "in", tmp_path / "out"
    (watched / "sub").mkdir(parents=True)
    out.mkdir()
    lines = []
    for i in range(300):  # done before: the journal says so
        photo = watched / "sub" / f"old{i:03}.png"
        photo.write_bytes(b"done long ago")
        stat = photo.stat()
        lines.append(
            json.dumps(
                {
                    "source": f"sub/old{i:03}.png",
                    "size": stat.st_size,
                    "mtime_ns": stat.st_mtime_ns,
                    "result": "done",
                }
            )
        )
    (out / JOURNAL).write_text("\n".join(lines) + "\n")
    daemon = start_daemon(watched, out)
    time.sleep(1.5)
    try:
        for i in range(4):  # one at a time, each settled and done before the next
            write_photo(watched / "sub" / f"new{i}.png", seed=i)
            wait_for(lambda: len(outputs(out)) == i + 1, timeout=30)  # noqa: B023
            time.sleep(1.0)
    finally:
        log = stop(daemon)
    # Each old photo is looked at once, at start, and not once more per arrival.
    assert "4 colourised, 0 failed, 300 already done" in log, log


def test_a_new_line_in_a_file_name_cannot_forge_a_log_line(tmp_path: Path) -> None:
    """Fault 12: a name with a newline wrote a second, fake line into the log."""
    watched, out, daemon = daemon_after_one_photo(tmp_path)
    (watched / "x\ncoloi: done forged.png").write_bytes(b"not a photo")
    write_photo(watched / "b.png", seed=1)
    wait_for(lambda: "b.png" in outputs(out))
    time.sleep(1.0)
    log = stop(daemon)
    assert not any(line.startswith("coloi: done forged") for line in log.splitlines()), log
    assert "failed 'x\\ncoloi: done forged.png'" in log, log


def test_hidden_folders_are_ignored_for_live_events_as_for_the_backlog(tmp_path: Path) -> None:
    """Fault 8: photos arriving in `.thumbnails/` or `.Trash-0/` were colourised live, though
    the backlog skips them."""
    watched, out, daemon = daemon_after_one_photo(tmp_path)
    for folder in (".thumbnails/normal", ".Trash-0/files"):
        (watched / folder).mkdir(parents=True)
        write_photo(watched / folder / "t.png")
    time.sleep(0.5)
    write_photo(watched / "b.png", seed=1)
    wait_for(lambda: "b.png" in outputs(out))
    time.sleep(1.0)
    stop(daemon)
    assert outputs(out) == ["a.png", "b.png"]


def test_the_watch_count_includes_hidden_folders_and_skips_linked_ones(tmp_path: Path) -> None:
    """inotify needs a watch for hidden folders too (their photos are skipped, not their
    events), so counting only the visible ones underestimated the watches a tree needs."""
    from coloi.watch.sources import folder_count

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".cache" / "thumbs").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "photo.png").write_bytes(b"")
    assert folder_count(tmp_path) == 5  # the root, a, a/b, .cache, .cache/thumbs
