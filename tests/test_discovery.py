"""One rule for which files are photos (coloi.discovery), shared by run, watch, eval and train:
hidden and temporary names and folders are passed over, by ``run`` and by ``watch``, at start
and for live events alike."""

from __future__ import annotations

import threading
from pathlib import Path

from coloi.discovery import find_photos, is_hidden_or_temporary, is_photo_path
from tests.test_watch import outputs, wait_for, write_photo

PHOTOS = ["a.jpg", "sub/b.png", "sub/deeper/c.tif"]
NOT_PHOTOS = [".thumbnails/a.jpg", ".hidden.jpg", "sub/.cache/x.png", "d.jpg.part",
              "upload.tmp/e.jpg", "notes.txt", "f.jpg~", ".g.jpg.coloi-partial"]


def make_tree(root: Path, names: list[str], seed: int = 0) -> None:
    for number, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix if path.suffix in (".jpg", ".png", ".tif") else ".png"
        write_photo(path, seed=seed + number, suffix=suffix)


def test_the_rule(tmp_path: Path) -> None:
    make_tree(tmp_path, PHOTOS + NOT_PHOTOS)
    assert [p.relative_to(tmp_path).as_posix() for p in find_photos(tmp_path)] == sorted(PHOTOS)
    assert is_hidden_or_temporary(".thumbnails") and is_hidden_or_temporary("x.crdownload")
    assert not is_photo_path(tmp_path / ".thumbnails" / "a.jpg", tmp_path)
    assert is_photo_path(tmp_path / "sub" / "b.png", tmp_path)


def test_run_skips_hidden_folders(cli, tmp_path: Path) -> None:
    make_tree(tmp_path / "scans", PHOTOS + NOT_PHOTOS)
    result = cli("run", "-b", "tflite", tmp_path / "scans", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert outputs(tmp_path / "out") == sorted(PHOTOS)


def test_run_and_watch_agree(cli, tmp_path: Path) -> None:
    """The same tree, half there at start (the backlog) and half arriving while watched, gives
    the same photos to ``run`` and to ``watch``."""
    from coloi import Colouriser
    from coloi.watch import Watcher

    watched = tmp_path / "scans"
    at_start = PHOTOS[:1] + NOT_PHOTOS[:4]
    later = PHOTOS[1:] + NOT_PHOTOS[4:] + [".thumbnails/late.jpg", "sub/.cache/late.png"]
    make_tree(watched, at_start)
    watcher = Watcher(watched, tmp_path / "watched-out", Colouriser("tflite"), settle=0.2,
                      polling=True, poll_interval=0.1)
    runner = threading.Thread(target=watcher.run)
    runner.start()
    try:
        wait_for(lambda: outputs(tmp_path / "watched-out") == PHOTOS[:1])
        make_tree(watched, later, seed=10)
        wait_for(lambda: len(outputs(tmp_path / "watched-out")) >= len(PHOTOS))
        wait_for(lambda: not watcher.settler.pending)  # every live event has been looked at
    finally:
        watcher.stopping.set()
        runner.join(timeout=30)
    assert cli("run", "-b", "tflite", watched, "-o", tmp_path / "run-out").exit_code == 0
    assert outputs(tmp_path / "watched-out") == outputs(tmp_path / "run-out") == sorted(PHOTOS)
