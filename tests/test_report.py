"""What ``coloi run`` reports, whichever engine runs it (here the local one): the ``--report``
JSON Lines file of failures, the progress bar's counts, and the temporary files an interrupted
run left, which the next run removes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import cv2

from coloi.imageio import _partial_prefix
from tests.conftest import natural_photo


def scans_with_bad_files(root: Path) -> Path:
    scans = root / "scans"
    (scans / "sub").mkdir(parents=True)
    cv2.imwrite(str(scans / "a.png"), natural_photo(seed=1))
    cv2.imwrite(str(scans / "sub" / "b.jpg"), natural_photo(seed=2))
    (scans / "sub" / "empty.png").write_bytes(b"")
    (scans / "notes.jpg").write_text("not a photo")
    return scans


def test_report_has_one_json_line_per_failure(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scans = scans_with_bad_files(tmp_path)
    report = tmp_path / "failures.jsonl"
    report.write_text("an old report, replaced\n")
    result = cli("run", "-b", "tflite", scans, "-o", tmp_path / "out", "--report", report)
    assert result.exit_code == 1
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted((Path(row["path"]).name, row["error"], row["reason"]) for row in rows) == [
        ("empty.png", "UnreadablePhoto", "empty file"),
        ("notes.jpg", "NotAPhoto", "not an image, or an unsupported format"),
    ]
    for row in rows:  # the very lines printed on stderr
        assert f"{row['path']}: {row['reason']}" in result.stderr
        assert row["source"] == row["path"]
        assert row["output"] == str(tmp_path / "out" / Path(row["path"]).relative_to(scans))
    assert len(result.stdout.splitlines()) == 2


def test_report_of_a_run_without_failures_is_empty(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), natural_photo())
    report = tmp_path / "report.jsonl"
    assert (
        cli("run", "-b", "tflite", photo, "-o", tmp_path / "out", "--report", report).exit_code == 0
    )
    assert report.read_text() == ""


def test_report_refuses_a_photo_name_and_a_folder(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), natural_photo())
    before = photo.read_bytes()
    result = cli("run", "-b", "tflite", photo, "-o", tmp_path / "out", "--report", photo)
    assert result.exit_code == 1
    assert "--report takes a JSON Lines file (report.jsonl), not a photo's name" in result.stderr
    assert photo.read_bytes() == before and not (tmp_path / "out").exists()
    result = cli("run", "-b", "tflite", photo, "-o", tmp_path / "out", "--report", tmp_path)
    assert result.exit_code == 1 and "must name a file, not a folder" in result.stderr
    result = cli(
        "run",
        "-b",
        "tflite",
        photo,
        "-o",
        tmp_path / "out",
        "--report",
        tmp_path / "missing" / "r.jsonl",
    )
    assert result.exit_code == 1 and "cannot write the report" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_engine(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", "--engine", "spark", tmp_path, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "--engine spark: choose one of local, ray" in result.stderr


def test_leftovers_of_an_interrupted_run_are_removed(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run killed mid-write leaves a hidden temporary file beside the output it was writing;
    the next run into that folder removes it, and nothing else."""
    scans = scans_with_bad_files(tmp_path)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    leftovers = [
        # Written by a process of another machine (host 0badc0de): taken for dead.
        out / f"{_partial_prefix(out / 'a.png')}0badc0de-4242-0123abcd.coloi-partial",
        out
        / "sub"
        / (_partial_prefix(out / "sub" / "b.jpg") + "0badc0de-4243-89abcdef.coloi-partial"),
    ]
    kept = [
        out / ".coloi-journal.json.coloi-partial",  # not a photo's temporary name
        out / "sub" / ".notes.txt",
        out / "keep.coloi-partial",
    ]
    for path in leftovers + kept:
        path.write_bytes(b"x")
    result = cli("run", "-b", "tflite", scans, "-o", out, "--skip-existing")
    assert result.exit_code == 1  # the two bad files
    assert not any(path.exists() for path in leftovers)
    assert all(path.exists() for path in kept)
    assert "removed 1 temporary file(s) left by an interrupted run" in result.stderr
    assert (out / "a.png").is_file() and (out / "sub" / "b.jpg").is_file()


def test_progress_bar_counts_done_and_failed(tmp_path: Path) -> None:
    """On a terminal, the bar shows photos done, failed and photos per second."""
    scans = scans_with_bad_files(tmp_path)
    controller, terminal = pty.openpty()
    coloi = Path(sys.executable).parent / "coloi"
    process = subprocess.Popen(
        [str(coloi), "run", "-b", "tflite", str(scans), "-o", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(terminal)
    process.communicate(timeout=120)
    drawn = b""
    try:
        while chunk := os.read(controller, 65536):
            drawn += chunk
    except OSError:  # the terminal closed with the process
        pass
    os.close(controller)
    assert process.returncode == 1
    assert b"2 done, 2 failed" in drawn and b"photos/s" in drawn
    assert b"4/4" in drawn  # the total, once the folders were listed
