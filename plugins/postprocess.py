"""coloi's built-in postprocess steps: ``saturation``, ``warmth``, ``chroma-edges`` and
``compare``.

They work on the colourised photo in float32 CIE Lab (:class:`coloi.steps.LabPhoto`) before it
is written, and are registered through the public ``coloi_register_postprocessors`` hook like any
plugin's steps. All work on whole planes in float32 with OpenCV or numpy.
"""

from __future__ import annotations

import cv2
import numpy as np

from coloi import hookimpl
from coloi.steps import LabPhoto, Option, PostprocessStep


class Saturation(PostprocessStep):
    """Multiply the colour (a* and b*) by ``amount``; the lightness is untouched.

    A colourisation model trained to be right on average predicts muted colour wherever it is
    unsure, so its output looks washed out next to real colour film. A modest boost (1.1-1.4)
    makes it look natural; below 1 it tones colour down, and 0 gives the grey photo back.
    """

    name = "saturation"
    description = "scale the colour's chroma (a*b*) by a factor"
    amount = Option(float, 1.2, "chroma factor: 1 = unchanged, 0 = grey", minimum=0.0, maximum=5.0)

    def process(self, photo: LabPhoto) -> LabPhoto:
        photo.ab *= self.amount
        return photo


# How much a* moves with b* in ``warmth``: warm light (tungsten, old prints' paper) lies mostly
# toward yellow (+b*) with a little red (+a*).
_WARMTH_RED = 0.25


class Warmth(PostprocessStep):
    """Shift the colour toward warm (yellow-red) or, with a negative ``amount``, cool (blue).

    Models tend to predict a cold, neutral white balance, while the prints people scan were
    made under warm light on warm paper; a small shift of b* (and a quarter of it on a*) makes
    them feel like their era. ``amount`` is in b* units: 5 is subtle, 15 is strong.
    """

    name = "warmth"
    description = "shift the white balance warmer (amount > 0) or cooler (amount < 0)"
    amount = Option(
        float,
        5.0,
        "b* shift (a* moves a quarter of it); negative = cooler",
        minimum=-60.0,
        maximum=60.0,
    )

    def process(self, photo: LabPhoto) -> LabPhoto:
        photo.ab[:, :, 0] += self.amount * _WARMTH_RED
        photo.ab[:, :, 1] += self.amount
        return photo


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1) square window, for one or several channels; O(1) per pixel."""
    return cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_ab(lightness: np.ndarray, ab: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """a*b* filtered by a guided filter (He et al.) with the L* plane as guide.

    Within each window the colour is fitted as a linear function of L*, so colour edges snap to
    the lightness edges. The fit runs on a copy shrunk by about ``radius / 4`` (the "fast guided
    filter"), and only the fitted coefficients are enlarged: the result still follows the
    full-resolution L*. ``eps`` is in (L*/100)^2: lightness steps smaller than about
    ``100 * sqrt(eps)`` L* are smoothed over rather than followed.
    """
    height, width = lightness.shape
    guide = lightness * np.float32(1.0 / 100.0)
    scale = max(1, radius // 4)
    if scale > 1:
        size = (max(1, round(width / scale)), max(1, round(height / scale)))
        small_guide = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
        small_ab = cv2.resize(ab, size, interpolation=cv2.INTER_AREA)
        small_radius = max(1, round(radius / scale))
    else:
        small_guide, small_ab, small_radius = guide, ab, radius
    mean_g = _box(small_guide, small_radius)
    mean_ab = _box(small_ab, small_radius)
    # In place where possible: at full resolution each (H, W, 2) float32 plane of a
    # 12-megapixel photo is 96 MB.
    var_g = _box(small_guide * small_guide, small_radius)
    var_g -= mean_g * mean_g
    var_g += eps
    slope = _box(small_ab * small_guide[:, :, None], small_radius)
    slope -= mean_ab * mean_g[:, :, None]
    slope /= var_g[:, :, None]
    offset = mean_ab
    offset -= slope * mean_g[:, :, None]
    slope, offset = _box(slope, small_radius), _box(offset, small_radius)
    if scale > 1:
        slope = cv2.resize(slope, (width, height), interpolation=cv2.INTER_LINEAR)
        offset = cv2.resize(offset, (width, height), interpolation=cv2.INTER_LINEAR)
    slope *= guide[:, :, None]
    slope += offset
    return slope


class ChromaEdges(PostprocessStep):
    """Make colour edges follow the photo's lightness edges (an edge-aware colour filter).

    The backend predicts colour at a low resolution (a 256-pixel model gives a 64x64 colour
    grid) which is stretched to the full photo, so on a real scan colour bleeds across edges:
    a red coat tints the wall beside it, sky blue spills onto a roof. A guided filter with the
    full-resolution L* as guide snaps the colour back to the edges that are really there.
    ``radius`` 0 picks a radius that covers the bleeding: 1/64 of the photo's longer side.
    """

    name = "chroma-edges"
    description = "snap colour edges to the lightness edges (guided filter of a*b* by L*)"
    radius = Option(
        int, 0, "window radius in pixels; 0 = automatic (longer side / 64)", minimum=0, maximum=1000
    )
    eps = Option(
        float,
        1e-3,
        "edge threshold in (L*/100)^2: smaller follows weaker edges",
        minimum=1e-6,
        maximum=1.0,
    )

    def process(self, photo: LabPhoto) -> LabPhoto:
        radius = self.radius or max(2, round(max(photo.lightness.shape) / 32))
        photo.ab = guided_ab(photo.lightness, photo.ab, radius, self.eps)
        return photo


class Compare(PostprocessStep):
    """Put the grey photo and the colourised one side by side, for judging the result.

    Useful when choosing a backend, a model or step options on real scans: the same photo with
    a* = b* = 0 (the grey the backend was given, after any preprocess steps) sits left of (or,
    with ``layout=stacked``, above) the colourised one, so the output is twice as wide (or
    tall). Put it last: steps after it see (and change) both halves.
    """

    name = "compare"
    description = "write grey and colourised side by side (or stacked) for comparison"
    layout = Option(
        str, "side", "side (twice as wide) or stacked (twice as tall)", choices=("side", "stacked")
    )

    def process(self, photo: LabPhoto) -> LabPhoto:
        axis = 1 if self.layout == "side" else 0
        lightness = np.concatenate([photo.lightness, photo.lightness], axis=axis)
        ab = np.concatenate([np.zeros_like(photo.ab), photo.ab], axis=axis)
        return LabPhoto(lightness, ab)


@hookimpl
def coloi_register_postprocessors() -> list[type[PostprocessStep]]:
    return [Saturation, Warmth, ChromaEdges, Compare]
