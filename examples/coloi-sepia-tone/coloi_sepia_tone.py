"""The ``sepia-tone`` postprocess step: tone the colourised photo like an old sepia print.

Effect (what the tests measure): every pixel's a*b* becomes
``(1 - amount) * predicted + amount * (SEPIA_A, SEPIA_B)``, so with the default ``amount=1``
the whole photo has the single warm-brown hue of a sepia print (a* = 6, b* = 20, hue angle
about 73 degrees) at its own lightness, and ``amount=0`` leaves the colourised photo as it was.
In between it gives a colour photo with an old-print cast.
"""

from __future__ import annotations

from coloi import hookimpl
from coloi.steps import LabPhoto, Option, PostprocessStep

SEPIA_A = 6.0
SEPIA_B = 20.0


class SepiaTone(PostprocessStep):
    """Blend the predicted colour toward one sepia hue; the lightness is untouched."""

    name = "sepia-tone"
    description = "tone the photo like a sepia print (amount 1 = all sepia, 0 = unchanged)"
    amount = Option(
        float,
        1.0,
        "how far to go from the predicted colour to sepia, 0-1",
        minimum=0.0,
        maximum=1.0,
    )

    def process(self, photo: LabPhoto) -> LabPhoto:
        photo.ab *= 1.0 - self.amount
        photo.ab[:, :, 0] += self.amount * SEPIA_A
        photo.ab[:, :, 1] += self.amount * SEPIA_B
        return photo


@hookimpl
def coloi_register_postprocessors() -> list[type[PostprocessStep]]:
    return [SepiaTone]
