"""Make docs/repair-sheet.jpg: real damaged prints before, after ``--pre auto`` (repair, then
unfade) and after colour, with the shipped tflite model:

    python docs/make_repair_sheet.py ../shared/old-prints

The prints are the scans in the project's shared old-prints folder (from the repository
microsoft/Bringing-Old-Photos-Back-to-Life, MIT licence, Copyright (c) Microsoft Corporation,
folder test_images/; see that folder's README). They are not copied into the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

import coloi
from coloi import Photo, read_photo
from coloi.color import to_grey
from coloi.evaluate import contact_sheet
from coloi_plugins.preprocess import Auto

REPO = Path(__file__).resolve().parents[1]
PRINTS = (
    "old_w_scratch_a.png",
    "old_w_scratch_b.png",
    "old_w_scratch_c.png",
    "old_w_scratch_d.png",
    "old_b.png",
)


def main() -> None:
    folder = Path(sys.argv[1])
    rows = []
    with coloi.Colouriser(backend="tflite", pre=["auto"]) as colouriser:
        for name in PRINTS:
            photo = read_photo(folder / name)
            grey = to_grey(photo.pixels)
            if grey.dtype != np.uint8:
                grey = (grey >> 8).astype(np.uint8)
            repaired = Auto().process(grey.astype(np.float32) / 255.0)
            repaired8 = np.clip(repaired * 255.0 + 0.5, 0, 255).astype(np.uint8)
            coloured = colouriser.colourise(Photo(grey, "png")).pixels[:, :, :3]
            rows.append(
                (
                    cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR),
                    cv2.cvtColor(repaired8, cv2.COLOR_GRAY2BGR),
                    coloured,
                )
            )
    target = REPO / "docs" / "repair-sheet.jpg"
    cv2.imwrite(str(target), contact_sheet(rows, height=300), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
