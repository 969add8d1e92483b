"""The ``repair`` preprocess step: find scratches, cracks, hairs, dust and small blotches on
an old print's scan and fill them from their surroundings.

Detection is a small fully convolutional network (``models/repair.tflite``, float32, listed
with its sha256 in ``models/manifest.json``) run on the LiteRT interpreter. It was trained by
bench/train_repair.py on grey copies of the training photos damaged by the development
generator (tests/damage.py), to mark every pixel the damage changed by more than 2 L*. It is
given the grey level and cheap top-hat / black-hat responses at three widths (``features``),
and sees about a hundred pixels around each pixel, which is what tells a long thin scratch or
a speck of dust from the photo's own thin detail (hair, branches, wires, text).

The network finds defects up to about 8 of its pixels wide. A large scan is shrunk for it (to
``_WORK_PIXELS``, or further when the largest defect width asks for it) and its answer is
stretched back; the fill always runs at full resolution. A smaller photo is looked at in
several turned and mirrored views, as many as fit in the work of one look at a megapixel
(``_VIEW_PIXELS``), and the answers averaged (``_seen_logits``).

The defect pixels are filled by pull-push interpolation (a Gaussian pyramid of the undamaged
pixels, normalised by their weight), in tiles round the defects only, and each moves
towards the fill as far as the detector's odds that it is a defect. Only those pixels change,
so a 16-bit scan keeps its precision everywhere else.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import cv2
import numpy as np

from coloi.backend import native_stderr_silenced
from coloi.models import find_model
from coloi.steps import Option, PreprocessStep

_WORK_PIXELS = 750_000  # the largest photo the network sees; larger ones are shrunk
_VIEW_PIXELS = 1_000_000  # the detector's work on a smaller photo, in pixels of all views
_NET_WIDTH = 8  # the widest defect, in the network's pixels, it was trained to find
_LOGIT = 0.5  # a pixel is a defect above this logit (at strength 1)...
_SEED_LOGIT = 2.0  # ...in a connected piece that somewhere reaches this one
_TILE = 128  # fill tiles, in pixels
_SIDES = (5, 11, 19)  # top-hat squares: they keep structures up to 2, 5 and 9 pixels wide
FEATURES = 1 + 2 * len(_SIDES)
_INTERPRETER_LOCK = threading.Lock()


@functools.cache
def _interpreter() -> Any:
    """The detector on LiteRT, loaded once per process (its sha256 checked by find_model)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT's deprecated predecessor, still common on edge devices
        from tflite_runtime.interpreter import Interpreter
    model = find_model("tflite", name="repair")
    with native_stderr_silenced():
        return Interpreter(model_path=str(model.path), num_threads=os.cpu_count() or 1)


def features(grey: np.ndarray) -> np.ndarray:
    """What the network sees of a grey photo (H, W) float32 in [0, 1]: (H, W, FEATURES)
    float32. The grey level, and how much brighter (top-hat) and darker (black-hat) than its
    surroundings each pixel's structure is at three widths (up to 2, 5 and 9 pixels), so the
    network need not learn those filters from a few minutes of training on a CPU."""
    levels = cv2.convertScaleAbs(grey, alpha=255.0)
    planes = [levels]
    for side in _SIDES:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
        planes.append(cv2.morphologyEx(levels, cv2.MORPH_TOPHAT, kernel))
        planes.append(cv2.morphologyEx(levels, cv2.MORPH_BLACKHAT, kernel))
    stack = cv2.merge(planes).astype(np.float32)
    # Grey to [-1, 1]; responses so that a quarter of the range is 1.
    stack *= np.array([2.0 / 255] + [4.0 / 255] * (len(planes) - 1), np.float32)
    stack[..., 0] -= 1.0
    return stack


def _logits(grey: np.ndarray) -> np.ndarray:
    """The network's defect logit for every pixel of ``grey`` (H, W) float32."""
    height, width = grey.shape
    # The network halves the resolution twice and doubles it back: sides that are multiples
    # of 4 keep every level whole.
    padded = cv2.copyMakeBorder(grey, 0, -height % 4, 0, -width % 4, cv2.BORDER_REFLECT)
    seen = features(padded)[None]
    interpreter = _interpreter()
    # One interpreter per process, and batches repair photos in several threads at once.
    with _INTERPRETER_LOCK:
        detail = interpreter.get_input_details()[0]
        if tuple(detail["shape"]) != seen.shape:
            with native_stderr_silenced():  # LiteRT announces its CPU delegate on first use
                interpreter.resize_tensor_input(detail["index"], list(seen.shape))
                interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], seen)
        interpreter.invoke()
        out: np.ndarray = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return out[0, :height, :width, 0].copy()


def _view(grey: np.ndarray, view: int) -> np.ndarray:
    """One of the eight ways to turn and mirror a photo (0 = as it is)."""
    if view & 4:
        grey = grey.T
    if view & 1:
        grey = grey[:, ::-1]
    if view & 2:
        grey = grey[::-1]
    return np.ascontiguousarray(grey)


def _unview(logits: np.ndarray, view: int) -> np.ndarray:
    """``_view`` undone."""
    if view & 2:
        logits = logits[::-1]
    if view & 1:
        logits = logits[:, ::-1]
    if view & 4:
        logits = logits.T
    return logits


def _seen_logits(grey: np.ndarray) -> np.ndarray:
    """The detector's logits for ``grey`` at the network's working size: the mean over as
    many of the photo's eight turned and mirrored views as fit in _VIEW_PIXELS of work (a
    large scan gets one look, a photo of up to an eighth of a megapixel all eight). The
    network is not quite the same in every direction, and the mean of its answers misses
    fewer defects and takes less of the photo's own detail for one (measured with
    bench/repair_dev.py)."""
    views = int(np.clip(_VIEW_PIXELS // max(grey.size, 1), 1, 8))
    if views == 1:
        return _logits(grey)
    # The mirrored views first: they keep the shape, so LiteRT resizes its tensors less often.
    total = sum(_unview(_logits(_view(grey, view)), view) for view in range(views))
    return np.asarray(total, np.float32) / np.float32(views)


def working_scale(shape: tuple[int, ...], size: int) -> float:
    """How many of the photo's pixels make one of the network's: 1 up to _WORK_PIXELS,
    more for larger scans, and at least ``size`` / 8 when the largest defect width is set."""
    scale = max(1.0, float(np.sqrt(shape[0] * shape[1] / _WORK_PIXELS)))
    if size > 0:
        scale = max(scale, size / _NET_WIDTH)
    return scale


def _shrunk(grey: np.ndarray, size: int) -> np.ndarray:
    """``grey`` as float32 at the network's working size."""
    grey = np.ascontiguousarray(grey, dtype=np.float32)
    scale = working_scale(grey.shape, size)
    if scale <= 1.0:
        return grey
    height, width = grey.shape
    return cv2.resize(
        grey,
        (max(4, round(width / scale)), max(4, round(height / scale))),
        interpolation=cv2.INTER_AREA,
    )


def defect_logits(grey: np.ndarray, size: int = 0) -> np.ndarray:
    """The detector's logit per pixel of ``grey`` (H, W) float32 in [0, 1], at full size."""
    logits = _seen_logits(_shrunk(grey, size))
    if logits.shape == grey.shape:
        return logits
    return cv2.resize(logits, grey.shape[::-1], interpolation=cv2.INTER_LINEAR)


def _above(logits: np.ndarray, level: float) -> np.ndarray:
    return (logits > level).astype(np.uint8) * np.uint8(255)


def _hysteresis(logits: np.ndarray, low: float, high: float) -> np.ndarray:
    """``logits`` where they are above ``low`` in a connected piece that reaches above
    ``high`` somewhere; far below ``low`` elsewhere. A faint stretch of a crack is kept when
    the crack is plain elsewhere; a faint piece of texture on its own is not."""
    candidate = _above(logits, low)
    count, found = cv2.connectedComponents(candidate, connectivity=8, ltype=cv2.CV_32S)
    labels: np.ndarray = np.asarray(found, dtype=np.int32)
    where = np.flatnonzero(candidate)  # a few percent of the photo: gather only those
    peak = np.full(count, -np.inf, np.float32)
    np.maximum.at(peak, labels.ravel()[where], logits.ravel()[where])
    keep = peak > high
    keep[0] = False  # the background
    return np.where(keep[labels], logits, np.float32(low - 10.0))


def _found(grey: np.ndarray, size: int, strength: float) -> np.ndarray:
    """The detector's logits at full size, shifted by the strength, where a pixel is found to
    be a defect (at _LOGIT or above), and far below _LOGIT elsewhere."""
    # Strength 1 keeps pixels at _LOGIT or better in pieces that somewhere reach _SEED_LOGIT;
    # strength 2 doubles every pixel's odds of being a defect, and so on.
    shift = float(np.log(strength))
    seen = _seen_logits(_shrunk(grey, size))
    kept = _hysteresis(seen, _LOGIT - shift, _SEED_LOGIT - shift)
    if kept.shape != grey.shape:
        kept = cv2.resize(kept, grey.shape[::-1], interpolation=cv2.INTER_LINEAR)
    if shift:
        kept += np.float32(shift)
    return kept


def defect_mask(grey: np.ndarray, size: int = 0, strength: float = 1.0) -> np.ndarray:
    """uint8 mask (255 = defect) of the scratches, cracks, hairs and dust of a grey photo,
    (H, W) float32 in [0, 1]. ``size`` is the largest defect width in pixels (0 = automatic);
    a higher ``strength`` finds fainter defects."""
    return _above(_found(grey, size, strength), _LOGIT)


def _pull_push(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A smooth interpolation of the pixels of ``grey`` outside ``mask`` (non-zero), for every
    pixel (pull-push on a Gaussian pyramid)."""
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
    return cv2.pyrUp(filled, dstsize=(width, height))


def fill(grey: np.ndarray, mask: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
    """``grey`` with the pixels under ``mask`` (non-zero) replaced by a smooth interpolation
    of the pixels around them; other pixels are unchanged. Only tiles that hold defects are
    worked on, each with a margin of its own size, so a scan with a few scratches costs little.

    Given the detector's ``logits``, each pixel under the mask moves only as far towards the
    fill as the odds that it is a defect (sigmoid of its logit): the guess with the least
    expected square error when those odds are true, the fill where the detector is sure and
    halfway where it is in two minds."""
    out = grey.copy()
    height, width = grey.shape
    rows, cols = -(-height // _TILE), -(-width // _TILE)
    # Which tiles hold a defect pixel: a max over each tile of the padded mask.
    padded = cv2.copyMakeBorder(
        mask, 0, rows * _TILE - height, 0, cols * _TILE - width, cv2.BORDER_CONSTANT, value=0
    )
    busy = padded.reshape(rows, _TILE, cols, _TILE).max(axis=(1, 3))
    # Connected groups of busy tiles are filled together, so that a long scratch is one job
    # and its fill has no seams between tiles.
    count, _, stats, _ = cv2.connectedComponentsWithStats(
        (busy > 0).astype(np.uint8), connectivity=8
    )
    for label in range(1, count):
        left, top, wide, high = stats[label, :4]
        # A margin of one tile all round: the fill of a hole draws on the pixels around it.
        y0, y1 = max(0, (top - 1) * _TILE), min(height, (top + high + 1) * _TILE)
        x0, x1 = max(0, (left - 1) * _TILE), min(width, (left + wide + 1) * _TILE)
        part_mask = mask[y0:y1, x0:x1]
        original = np.ascontiguousarray(grey[y0:y1, x0:x1])
        part = _pull_push(original, part_mask)
        if logits is not None:
            odds = 1.0 / (1.0 + np.exp(-logits[y0:y1, x0:x1]))
            part = original + odds * (part - original)
        np.copyto(out[y0:y1, x0:x1], part, where=part_mask > 0)
    return out


class Repair(PreprocessStep):
    """Remove scratches, cracks, hairs, dust and small blotches and fill them from around them.

    Works on the whole photo; pixels that are not found to be a defect are never changed. See
    the module docstring for how defects are found.
    """

    name = "repair"
    description = "remove scratches, cracks, hairs and dust (learnt detector, fill from around)"
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
        "largest defect width in pixels; 0 = automatic (8 pixels at up to about "
        "0.75 megapixels, in proportion on larger scans)",
        minimum=0,
        maximum=64,
    )

    def process(self, grey: np.ndarray) -> np.ndarray:
        logits = _found(grey, self.size, self.strength)
        mask = _above(logits, _LOGIT)
        if not cv2.countNonZero(mask):
            return grey
        return fill(grey, mask, logits)
