"""Make docs/before-after.jpg, the README's picture, with the shipped tflite model:

    python docs/make_before_after.py

Rows of grey copy | coloi | original, for sample photos that are not in the training data.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from coloi.backend import BackendSettings
from coloi.color import to_grey
from coloi.evaluate import contact_sheet
from coloi.imageio import Photo, read_photo
from coloi.pipeline import Colouriser
from coloi.plugin_host import get_registry

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")


def main() -> None:
    colouriser = Colouriser(get_registry().backend("tflite")(BackendSettings()))
    rows = []
    for name in PHOTOS:
        truth = read_photo(REPO / "samples" / name).pixels
        grey = to_grey(truth)
        coloured = colouriser.colourise(Photo(grey, "jpeg"))
        rows.append((cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), coloured, truth))
    sheet = contact_sheet(rows, height=220)
    camera = read_photo(REPO / "samples" / "camera.png").pixels
    camera_out = colouriser.colourise(Photo(camera, "png"))
    strip = contact_sheet([(cv2.cvtColor(camera, cv2.COLOR_GRAY2BGR), camera_out,
                            np.full_like(camera_out, 255))], height=220)
    width = max(sheet.shape[1], strip.shape[1])
    pad = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255)
           for s in (sheet, strip)]
    target = REPO / "docs" / "before-after.jpg"
    cv2.imwrite(str(target), np.vstack(pad), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
