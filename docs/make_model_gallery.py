"""Make models/gallery.jpg, the model card's gallery of failures and of real old prints:

    python docs/make_model_gallery.py ../shared/data/val ../shared/old-prints

Top: the validation photos of freely licensed sources (clothing: CC0; pixabayportrait: Pixabay
Content License; fmjfood Pexels photos) where the shipped tflite model does worst: the most
false colour and the largest loss against the grey copy, as grey | coloi | truth. Bottom: real
old prints (no colour truth) as scan | coloi. The old prints are the test images of
microsoft/Bringing-Old-Photos-Back-to-Life (MIT licence), credited in the model card.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

import coloi
from coloi import Colouriser, Photo, read_photo
from coloi.color import to_grey
from coloi.evaluate import contact_sheet, psnr, score_photo, stack_sheets

REPO = Path(__file__).resolve().parents[1]
FREE_SOURCES = ("clothing_", "pixabayportrait_", "fmjfood_")
OLD_PRINTS = ("old_w_scratch_a.png", "old_b.png", "old_e.png")


def worst(colouriser: Colouriser, val: Path, count: int) -> list[tuple[np.ndarray, ...]]:
    scored = []
    for path in sorted(val.iterdir()):
        if not path.name.startswith(FREE_SOURCES):
            continue
        if path.name.startswith("fmjfood_") and "Pexels" not in _licence(path.name, val):
            continue
        truth = read_photo(path).pixels[:, :, :3]
        grey = cv2.cvtColor(to_grey(truth), cv2.COLOR_GRAY2BGR)
        output = colouriser.colourise(Photo(grey[:, :, 0].copy(), "png")).pixels
        score = score_photo(output, truth)
        loss = psnr(grey, truth) - score.psnr  # > 0: worse than leaving it grey
        scored.append((score.false_colour * 100 + loss, grey, output, truth))
    scored.sort(key=lambda row: -row[0])
    return [row[1:] for row in scored[:count]]


def old_print(colouriser: Colouriser, path: Path) -> tuple[np.ndarray, ...]:
    scan = to_grey(read_photo(path).pixels)
    coloured = colouriser.colourise(Photo(scan, "png")).pixels
    blank = np.full_like(coloured[:, :1], 255)  # an old print has no colour truth
    return cv2.cvtColor(scan, cv2.COLOR_GRAY2BGR), coloured, blank


def _licence(name: str, val: Path) -> str:
    table = val.parent / "attribution_2026-11-28.tsv"
    for line in table.read_text().splitlines():
        if line.startswith(name + "\t"):
            return line
    return ""


def main(val: Path, prints: Path) -> None:
    with coloi.Colouriser(backend="tflite") as colouriser:
        failures = contact_sheet(worst(colouriser, val, 6), height=180)
        rows = [old_print(colouriser, prints / name) for name in OLD_PRINTS]
    sheet = stack_sheets([failures, contact_sheet(rows, height=240)], gap=12)
    target = REPO / "models" / "gallery.jpg"
    cv2.imwrite(str(target), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
