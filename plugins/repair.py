"""The ``repair`` preprocess step: find thin scratches, cracks, hairs and dust specks on an old
print's scan and fill them from their surroundings.

Detection is classical and runs at full resolution on an 8-bit copy of the grey photo:

1. A morphological top-hat (bright) and black-hat (dark) with a square a little wider than the
   largest defect keep only structures narrower than that square, bright or dark against
   their surroundings; everything wider (faces, skies, edges of objects) gives no response.
2. The response is compared with a threshold that rises with the photo's grain (the median
   response) and with the local texture (the mean response in a window around each pixel),
   so hair, foliage and fabric, which respond everywhere, need a much stronger defect to be
   touched. Strong pixels seed the defects; weaker neighbours join them (hysteresis).
3. Each connected piece is kept only if it is shaped like a defect: long and thin (a scratch,
   a crack network, a hair) or a small isolated speck of high contrast (dust). Round blobs,
   short stubs and patches of texture are left alone.

The kept pixels, widened by a pixel to take the defects' soft edges, are filled by pull-push
interpolation (a Gaussian pyramid of the undamaged pixels, normalised by their weight), which
costs a few full-size passes whatever the number of defects. Only those pixels change, so a
16-bit scan keeps its precision everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coloi.steps import Option, PreprocessStep
from coloi_plugins.repair_weights import WEIGHTS

# Candidate thresholds in 8-bit grey levels at strength 1: low on purpose, the score decides.
_BASE_LEVELS = 16.0  # the weakest candidate on a clean, flat print
_GRAIN_FACTOR = 2.0  # times the photo's median response (its grain)
_TEXTURE_FACTOR = 2.0  # times the local median response (its texture)
_TEXTURE_WINDOW = 9  # the texture window, in largest widths (odd)
_WEAK_FRACTION = 0.5  # a kept defect grows into neighbours above this fraction of the threshold
_GROW = 1  # pixels a defect may grow into its fainter edge
_AUTO_WIDTH = 1.0 / 250  # the automatic largest width, as a fraction of the shorter side
_MIN_AUTO_WIDTH = 3
_SQUARE3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
_CROSS3 = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))

# The score of a candidate piece: a logistic regression on _features and their products,
# fitted by bench/fit_repair.py on photos of the training set with the development damage
# generator (tests/damage.py), never on the validation photos or the benchmark's generator.
_WEIGHTS = np.array(WEIGHTS, np.float32)  # the last one multiplies a constant 1: the bias


def largest_width(shape: tuple[int, ...], size: int) -> int:
    """The largest defect width in pixels: ``size``, or automatic (0) from the photo's size."""
    if size > 0:
        return size
    return max(_MIN_AUTO_WIDTH, round(min(shape[:2]) * _AUTO_WIDTH))


def _responses(levels: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """How much brighter (first) and darker (second) than its surroundings each pixel's narrow
    structure is, in grey levels."""
    # A structure narrower than the square in every direction disappears in the opening
    # (bright) or closing (dark); twice as wide, so a defect ``width`` wide with blurred
    # edges still does.
    side = 2 * width + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    bright = cv2.morphologyEx(levels, cv2.MORPH_TOPHAT, kernel)
    dark = cv2.morphologyEx(levels, cv2.MORPH_BLACKHAT, kernel)
    return bright, dark


def _texture(response: np.ndarray, width: int) -> np.ndarray:
    """How busy the photo is around each pixel: the median response in a window about
    ``_TEXTURE_WINDOW`` defect widths across. A median, so that a scratch does not raise the
    threshold for itself; on a grid ``width`` apart, so that it costs little on a large scan."""
    height, wide = response.shape
    step = max(1, width)
    grid = response[step // 2 :: step, step // 2 :: step]
    busy = cv2.medianBlur(np.ascontiguousarray(grid), _TEXTURE_WINDOW)
    return cv2.resize(busy, (wide, height), interpolation=cv2.INTER_LINEAR)


def _median(levels: np.ndarray) -> float:
    hist = cv2.calcHist([levels], [0], None, [256], [0, 256]).ravel()
    return float(np.searchsorted(np.cumsum(hist), hist.sum() / 2))


def _sums(labels: np.ndarray, count: int, values: np.ndarray) -> np.ndarray:
    return np.bincount(labels, weights=values, minlength=count)


def _features(
    levels: np.ndarray,
    bright: np.ndarray,
    dark: np.ndarray,
    response: np.ndarray,
    threshold: np.ndarray,
    piece: np.ndarray,
    where: np.ndarray,
    stats: np.ndarray,
    width: int,
) -> np.ndarray:
    """(pieces, 12) float32: what tells a defect from the photo's own thin detail, for every
    connected piece of candidate pixels. Sizes are in largest widths, so one score serves
    every photo size."""
    count = len(stats)
    area = np.maximum(stats[:, cv2.CC_STAT_AREA].astype(np.float64), 1.0)
    extent2 = (
        stats[:, cv2.CC_STAT_WIDTH].astype(np.float64) ** 2
        + stats[:, cv2.CC_STAT_HEIGHT].astype(np.float64) ** 2
    )

    def mean(values: np.ndarray) -> np.ndarray:
        return _sums(piece, count, values.ravel()[where].astype(np.float64)) / area

    strength = mean(response) / 255.0
    level = mean(threshold) / 255.0 + 1.0 / 255.0
    squares = mean(response.astype(np.float32) ** 2) / 255.0**2
    grey = mean(levels) / 255.0
    is_bright = mean((bright > dark).astype(np.float32))
    # How far towards paper white (bright defects) or black (dark ones) the piece is.
    extreme = is_bright * grey + (1.0 - is_bright) * (1.0 - grey)
    features = np.stack(
        [
            np.log(area / width**2),
            np.log(extent2 / area),
            np.log(np.sqrt(extent2) / width),
            strength,
            np.log(strength / level + 1e-3),
            level,
            np.sqrt(np.maximum(squares - strength**2, 0.0)) / (strength + 1e-3),
            mean((response > 2 * threshold.astype(np.float32)).astype(np.float32)),
            grey,
            is_bright,
            extreme,
        ],
        axis=1,
    )
    # The score is linear in the features and their pairwise products: quadratic.
    first, second = np.triu_indices(features.shape[1])
    features = np.concatenate([features, features[:, first] * features[:, second]], axis=1)
    return np.concatenate([features, np.ones((count, 1))], axis=1).astype(np.float32)


@dataclass
class Candidates:
    """The candidate pixels of one photo and what is known of them."""

    levels: np.ndarray  # the photo in 8 bits
    response: np.ndarray  # max(top-hat, black-hat)
    threshold: np.ndarray  # the candidate threshold at each pixel
    where: np.ndarray  # flat indices of the candidate pixels
    piece: np.ndarray  # the piece (label) of each of them; 0 is the background
    stats: np.ndarray  # connectedComponentsWithStats' stats of every piece
    features: np.ndarray  # (pieces, features) for the score


def candidates(grey: np.ndarray, width: int) -> Candidates:
    """The pixels that respond more than the local texture allows, in connected pieces."""
    levels = cv2.convertScaleAbs(grey, alpha=255.0)
    bright, dark = _responses(levels, width)
    response = cv2.max(bright, dark)
    base = max(_BASE_LEVELS, _GRAIN_FACTOR * _median(response))
    # threshold = base + factor * local texture, saturated at 255 (nothing that weak is kept)
    threshold = cv2.convertScaleAbs(_texture(response, width), alpha=_TEXTURE_FACTOR, beta=base)
    above = cv2.compare(response, threshold, cv2.CMP_GT)
    # Bright and dark candidates are separate pieces (a white scratch crossing dark detail
    # must not merge with it into one shapeless piece): bright pixels touching dark ones are
    # left out, so that one labelling serves both.
    is_bright = cv2.compare(bright, dark, cv2.CMP_GE)
    dark_ones = cv2.subtract(above, is_bright)
    bright_ones = cv2.subtract(cv2.min(above, is_bright), cv2.dilate(dark_ones, _CROSS3))
    candidate = cv2.max(bright_ones, dark_ones)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        candidate, connectivity=4, ltype=cv2.CV_32S
    )
    where = np.flatnonzero(candidate)  # a few percent of the photo: gather only those
    piece = labels.ravel()[where]
    features = _features(levels, bright, dark, response, threshold, piece, where, stats, width)
    return Candidates(levels, response, threshold, where, piece, stats, features)


def defect_mask(grey: np.ndarray, size: int = 0, strength: float = 1.0) -> np.ndarray:
    """uint8 mask (255 = defect) of the thin scratches and specks of a grey photo, (H, W)
    float32 in [0, 1]. ``size`` is the largest defect width in pixels (0 = automatic);
    a higher ``strength`` finds fainter defects."""
    width = largest_width(grey.shape, size)
    found = candidates(grey, width)
    score = found.features @ _WEIGHTS
    # Strength 1 keeps the pieces with at least one chance in three of being a defect (odds
    # 1:2), strength 2 those with odds above 1:4, and so on.
    keep = score > -np.log(2.0 * strength)
    keep[0] = False  # the background
    mask = np.zeros_like(found.levels)
    mask.ravel()[found.where[keep[found.piece]]] = 255
    # Widen into the defect's fainter edge: neighbours above a fraction of the threshold.
    weak = cv2.compare(
        found.response, cv2.convertScaleAbs(found.threshold, alpha=_WEAK_FRACTION), cv2.CMP_GT
    )
    grown = cv2.dilate(mask, _SQUARE3, iterations=_GROW)
    mask = cv2.max(mask, cv2.min(grown, weak))
    # The soft edge of a scratch is below the weak threshold but still visible once filled.
    return cv2.dilate(mask, _SQUARE3)


def fill(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``grey`` with the pixels under ``mask`` (non-zero) replaced by a smooth interpolation
    of the pixels around them (pull-push on a Gaussian pyramid); other pixels are unchanged."""
    weight = (mask == 0).astype(np.float32)
    # Level 0 itself is never blended: a hole has no weight there, so its value is the level
    # above's, stretched; every other pixel keeps its own.
    pyramid = [(cv2.pyrDown(cv2.multiply(grey, weight)), cv2.pyrDown(weight))]
    # Down until every hole is covered: each level halves the widest gap.
    while min(pyramid[-1][1].shape) > 8 and float(pyramid[-1][1].min()) < 1e-3:
        values, weight = pyramid[-1]
        pyramid.append((cv2.pyrDown(values), cv2.pyrDown(weight)))
    values, weight = pyramid[-1]
    filled = values / np.maximum(weight, np.float32(1e-6))
    for values, weight in reversed(pyramid[:-1]):
        height, width = values.shape
        coarse = cv2.pyrUp(filled, dstsize=(width, height))
        # A pixel with weight w keeps w of its own mean; the rest comes from the coarser level.
        filled = values + (1.0 - weight) * coarse
    height, width = grey.shape
    out = grey.copy()
    cv2.copyTo(cv2.pyrUp(filled, dstsize=(width, height)), mask, out)
    return out


class Repair(PreprocessStep):
    """Remove thin scratches, cracks, hairs and dust specks and fill them from around them.

    Works at full resolution on the whole photo; pixels that are not found to be a defect are
    never changed. See the module docstring for how defects are found.
    """

    name = "repair"
    description = "remove scratches, cracks, hairs and dust specks (fill from surroundings)"
    strength = Option(
        float,
        1.0,
        "sensitivity: higher finds fainter defects (and risks "
        "touching fine detail), lower only the plainest",
        minimum=0.2,
        maximum=5.0,
    )
    size = Option(
        int,
        0,
        "largest defect width in pixels; 0 = automatic (0.4% of the shorter side, at least 3)",
        minimum=0,
        maximum=64,
    )

    def process(self, grey: np.ndarray) -> np.ndarray:
        mask = defect_mask(grey, self.size, self.strength)
        if not cv2.countNonZero(mask):
            return grey
        return fill(grey, mask)
