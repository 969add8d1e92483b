"""One rule for which files are photos (coloi.discovery), shared by run, watch, eval and train:
hidden and temporary names and folders are passed over, by ``run`` and by ``watch``, at start
and for live events alike."""

from __future__ import annotations

import threading
from pathlib import Path

from coloi.discovery import find_photos, is_hidden_or_temporary, is_photo_path
from tests.test_watch import outputs, wait_for, write_photo

PHOTOS = ["a.jpg", "sub/b.png", "sub/deeper/c.tif"]
NOT_PHOTOS = [
    ".thumbnails/a.jpg",
    ".hidden.jpg",
    "sub/.cache/x.png",
    "d.jpg.part",
    "upload.tmp/e.jpg",
    "notes.txt",
    "f.jpg~",
    ".g.jpg.coloi-partial",
]


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
    watcher = Watcher(
        watched,
        tmp_path / "watched-out",
        Colouriser("tflite"),
        settle=0.2,
        polling=True,
        poll_interval=0.1,
    )
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


def test_listing_streams_in_sorted_order(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """iter_photos gives exactly sorted(every photo), and its first photo before it has listed
    any other folder: an archive of millions starts at once, in flat memory."""
    import os

    from coloi.discovery import is_photo_name, iter_photos

    names = [
        "a.png",
        "a/b.png",
        "a.b/c.png",
        "a-b/d.png",
        "B/e.png",
        "a/z/f.png",
        "a/y.png",
        "ab.png",
        "a0/g.png",
        "deep/er/than/h.png",
    ]
    make_tree(tmp_path, names + NOT_PHOTOS)
    (tmp_path / "linked").symlink_to(tmp_path / "a")  # a linked folder is not entered
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a broken link is listed
    walked = sorted(
        Path(folder, name)
        for folder, subfolders, files in os.walk(tmp_path)
        if not any(
            part.startswith(".") or part.endswith(".tmp")
            for part in Path(folder).relative_to(tmp_path).parts
        )
        for name in files
        if is_photo_name(name)
    )
    assert list(iter_photos(tmp_path)) == walked
    assert (tmp_path / "gone.png") in walked and len(walked) == len(names) + 1

    listed: list[str] = []
    scandir = os.scandir

    def counting(path):  # type: ignore[no-untyped-def]
        listed.append(os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    first = next(iter_photos(tmp_path))
    assert first == tmp_path / "B" / "e.png"
    assert listed == [str(tmp_path), str(tmp_path / "B")]
