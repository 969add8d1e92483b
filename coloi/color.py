"""CIE Lab helpers shared by the pipeline, training and evaluation.

Conventions follow OpenCV's float Lab: L* in [0, 100], a* and b* roughly in [-127, 127],
for BGR input scaled to [0, 1]. A photo is turned grey with OpenCV's luma weights, and its
lightness is the L* of that grey, so training and inference see exactly the same channel.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return the single-channel grey version of a BGR, BGRA or grey image, same dtype."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@functools.cache
def _lightness_lut(levels: int) -> np.ndarray:
    """L* of the neutral grey (v, v, v) for every integer grey level v < levels."""
    ramp = (np.arange(levels, dtype=np.float32) / (levels - 1)).reshape(1, -1, 1)
    lab = cv2.cvtColor(np.repeat(ramp, 3, axis=2), cv2.COLOR_BGR2Lab)
    return np.ascontiguousarray(lab[0, :, 0])


def lightness(grey: np.ndarray) -> np.ndarray:
    """L* (float32, 0-100) of a grey image given as uint8, uint16 or float in [0, 1].

    Integer images go through a lookup table (exact, and far cheaper than the Lab formula on a
    large scan); float images are quantised to 16 bits first, which is below L*'s precision.
    """
    if grey.dtype == np.uint8:
        return _lightness_lut(256)[grey]
    if grey.dtype == np.uint16:
        return _lightness_lut(65536)[grey]
    levels = np.clip(grey, 0.0, 1.0) * 65535.0 + 0.5
    return _lightness_lut(65536)[levels.astype(np.uint16)]


@functools.cache
def _lightness_lut8() -> np.ndarray:
    """8-bit grey level -> OpenCV's 8-bit L (L* * 255 / 100), rounded."""
    return np.clip(np.rint(_lightness_lut(256) * 2.55), 0, 255).astype(np.uint8)


def lab8_to_bgr(grey: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """uint8 BGR from an 8-bit grey photo (H, W) and a*b* (h, w, 2) at any resolution.

    The fast path for 8-bit outputs: OpenCV's 8-bit Lab (L* * 2.55, a* + 128, b* + 128) is
    converted through lookup tables, and no full-size float plane is ever made. a*b* are
    rounded to whole units, below what an 8-bit output can show.
    """
    height, width = grey.shape
    ab_small = np.clip(np.rint(ab + 128.0), 0, 255).astype(np.uint8)
    ab8 = cv2.resize(ab_small, (width, height), interpolation=cv2.INTER_LINEAR)
    lab = cv2.merge([cv2.LUT(grey, _lightness_lut8()), ab8[:, :, 0], ab8[:, :, 1]])
    return cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)


def bgr_to_lab(bgr: np.ndarray) -> np.ndarray:
    """Float32 Lab of a uint8 or uint16 BGR image."""
    scale = 255.0 if bgr.dtype == np.uint8 else 65535.0
    return cv2.cvtColor(bgr.astype(np.float32) / np.float32(scale), cv2.COLOR_BGR2Lab)


def lab_to_bgr(lightness_plane: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Float32 BGR, nominally in [0, 1], from an L* plane (H, W) and an a*b* plane (H, W, 2).

    Out-of-gamut colours fall slightly outside [0, 1]; :func:`to_depth` saturates them.
    """
    return cv2.cvtColor(cv2.merge([lightness_plane, ab]), cv2.COLOR_Lab2BGR)


def lab_to_depth(
    lightness_plane: np.ndarray,
    ab: np.ndarray,
    bit_depth: int,
    alpha: np.ndarray | None = None,
    rows: int = 256,
) -> np.ndarray:
    """``to_depth(lab_to_bgr(lightness_plane, ab), bit_depth)``, with ``alpha`` as a fourth
    channel if given: the same pixels, made a band of ``rows`` rows at a time, so that the two
    full-size float32 images between (24 bytes a pixel, 2.4 GB for a 100 MP scan) are never
    made whole, nor a copy to add the alpha channel to."""
    height, width = lightness_plane.shape
    channels = 3 if alpha is None else 4
    out = np.empty((height, width, channels), np.uint8 if bit_depth == 8 else np.uint16)
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        out[band, :, :3] = to_depth(lab_to_bgr(lightness_plane[band], ab[band]), bit_depth)
    if alpha is not None:
        out[:, :, 3] = alpha
    return out


def to_depth(bgr: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float image in [0, 1] -> uint8 or uint16, rounded and saturated."""
    top = 255.0 if bit_depth == 8 else 65535.0
    depth = cv2.CV_8U if bit_depth == 8 else cv2.CV_16U
    # OpenCV takes a scalar as the second operand; its type stubs do not say so.
    return cv2.multiply(bgr, (top, top, top, top), dtype=depth)  # type: ignore[call-overload]


def ab_of_grey_photo(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L* of the photo's grey copy, a*b* of the photo): the network's input and target."""
    lab = bgr_to_lab(bgr)
    return lightness(to_grey(bgr)), lab[:, :, 1:]
