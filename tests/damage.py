"""The development damage generator: synthetic scratches and dust on a grey photo, used by the
tests and to tune ``repair``'s detector.

It draws straight scratches, gentle arcs and round specks, each uniformly bright or dark,
antialiased and slightly blurred. The benchmark (bench/repair_bench.py) measures ``repair``
with a different generator (crack networks, hairs, irregular dust, paper-white cracks), so
the detector is never measured on the shapes it was tuned on.
"""

from __future__ import annotations

import cv2
import numpy as np


def _stroke(canvas: np.ndarray, rng: np.random.Generator, width: int) -> None:
    height, wide = canvas.shape
    start = rng.uniform((0, 0), (wide, height))
    angle = rng.uniform(0, np.pi)
    length = rng.uniform(0.3, 0.9) * max(height, wide)
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    # An arc: the middle point pushed sideways by up to a tenth of the length.
    middle = (start + end) / 2 + rng.uniform(-0.1, 0.1) * length * np.array(
        [-np.sin(angle), np.cos(angle)]
    )
    t = np.linspace(0.0, 1.0, 40)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * middle + t**2 * end
    cv2.polylines(
        canvas, [np.round(points * 16).astype(np.int32)], False, 1.0, width, cv2.LINE_AA, shift=4
    )


def damage(
    grey: np.ndarray, seed: int, scratches: int = 3, specks: int = 6, max_width: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """(damaged copy, coverage in [0, 1]) of a grey photo, (H, W) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    damaged = grey.copy()
    coverage = np.zeros_like(grey)
    height, width = grey.shape
    for index in range(scratches + specks):
        canvas = np.zeros_like(grey)
        size = int(rng.integers(1, max_width + 1))
        if index < scratches:
            _stroke(canvas, rng, size)
        else:
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(canvas, centre, max(1, size // 2 + 1), 1.0, -1, cv2.LINE_AA)
        canvas = cv2.GaussianBlur(canvas, (0, 0), 0.5)
        level = rng.uniform(0.85, 1.0) if rng.random() < 0.6 else rng.uniform(0.0, 0.15)
        damaged += canvas * (level - damaged)
        coverage = np.maximum(coverage, canvas)
    return damaged.astype(np.float32), coverage
