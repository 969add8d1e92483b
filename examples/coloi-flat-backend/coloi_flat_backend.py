"""The ``flat`` backend: predicts one constant a*b* for every pixel of every photo.

By default that is a warm brown (a* = 10, b* = 22), which turns any grey photo into a toned
print at its own lightness; the backend options ``a`` and ``b`` pick another colour
(``--backend flat:a=0,b=0`` gives the grey photo back, ``flat:a=-10,b=-30`` a cold blue). It
needs no model and no framework, which makes it the smallest complete backend to start a real
one from, and a fast stand-in in tests.
"""

from __future__ import annotations

import numpy as np

from coloi import hookimpl
from coloi.backend import Backend, BackendSettings
from coloi.options import Option


class FlatBackend(Backend):
    name = "flat"
    description = "one constant colour everywhere (options a, b; default warm brown)"
    # coloi parses and checks these before __init__ runs: a bad value is a one-line error.
    a = Option(float, 10.0, "a*: green (negative) to red (positive)", minimum=-128, maximum=127)
    b = Option(float, 22.0, "b*: blue (negative) to yellow (positive)", minimum=-128, maximum=127)

    def __init__(self, settings: BackendSettings) -> None:
        # Made once per run, like a model would be loaded once.
        self.ab = np.array((self.a, self.b), np.float32)

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
