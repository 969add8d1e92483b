"""Round 2 of the reader and the batch (issue 12): crafted files that stalled or fooled the
reader, trees and names that broke discovery and output naming, manifests, models, config
files and plugins that hung or crashed start-up, and interrupted runs.

Each test reproduces one fault with the real reader, the real ``coloi`` command or the real
backends on the shipped models.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coloi.errors import UnreadablePhoto
from coloi.imageio import read_photo
from tests.conftest import natural_photo, run_coloi


def _in_subprocess(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh interpreter, so that a hang is a timeout, not a stuck
    test run."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- fault 4: a TIFF whose chain of pages (IFDs) is absurdly long, or loops ------------------


def _tiff_chain(pages: int, loop: bool = False) -> bytes:
    """A little-endian TIFF of ``pages`` IFDs, each a 1x1 picture that declares only its
    size and where its pixel is (42 bytes an IFD, 8.4 MB for 200,000), chained one after
    another. With ``loop``, the last IFD points back at the
    first."""
    first = [
        (256, 3, 1, 1),
        (257, 3, 1, 1),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 0),
        (278, 3, 1, 1),
        (279, 4, 1, 1),
    ]
    first_size = 2 + 12 * len(first) + 4
    other_size = 2 + 12 * 3 + 4
    pixel_at = 8 + first_size + other_size * (pages - 1)
    data = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(first)))
    for tag, kind, count, value in first:
        data += struct.pack("<HHII", tag, kind, count, pixel_at if tag == 273 else value)
    data += struct.pack("<I", 8 + first_size if pages > 1 else 0)
    for index in range(1, pages):
        position = 8 + first_size + other_size * (index - 1)
        following = position + other_size if index < pages - 1 else (8 if loop else 0)
        data += struct.pack(
            "<HHHIIHHIIHHII", 3, 256, 3, 1, 1, 257, 3, 1, 1, 273, 4, 1, pixel_at
        ) + struct.pack("<I", following)
    return bytes(data + b"\x80")


def test_a_tiff_with_200000_pages_is_refused_at_once(tmp_path: Path) -> None:
    crafted = tmp_path / "chain.tif"
    crafted.write_bytes(_tiff_chain(200_000))
    # Pillow alone counts these pages in minutes; the timeout makes that a failure, not a hang.
    result = _in_subprocess(
        "import sys; from pathlib import Path; from coloi.imageio import read_photo\n"
        f"try: read_photo(Path({str(crafted)!r}))\n"
        "except Exception as error: print(type(error).__name__, error)\n",
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("UnreadablePhoto") and "chain.tif" in line
    assert "pages" in line and "\n" not in line


def test_a_tiff_whose_pages_loop_is_refused(tmp_path: Path) -> None:
    crafted = tmp_path / "loop.tif"
    crafted.write_bytes(_tiff_chain(3, loop=True))
    with pytest.raises(UnreadablePhoto, match=r"loop\.tif: .*loops"):
        read_photo(crafted)


def test_a_one_page_tiff_of_the_same_layout_is_read(tmp_path: Path) -> None:
    single = tmp_path / "one.tif"
    single.write_bytes(_tiff_chain(1))
    assert read_photo(single).pixels.shape == (1, 1)
