"""Input and output folders that overlap are refused by ``run`` and ``watch`` alike, before any
photo is read or written: an output inside the input, the input inside the output, or the same
folder (round 2, fault 1: ``coloi watch o/in -o o`` replaced the user's ``o/in/x.png``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from tests.conftest import natural_photo, run_coloi


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    """o/in/x.png and o/in/in/x.png: the layout that lost a photo."""
    for folder in (tmp_path / "o" / "in", tmp_path / "o" / "in" / "in"):
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "x.png"), natural_photo(40, 48, seed=len(folder.parts)))
    return tmp_path / "o"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", ["run", "watch"])
@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("in", "."),  # output above the input: in/x.png would be written over in/in/x.png
        ("in", "in"),  # the same folder
        ("in", "in/out"),  # output inside the input
    ],
)
def test_overlapping_folders_are_refused(
    nested: Path, command: str, source: str, target: str
) -> None:
    before = snapshot(nested)
    result = run_coloi(command, nested / source, "-o", nested / target, "-b", "tflite", timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "overlap" in lines[0], result.stderr
    assert snapshot(nested) == before  # nothing read, written or replaced
