"""The colourisation pipeline for one photo.

grey copy -> preprocess steps -> L* -> backend predicts a*b* at its own resolution -> a*b*
upsampled to full resolution and joined with the photo's own full-resolution L* ->
postprocess steps -> BGR at the input's bit depth, with the input's alpha channel kept.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from coloi.backend import Backend
from coloi.color import lab8_to_bgr, lab_to_depth, lightness, to_depth, to_grey
from coloi.imageio import Photo
from coloi.steps import LabPhoto, PostprocessStep, PreprocessStep


def _as_unit_float(grey: np.ndarray) -> np.ndarray:
    scale = 255.0 if grey.dtype == np.uint8 else 65535.0
    return grey.astype(np.float32) * np.float32(1.0 / scale)


@dataclass
class Pipeline:
    """A loaded backend and the chosen steps, applied to photo after photo (the engine behind
    the public :class:`coloi.Colouriser`).

    Safe to call from several threads: backends are not assumed to be thread-safe, so calls
    into the backend are serialised, while the rest of the work runs in parallel.
    """

    backend: Backend
    preprocess: Sequence[PreprocessStep] = ()
    postprocess: Sequence[PostprocessStep] = ()
    _backend_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def colourise(self, photo: Photo) -> np.ndarray:
        """The colourised pixels: BGR (or BGRA when the input had alpha and kept its size),
        at the photo's bit depth."""
        grey = to_grey(photo.pixels)
        if self.preprocess:
            grey = _as_unit_float(grey)
            for step in self.preprocess:
                grey = np.clip(step.process(grey), 0.0, 1.0).astype(np.float32, copy=False)
            if photo.bit_depth == 8:
                grey = to_depth(grey, 8)
        ab_small = self.predict_ab(grey)
        pixels = photo.pixels
        alpha = pixels[:, :, 3] if pixels.ndim == 3 and pixels.shape[2] == 4 else None
        if grey.dtype == np.uint8 and not self.postprocess:
            bgr = lab8_to_bgr(grey, ab_small)
        else:
            plane = lightness(grey)
            height, width = plane.shape
            ab = cv2.resize(ab_small, (width, height), interpolation=cv2.INTER_LINEAR)
            lab = LabPhoto(plane, ab)
            for post in self.postprocess:
                lab = post.process(lab)
            kept = alpha if alpha is not None and alpha.shape == lab.lightness.shape else None
            return lab_to_depth(lab.lightness, lab.ab, photo.bit_depth, kept)
        if alpha is not None and alpha.shape == bgr.shape[:2]:
            bgr = np.dstack([bgr, alpha])
        return bgr

    def predict_ab(self, grey: np.ndarray) -> np.ndarray:
        """The backend's a*b* for a grey photo, reduced first to the backend's input size."""
        size = self.backend.input_size()
        height, width = grey.shape
        if size is not None and size[0] * size[1] < height * width:
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        plane = lightness(grey)
        with self._backend_lock:
            ab = self.backend.predict_ab(plane)
        return ab.astype(np.float32, copy=False)


# The engine's former name, which the evaluation and training code still use.
Colouriser = Pipeline
