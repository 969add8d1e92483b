"""``coloi watch`` on a real folder with real file events: the daemon runs as a real process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from tests.conftest import natural_photo

JOURNAL = ".coloi-watch-journal.jsonl"
COUNT = 120  # enough that a kill lands mid-burst


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def reap_daemons() -> Iterator[None]:
    """A test that fails half-way leaves no daemon running behind it."""
    yield
    while STARTED:
        daemon = STARTED.pop()
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()


def start_daemon(
    watched: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    coloi = Path(sys.executable).parent / "coloi"
    STARTED.append(
        subprocess.Popen(
            [
                str(coloi),
                "watch",
                str(watched),
                "-o",
                str(out),
                "-b",
                "tflite",
                "--settle",
                "0.4",
                "--poll-interval",
                "0.2",
                "--rescan",
                "2",
                *extra,
            ],
            stderr=subprocess.PIPE,
            text=True,
            # Every thread's stack goes to stderr on SIGABRT: see stop().
            env={**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"},
        )
    )
    return STARTED[-1]


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def outputs(out: Path) -> list[str]:
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def stop(daemon: subprocess.Popen[str]) -> str:
    daemon.send_signal(signal.SIGTERM)
    try:
        _, log = daemon.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.send_signal(signal.SIGABRT)  # where it is stuck, for the failure's message
        _, log = daemon.communicate(timeout=30)
        raise AssertionError(f"the daemon did not stop within 30 s of SIGTERM:\n{log}") from None
    assert daemon.returncode == 0, log
    return log


def write_photo(path: Path, seed: int = 0, suffix: str = "") -> None:
    ok, data = cv2.imencode(suffix or path.suffix, natural_photo(seed=seed))
    assert ok
    path.write_bytes(data.tobytes())


@pytest.mark.slow
@pytest.mark.parametrize("polling", [False, True])
def test_every_kind_of_arrival_is_done_once(tmp_path: Path, polling: bool) -> None:
    watched, out, outside = tmp_path / "scans", tmp_path / "out", tmp_path / "elsewhere"
    watched.mkdir()
    outside.mkdir()
    write_photo(watched / "backlog.jpg")
    daemon = start_daemon(watched, out, *(["--polling"] if polling else []))
    try:
        wait_for(lambda: outputs(out) == ["backlog.jpg"])
        # copied in
        write_photo(outside / "copied.png", 1)
        shutil.copy(outside / "copied.png", watched / "copied.png")
        # written slowly, in pieces, over more than the settle time
        _, data = cv2.imencode(".jpg", natural_photo(seed=2))
        blob = data.tobytes()
        with (watched / "slow.jpg").open("wb") as stream:
            for start in range(0, len(blob), len(blob) // 4 + 1):
                stream.write(blob[start : start + len(blob) // 4 + 1])
                stream.flush()
                time.sleep(0.25)
        # rsync-style: a hidden temporary name, then a rename
        write_photo(watched / ".renamed.jpg.Xa81b", 3, ".jpg")
        os.rename(watched / ".renamed.jpg.Xa81b", watched / "renamed.jpg")
        # a whole folder moved in, with nesting
        (outside / "album" / "1950s").mkdir(parents=True)
        write_photo(outside / "album" / "1950s" / "wedding.jpg", 4)
        write_photo(outside / "album" / "cover.png", 5)
        os.rename(outside / "album", watched / "album")
        # a bad file among them
        (watched / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        expected = [
            "album/1950s/wedding.jpg",
            "album/cover.png",
            "backlog.jpg",
            "copied.png",
            "renamed.jpg",
            "slow.jpg",
        ]
        wait_for(lambda: outputs(out) == expected)
        time.sleep(1.0)  # nothing more should happen
        assert outputs(out) == expected
        for name in expected:
            assert cv2.imread(str(out / name)) is not None, name
    finally:
        log = stop(daemon)
    assert "failed broken.jpg" in log and "Traceback" not in log
    done_lines = [line for line in log.splitlines() if " done " in f" {line} "]
    assert len(done_lines) == len(expected), log  # each photo exactly once
    assert not list(out.rglob("*.coloi-partial"))


@pytest.mark.slow
def test_restart_after_kill_repeats_and_loses_nothing(tmp_path: Path) -> None:
    watched, out = tmp_path / "scans", tmp_path / "out"
    watched.mkdir()
    for i in range(COUNT):
        write_photo(watched / f"p{i:03}.png", i)
    daemon = start_daemon(watched, out)
    wait_for(lambda: len(outputs(out)) >= 5)
    daemon.kill()  # SIGKILL, mid-burst
    daemon.wait()
    before = {name: (out / name).stat().st_mtime_ns for name in outputs(out)}
    assert 5 <= len(before) < COUNT
    daemon = start_daemon(watched, out)
    try:
        wait_for(lambda: len(outputs(out)) == COUNT)
        time.sleep(1.0)
    finally:
        log = stop(daemon)
    assert outputs(out) == [f"p{i:03}.png" for i in range(COUNT)]
    for name, mtime in before.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was done again"
        assert f"done {name}" not in log
    assert not list(out.rglob("*.coloi-partial"))
    entries = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    done = [e["source"] for e in entries if e["result"] == "done"]
    assert sorted(done) == [f"p{i:03}.png" for i in range(COUNT)]  # each once


@pytest.mark.slow
def test_changed_photo_is_done_again_and_bad_file_is_not_retried(tmp_path: Path) -> None:
    watched, out = tmp_path / "scans", tmp_path / "out"
    watched.mkdir()
    write_photo(watched / "a.png", 0)
    (watched / "bad.png").write_bytes(b"garbage")
    daemon = start_daemon(watched, out)
    try:
        wait_for(lambda: outputs(out) == ["a.png"])
        first = (out / "a.png").read_bytes()
        time.sleep(0.5)
        write_photo(watched / "a.png", 7)  # new content, new size or mtime
        wait_for(lambda: (out / "a.png").read_bytes() != first)
    finally:
        log = stop(daemon)
    assert log.count("failed bad.png") == 1
    daemon = start_daemon(watched, out)  # a restart does not retry the unchanged bad file
    # A new photo done means the restarted daemon has looked at its backlog (and can be
    # stopped cleanly: a fixed sleep could stop it before it set up its signal handlers).
    write_photo(watched / "c.png", 3)
    wait_for(lambda: "c.png" in outputs(out))
    time.sleep(0.5)
    log = stop(daemon)
    assert "bad.png" not in log and "done a.png" not in log and "done c.png" in log


def test_output_inside_watched_folder_is_refused(cli, tmp_path: Path) -> None:
    result = cli("watch", tmp_path, "-o", tmp_path / "out", "-b", "tflite")
    assert result.exit_code == 1
    assert "overlaps the photo folder" in result.stderr


def test_in_process_watcher_leaks_no_threads(tmp_path: Path) -> None:
    from coloi import Colouriser
    from coloi.watch import Watcher

    colouriser = Colouriser("tflite")  # its model loaded before the threads are counted
    before = set(threading.enumerate())
    watched = tmp_path / "in"
    watched.mkdir()
    write_photo(watched / "x.png")
    watcher = Watcher(watched, tmp_path / "out", colouriser, settle=0.2)
    runner = threading.Thread(target=watcher.run)
    runner.start()
    wait_for(lambda: (tmp_path / "out" / "x.png").exists())
    watcher.stopping.set()
    runner.join(timeout=10)
    assert not runner.is_alive()
    time.sleep(0.2)
    assert set(threading.enumerate()) == before


@pytest.mark.slow
def test_photos_failed_by_a_broken_model_are_done_after_the_fix(tmp_path: Path) -> None:
    """Round 2, fault 2: a fault that is not the photo's (here a model whose manifest gives the
    wrong input size) must not be remembered as the photo's failure."""
    from tests.conftest import MODELS

    broken = tmp_path / "broken-models"
    shutil.copytree(MODELS, broken, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    manifest = json.loads((broken / "manifest.json").read_text())
    for entry in manifest["models"]:
        entry["input_size"] = 128  # the tflite model's input is fixed at 256
    (broken / "manifest.json").write_text(json.dumps(manifest))
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    for i in range(3):
        write_photo(watched / f"p{i}.png", seed=i)
    (watched / "bad.png").write_bytes(b"not a picture")

    # Walks every second: the failed photos are neither redone at once nor taken for photos
    # that file events missed (which turned the daemon to polling and retried every photo
    # at every walk).
    daemon = start_daemon(watched, out, "--model-dir", str(broken), "--rescan", "1")
    wait_for(lambda: (out / JOURNAL).exists() and (out / JOURNAL).read_text().count("bad.png"))
    time.sleep(2.5)
    log = stop(daemon)
    assert log.count("failed p") == 3 and outputs(out) == [], log
    assert "missed" not in log and "polling" not in log, log

    log = stop_after_outputs(start_daemon(watched, out), out, 3)
    assert outputs(out) == ["p0.png", "p1.png", "p2.png"]
    assert "failed bad.png" not in log  # the photo's own fault is remembered: not retried
    assert "0 already done, 1 bad and unchanged" in log, log


def test_a_photo_failed_for_a_reason_not_its_own_is_tried_again_after_a_growing_wait(
    tmp_path: Path,
) -> None:
    """The running daemon tries such a photo again (the model may have been mended) after
    RETRY_FIRST seconds, then after twice as long; a changed photo is done at once."""
    from coloi.journal import Journal, Signature
    from coloi.watch.settle import RETRY_FIRST, Settler

    watched = tmp_path / "in"
    watched.mkdir()
    photo = watched / "a.png"
    write_photo(photo)
    os.utime(photo, (time.time() - 60, time.time() - 60))  # quiet: a walk may take it
    journal = Journal(tmp_path / JOURNAL)
    settler = Settler(watched, journal, settle=0.0, count=lambda _: None)
    signature = Signature.of_stat(photo.stat())
    journal.record("a.png", signature, "retry")

    def walk(now: float) -> bool:
        """Whether a walk at ``now`` marks the photo; it is never a photo events missed."""
        assert settler.mark_unsettled(now) == []
        return settler.pending.pop(photo, None) is not None

    assert not walk(0.0)
    assert not walk(RETRY_FIRST - 1)
    assert walk(RETRY_FIRST + 1)
    journal.record("a.png", signature, "retry")  # failed again: the wait doubles
    assert not walk(RETRY_FIRST + 1 + 2 * RETRY_FIRST - 1)
    assert walk(RETRY_FIRST + 1 + 2 * RETRY_FIRST + 1)
    journal.record("a.png", signature, "retry")
    photo.write_bytes(photo.read_bytes() + b"\0")  # changed: done at the next walk
    os.utime(photo, (time.time() - 60, time.time() - 60))
    assert settler.mark_unsettled(400.0) == [photo]
    journal.close()


def stop_after_outputs(daemon: subprocess.Popen[str], out: Path, count: int) -> str:
    wait_for(lambda: len(outputs(out)) >= count)
    return stop(daemon)


def daemon_after_one_photo(tmp_path: Path) -> tuple[Path, Path, subprocess.Popen[str]]:
    """(watched, out, daemon): a daemon that has done the one photo, a.png, in its folder."""
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    write_photo(watched / "a.png")
    daemon = start_daemon(watched, out)
    wait_for(lambda: outputs(out) == ["a.png"])
    return watched, out, daemon


@pytest.mark.slow
def test_a_second_daemon_on_the_same_output_is_refused(tmp_path: Path) -> None:
    """Round 2, fault 6: two daemons double-processed, and one orphaned the other's journal."""
    watched, out, first = daemon_after_one_photo(tmp_path)
    second = start_daemon(watched, out)
    _, log = second.communicate(timeout=60)
    assert second.returncode != 0
    assert (
        log.strip()
        .splitlines()[-1]
        .endswith(
            "another coloi watch is already writing to this output folder; stop it first, "
            "or choose another folder"
        )
    )
    write_photo(watched / "b.png", seed=1)  # the first goes on, alone
    wait_for(lambda: outputs(out) == ["a.png", "b.png"])
    assert "done b.png" in stop(first)
    # Once the first has stopped, a new daemon may take the folder over.
    again = start_daemon(watched, out)
    write_photo(watched / "c.png", seed=2)
    wait_for(lambda: outputs(out) == ["a.png", "b.png", "c.png"])
    assert "1 colourised" in stop(again)  # c.png only: nothing done twice


@pytest.mark.slow
def test_a_damaged_journal_does_not_stop_the_daemon(tmp_path: Path) -> None:
    """Round 2, fault 7: invalid UTF-8 or a wrongly typed entry made every start fail."""
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    out.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        write_photo(watched / name)
    stat = (watched / "c.png").stat()
    good = {
        "source": "c.png",
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "result": "done",
        "reason": "",
    }
    (out / JOURNAL).write_bytes(
        b'{"source": "a.png", "size": 1, "mtime_ns": 2, "result": "done"}\xff\xfe\n'
        + json.dumps({**good, "source": "b.png", "size": "big"}).encode()
        + b"\n"
        + json.dumps([1, 2]).encode()
        + b"\n"
        + json.dumps(good).encode()
        + b"\n"
    )
    daemon = start_daemon(watched, out)
    wait_for(lambda: outputs(out) == ["a.png", "b.png"])
    log = stop(daemon)
    assert "Traceback" not in log and "done c.png" not in log  # the good entry still counts


@pytest.mark.slow
def test_polling_never_follows_a_linked_folder(tmp_path: Path) -> None:
    """Round 2, fault 5: with --polling, `self -> .` made each new photo arrive again under
    self/, self/self/, ... (41 times)."""
    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    (watched / "self").symlink_to(".", target_is_directory=True)
    (watched / "loop").mkdir()
    (watched / "loop" / "up").symlink_to("..", target_is_directory=True)
    daemon = start_daemon(watched, out, "--polling")
    time.sleep(1.5)
    write_photo(watched / "b.png")
    write_photo(watched / "loop" / "c.png", seed=1)
    wait_for(lambda: len(outputs(out)) >= 2)
    time.sleep(2.0)  # time for any copies under the links to arrive
    log = stop(daemon)
    assert outputs(out) == ["b.png", "loop/c.png"], log


@pytest.mark.slow
def test_sighup_stops_the_daemon_cleanly(tmp_path: Path) -> None:
    """Round 2, fault 12: SIGHUP (a closed terminal) killed the daemon without its last line."""
    _, _, daemon = daemon_after_one_photo(tmp_path)
    daemon.send_signal(signal.SIGHUP)
    _, log = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, log
    assert "1 colourised" in log.strip().splitlines()[-1]
