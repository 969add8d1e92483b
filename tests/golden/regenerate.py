"""Regenerate the stored expectations after shipping a new model:

    python tests/golden/regenerate.py

For each sample photo, the shipped TensorFlow model's a*b* (what ``tf-gpu`` predicts through
the real pipeline) is stored at 32x32, with the models' sha256 so a stale file is detected.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from coloi.backend import BackendSettings
from coloi.imageio import read_photo
from coloi.models import read_manifest
from coloi.pipeline import Colouriser
from coloi.plugin_host import get_registry

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHOTOS = ("camera.png", "astronaut.jpg", "chelsea.jpg")
SIDE = 32


def predicted_ab(colouriser: Colouriser, name: str) -> np.ndarray:
    """The pipeline's a*b* for a sample photo, reduced to SIDE x SIDE."""
    from coloi.color import to_grey

    photo = read_photo(REPO / "samples" / name)
    ab = colouriser.predict_ab(to_grey(photo.pixels))
    return cv2.resize(ab, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def colour_models() -> dict[str, str]:
    """The sha256 of the shipped colour models by name; ``repair``'s defect detector is left
    out, since it never touches a*b* (and the sample photos pass no preprocess step)."""
    return {m["name"]: m["sha256"] for m in read_manifest(REPO / "models") if m["name"] != "repair"}


def main() -> None:
    colouriser = Colouriser(get_registry().backend("tf-gpu")(BackendSettings()))
    expected = {name: predicted_ab(colouriser, name).round(2).tolist() for name in PHOTOS}
    (HERE / "expected_ab.json").write_text(
        json.dumps({"models": colour_models(), "ab": expected}) + "\n"
    )
    print(f"wrote {HERE / 'expected_ab.json'}")


if __name__ == "__main__":
    main()
