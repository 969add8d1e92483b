"""coloi's built-in preprocess steps: ``autolevels``, ``unfade``, ``denoise``, ``crop-border``,
``repair`` (in its own module, plugins/repair.py) and ``auto``, the usual chain for old prints.

They work on the grey photo, (H, W) float32 in [0, 1], before the backend sees it, and are
registered through the public ``coloi_register_preprocessors`` hook like any plugin's steps.
Every step works on whole planes with OpenCV or numpy: on a 12-megapixel scan each takes a
fraction of a second, except ``denoise`` with ``method=nlmeans`` (a few core-seconds).
"""

from __future__ import annotations

import cv2
import numpy as np

from coloi import hookimpl
from coloi.steps import Option, PreprocessStep
from coloi_plugins.repair import Repair

# Histogram bins for percentiles: 1/4096 is finer than an 8-bit level, and a histogram is one
# pass over the photo where np.percentile would sort a copy of it.
_HIST_BINS = 4096


def _percentiles(grey: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles (0-100) of a [0, 1] float32 plane, to 1/4096."""
    hist = cv2.calcHist([grey], [0], None, [_HIST_BINS], [0.0, 1.0 + 1e-6]).ravel()
    cumulative = np.cumsum(hist, dtype=np.float64)
    total = cumulative[-1]
    lo_bin = int(np.searchsorted(cumulative, total * low / 100.0, side="right"))
    hi_bin = int(np.searchsorted(cumulative, total * high / 100.0, side="left"))
    return lo_bin / _HIST_BINS, min(hi_bin + 1, _HIST_BINS) / _HIST_BINS


class AutoLevels(PreprocessStep):
    """Stretch the grey levels so the darkest and brightest percentiles become black and white.

    Old prints fade and scans of them come out flat and grey (a photo may use only 0.3-0.7).
    The model was trained on photos with full contrast, so it recognises sky, skin and foliage
    better, and picks stronger colours, once the range is restored. ``clahe`` adds local
    contrast (CLAHE) for prints that faded unevenly. The stretch is monotonic, so nothing in
    the picture moves; a photo with (almost) a single grey level is left as it is.
    """

    name = "autolevels"
    description = "stretch faded scans to full contrast (percentile clip, optional CLAHE)"
    clip_low = Option(float, 0.5, "percentile that becomes black", minimum=0.0, maximum=49.0)
    clip_high = Option(float, 99.5, "percentile that becomes white", minimum=51.0, maximum=100.0)
    clahe = Option(bool, False, "also equalise local contrast (CLAHE) after the stretch")
    clahe_limit = Option(
        float, 2.0, "CLAHE clip limit: higher = stronger local contrast", minimum=0.1, maximum=40.0
    )

    def process(self, grey: np.ndarray) -> np.ndarray:
        low, high = _percentiles(grey, self.clip_low, self.clip_high)
        out = grey
        if high - low > 1.0 / 256:  # a flat photo has no range to stretch
            out = np.subtract(grey, np.float32(low), dtype=np.float32)
            out *= 1.0 / (high - low)
            np.clip(out, 0.0, 1.0, out=out)
        if self.clahe:
            # CLAHE needs integers; 16 bits keeps the precision of 16-bit scans.
            clahe = cv2.createCLAHE(clipLimit=self.clahe_limit, tileGridSize=(8, 8))
            levels = clahe.apply((out * 65535.0 + 0.5).astype(np.uint16))
            out = levels.astype(np.float32)
            out *= 1.0 / 65535.0
        return out


class Denoise(PreprocessStep):
    """Remove film grain and scanner noise before colourisation.

    Grain is high-frequency texture the model never saw in its clean training photos; it makes
    the predicted colour blotchy and pulls it toward grey. ``nlmeans`` (OpenCV's non-local
    means) keeps edges and fine detail best; ``bilateral`` is several times faster on very large
    scans. Both work on an 8-bit copy, and only the removed noise is subtracted from the
    photo, so the sub-8-bit smoothness of a 16-bit scan survives.
    """

    name = "denoise"
    description = "remove grain and scanner noise (non-local means or bilateral filter)"
    strength = Option(
        float,
        6.0,
        "noise to remove, in 8-bit grey levels (about the noise's standard deviation)",
        minimum=0.0,
        maximum=50.0,
    )
    method = Option(
        str,
        "nlmeans",
        "nlmeans (best detail) or bilateral (fastest)",
        choices=("nlmeans", "bilateral"),
    )

    def process(self, grey: np.ndarray) -> np.ndarray:
        if self.strength <= 0:
            return grey
        levels = cv2.convertScaleAbs(grey, alpha=255.0)
        if self.method == "nlmeans":
            # An 11-pixel search window instead of OpenCV's 21 is about 3x faster and
            # removes grain as well; the larger window only helps with repeating textures.
            clean = cv2.fastNlMeansDenoising(
                levels, None, h=float(self.strength), templateWindowSize=5, searchWindowSize=11
            )
        else:
            clean = cv2.bilateralFilter(levels, 5, 2.0 * float(self.strength), 3.0)
        # grey + (clean - noisy) / 255: subtract only the estimated noise.
        out = np.subtract(clean, levels, dtype=np.float32)
        out *= 1.0 / 255.0
        out += grey
        return np.clip(out, 0.0, 1.0, out=out)


_SHOULDER = 0.9  # unfade: where the highlights start to roll off instead of clipping


def _roll_off(stretched: np.ndarray, top: float) -> np.ndarray:
    """Levels above ``_SHOULDER`` compressed so that ``top`` (the brightest) lands on 1 and
    nothing is clipped; the curve is continuous and rising, the levels below untouched."""
    span = 1.0 - _SHOULDER
    reach = max(top - _SHOULDER, 1e-6)
    scale = span / (1.0 - np.exp(-reach / span))
    high = stretched > _SHOULDER
    excess = stretched[high] - np.float32(_SHOULDER)
    stretched[high] = _SHOULDER + scale * (1.0 - np.exp(-excess / span))
    return stretched


class Unfade(PreprocessStep):
    """Restore the black point and contrast of a faded, low-contrast or yellowed print.

    The darkest ``black`` percentile becomes black and the ``white`` percentile white, like
    ``autolevels``, but the few levels brighter than that are rolled off smoothly instead of
    clipped, so highlights keep their detail; the stretch is limited to ``max_gain`` times, so
    a photo that is flat on purpose (fog, a blank wall) is not blown into noise. ``strength``
    blends between the scan (0) and the full correction (1). A yellowed or sepia scan needs
    nothing more: coloi reads its luminance.
    """

    name = "unfade"
    description = "restore the black point and contrast of a faded print, highlights kept"
    strength = Option(
        float,
        1.0,
        "how much of the correction to apply: 0 = none, 1 = all",
        minimum=0.0,
        maximum=1.0,
    )
    black = Option(float, 0.5, "percentile that becomes black", minimum=0.0, maximum=20.0)
    white = Option(
        float,
        99.5,
        "percentile that becomes white; brighter levels roll off",
        minimum=80.0,
        maximum=100.0,
    )
    max_gain = Option(float, 4.0, "largest contrast stretch", minimum=1.0, maximum=20.0)

    def process(self, grey: np.ndarray) -> np.ndarray:
        low, high = _percentiles(grey, self.black, self.white)
        if high - low < 1.0 / 256 or self.strength <= 0:
            return grey
        gain = min(1.0 / (high - low), self.max_gain)
        if gain * (high - low) < 1.0:  # gain limited: keep the range centred where it was
            low = max(0.0, (low + high) / 2 - 0.5 / gain)
        top = float(grey.max())
        out = np.subtract(grey, np.float32(low), dtype=np.float32)
        out *= np.float32(gain)
        np.maximum(out, 0.0, out=out)
        out = _roll_off(out, (top - low) * gain)
        if self.strength < 1:
            out = cv2.addWeighted(out, float(self.strength), grey, 1.0 - float(self.strength), 0.0)
        return np.clip(out, 0.0, 1.0, out=out)


class Auto(PreprocessStep):
    """The usual chain for an old print: ``repair``, then ``unfade``, with their defaults."""

    name = "auto"
    description = "the usual chain for old prints: repair, then unfade"
    strength = Option(float, 1.0, "repair's strength", minimum=0.2, maximum=5.0)
    size = Option(
        int, 0, "repair's largest defect width in pixels; 0 = automatic", minimum=0, maximum=64
    )

    def process(self, grey: np.ndarray) -> np.ndarray:
        repaired = Repair(strength=self.strength, size=self.size).process(grey)
        return Unfade().process(repaired)


_BORDER_LEVEL = 0.2  # how far from pure black or white a border's grey may be
_MIN_KEEP = 8  # pixels of height and width a crop always leaves


def _border_depth(means: np.ndarray, stds: np.ndarray, tolerance: float) -> int:
    """How many lines from the start of the profile belong to a uniform dark or light border."""
    edge = float(means[0])
    # A scanner border is the lid (white) or an empty bed/mask (black), never a mid grey.
    if min(edge, 1.0 - edge) > _BORDER_LEVEL:
        return 0
    border = (stds <= tolerance) & (np.abs(means - edge) <= tolerance)
    if border.all():
        return len(border)
    return int(np.argmin(border))


def _line_stats(grey: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every row (axis 1) or column (axis 0), in float64."""
    # cv2.reduce's dim is the one collapsed: 1 collapses columns, giving a value per row.
    mean = cv2.reduce(grey, axis, cv2.REDUCE_AVG, dtype=cv2.CV_64F).ravel()
    square = cv2.reduce(cv2.multiply(grey, grey), axis, cv2.REDUCE_AVG, dtype=cv2.CV_64F).ravel()
    return mean, np.sqrt(np.maximum(square - mean * mean, 0.0))


class CropBorder(PreprocessStep):
    """Cut away a scanner's uniform dark or light border around the photo.

    Flatbed scans often include a strip of the lid (white) or the bed (black) around the print.
    Left in, it is colourised too (often with a colour cast), it takes part in ``autolevels``'
    percentiles, and it shrinks the photo inside the model's fixed input. A border is the run of
    rows and columns at each edge whose standard deviation is at most ``tolerance`` and whose
    mean is within ``tolerance`` of the outermost line's, which must be near black or white.
    A photo that is all border is returned unchanged, and at least 8x8 pixels always remain.
    A photo whose own edge is uniform black or white (a night sky) is cropped too: leave the
    step out for those.
    """

    name = "crop-border"
    description = "remove a scanner's uniform dark or light border"
    tolerance = Option(
        float,
        0.03,
        "largest standard deviation (and deviation from the edge's grey) of a border line, 0-1",
        minimum=0.0,
        maximum=0.5,
    )

    def process(self, grey: np.ndarray) -> np.ndarray:
        # [top, bottom, left, right]; rows and columns are trimmed in turn until nothing
        # changes, because a corner of another colour hides a border from the first pass, and a
        # print's own white margin shows only once the scanner's black border is gone.
        box = [0, grey.shape[0], 0, grey.shape[1]]
        unchanged = 0
        for axis in (1, 0) * 4:
            first = 0 if axis == 1 else 2
            means, stds = _line_stats(grey[box[0] : box[1], box[2] : box[3]], axis)
            start = _border_depth(means, stds, self.tolerance)
            end = _border_depth(means[::-1], stds[::-1], self.tolerance)
            if (start or end) and box[first + 1] - box[first] - start - end >= _MIN_KEEP:
                box[first] += start
                box[first + 1] -= end
                unchanged = 0
            else:
                unchanged += 1
                if unchanged == 2:
                    break
        return grey[box[0] : box[1], box[2] : box[3]]


@hookimpl
def coloi_register_preprocessors() -> list[type[PreprocessStep]]:
    return [AutoLevels, Unfade, Denoise, CropBorder, Repair, Auto]
