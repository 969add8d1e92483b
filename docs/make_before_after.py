"""Make docs/before-after.jpg, the README's picture, with the shipped tflite model:

    python docs/make_before_after.py

Rows of grey copy | coloi | original, for sample photos that are not in the training data.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import coloi
from coloi import Photo, read_photo
from coloi.color import to_grey
from coloi.evaluate import contact_sheet, stack_sheets

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")


def main() -> None:
    with coloi.Colouriser(backend="tflite") as colouriser:
        sheet, strip = sheets(colouriser)
    target = REPO / "docs" / "before-after.jpg"
    cv2.imwrite(str(target), stack_sheets([sheet, strip]), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {target}")


def sheets(colouriser: coloi.Colouriser) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for name in PHOTOS:
        truth = read_photo(REPO / "samples" / name).pixels
        grey = to_grey(truth)
        coloured = colouriser.colourise(Photo(grey, "jpeg")).pixels
        rows.append((cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), coloured, truth))
    sheet = contact_sheet(rows, height=220)
    camera = read_photo(REPO / "samples" / "camera.png").pixels
    camera_out = colouriser.colourise(Photo(camera, "png")).pixels
    strip = contact_sheet(
        [(cv2.cvtColor(camera, cv2.COLOR_GRAY2BGR), camera_out, np.full_like(camera_out, 255))],
        height=220,
    )
    return sheet, strip


if __name__ == "__main__":
    main()
