"""The ``flat`` backend: predicts one constant a*b* for every pixel of every photo.

By default that is a warm brown (a* = 10, b* = 22), which turns any grey photo into a toned
print at its own lightness; ``COLOI_FLAT_AB="a,b"`` picks another colour (``"0,0"`` gives the
grey photo back, ``"-10,-30"`` a cold blue). It needs no model and no framework, which makes it
the smallest complete backend to start a real one from, and a fast stand-in in tests.
"""

from __future__ import annotations

import os

import numpy as np

from coloi import hookimpl
from coloi.backend import Backend, BackendSettings

AB_ENV = "COLOI_FLAT_AB"
WARM_BROWN = (10.0, 22.0)


def _colour() -> tuple[float, float]:
    """The a*b* to predict: $COLOI_FLAT_AB, else warm brown. ValueError if it is malformed."""
    text = os.environ.get(AB_ENV, "").strip()
    if not text:
        return WARM_BROWN
    a, b = (float(part) for part in text.split(","))
    return a, b


class FlatBackend(Backend):
    name = "flat"
    description = f"one constant colour everywhere (${AB_ENV}=a,b; default warm brown)"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        # Checked before the backend is built, so a bad setting is a one-line error.
        try:
            _colour()
        except ValueError:
            return f"${AB_ENV} must be two numbers 'a,b', not {os.environ[AB_ENV]!r}"
        return None

    def __init__(self, settings: BackendSettings) -> None:
        # Read once per run, like a model would be loaded once.
        self.ab = np.array(_colour(), np.float32)

    def input_size(self) -> tuple[int, int]:
        # The colour does not depend on the photo, so the pipeline may shrink it to almost
        # nothing before computing L*: a 12-megapixel scan costs no more than a thumbnail.
        return (2, 2)

    def predict_ab(self, lightness: np.ndarray) -> np.ndarray:
        # Any (h, w) will do: the pipeline stretches the plane to the photo's size.
        return np.broadcast_to(self.ab, (2, 2, 2)).copy()


@hookimpl
def coloi_register_backends() -> list[type[Backend]]:
    return [FlatBackend]
