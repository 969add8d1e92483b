"""The development damage generators: synthetic damage on a grey photo, used by the tests and
to train ``repair``'s detector (bench/train_repair.py).

``damage`` is the simple one the tests use: straight scratches, gentle arcs and round specks,
each uniformly bright or dark, antialiased and slightly blurred.

``old_print_damage`` is the varied one the detector is trained on: cracks that wander and
branch, patches of fine cracks, wavy and curling hairs, long scratches, scuffs of parallel
fine scratches, folds, clusters of ragged dust, round and oval specks, blotches and stains,
each 1 to 10 pixels wide (changing along its length), bright (the paper shows through, a
white scratch) or dark (dirt, a hair), from faint to opaque, sharp or blurred (a few far out
of focus), on photos with or without grain. The benchmark (bench/repair_bench.py) measures
``repair`` with a different generator of its own, so the detector is never measured on the
shapes it was trained on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import cv2
import numpy as np

Canvas = np.ndarray
Shape = Callable[[Canvas, np.random.Generator], None]


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


# ---- the varied generator --------------------------------------------------------------------


def _width(rng: np.random.Generator) -> float:
    """A defect width in pixels, 1 to 8, most of them thin as on real prints."""
    return float(np.clip(rng.lognormal(np.log(1.8), 0.6), 1.0, 8.0))


def _polyline(canvas: Canvas, points: np.ndarray, widths: np.ndarray) -> None:
    """Segments of their own widths, antialiased, at 1/8 pixel precision."""
    for (a, b), width in zip(itertools.pairwise(points), widths, strict=False):
        cv2.line(
            canvas,
            tuple(int(v) for v in np.round(a * 8)),
            tuple(int(v) for v in np.round(b * 8)),
            1.0,
            max(1, round(width)),
            cv2.LINE_AA,
            shift=3,
        )


def _walk(
    rng: np.random.Generator, start: np.ndarray, heading: float, steps: int, turn: float
) -> np.ndarray:
    """A path that wanders: each step turns by a random amount and keeps some of the last."""
    points = [start]
    bend = 0.0
    for _ in range(steps):
        bend = 0.6 * bend + rng.normal(0, turn)
        heading += bend
        points.append(points[-1] + rng.uniform(2, 7) * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(points)


def _crack(canvas: Canvas, rng: np.random.Generator, depth: int = 0, start=None) -> None:
    """A crack in the emulsion: wanders, changes width along its length, branches."""
    height, wide = canvas.shape
    if start is None:
        start = rng.uniform((0, 0), (wide, height))
    points = _walk(rng, start, rng.uniform(0, 2 * np.pi), int(rng.integers(6, 40)), 0.25)
    base = _width(rng) * (0.7**depth)
    widths = np.clip(base * np.exp(np.cumsum(rng.normal(0, 0.15, len(points) - 1))), 1, 8)
    _polyline(canvas, points, widths)
    if depth < 2:
        for _ in range(int(rng.poisson(1.2))):
            _crack(canvas, rng, depth + 1, points[int(rng.integers(0, len(points)))])


def _hair(canvas: Canvas, rng: np.random.Generator) -> None:
    """A hair or fibre: thin, smooth, wavy, sometimes curling back on itself."""
    height, wide = canvas.shape
    points = _walk(
        rng,
        rng.uniform((0, 0), (wide, height)),
        rng.uniform(0, 2 * np.pi),
        int(rng.integers(8, 40)),
        rng.uniform(0.05, 0.3),
    )
    _polyline(canvas, points, np.full(len(points) - 1, rng.choice([1.0, 1.0, 1.5, 2.0])))


def _scratch(canvas: Canvas, rng: np.random.Generator) -> None:
    _stroke(canvas, rng, max(1, round(_width(rng))))


def _dust(canvas: Canvas, rng: np.random.Generator) -> None:
    """A cluster of ragged specks: small polygons round a centre."""
    height, wide = canvas.shape
    centre = rng.uniform((0, 0), (wide, height))
    spread = rng.uniform(1, 25)
    for _ in range(int(rng.integers(1, 12))):
        middle = centre + rng.normal(0, spread, 2)
        radius = _width(rng) / 2
        corners = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radii = radius * rng.uniform(0.5, 1.4, corners)
        polygon = middle + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(canvas, [np.round(polygon * 8).astype(np.int32)], 1.0, cv2.LINE_AA, shift=3)


def _blotch(canvas: Canvas, rng: np.random.Generator) -> None:
    """A stain or a missing patch of emulsion: an irregular blob up to 8 pixels across, or a
    short thick nick."""
    height, wide = canvas.shape
    middle = rng.uniform((0, 0), (wide, height))
    if rng.random() < 0.5:
        points = _walk(rng, middle, rng.uniform(0, 2 * np.pi), int(rng.integers(2, 6)), 0.5)
        _polyline(canvas, points, rng.uniform(2, 8, len(points) - 1))
        return
    corners = int(rng.integers(5, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
    radii = rng.uniform(1.5, 4.5) * rng.uniform(0.6, 1.3, corners)
    polygon = middle + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
    cv2.fillPoly(canvas, [np.round(polygon * 8).astype(np.int32)], 1.0, cv2.LINE_AA, shift=3)


def _speck(canvas: Canvas, rng: np.random.Generator) -> None:
    """A single round or oval speck of dust or a pinhole, 1 to 10 pixels across."""
    height, wide = canvas.shape
    middle = rng.uniform((0, 0), (wide, height))
    axes = np.array([rng.uniform(0.5, 5.0), 0.0])
    axes[1] = axes[0] * rng.uniform(0.4, 1.0)
    cv2.ellipse(
        canvas,
        tuple(int(v) for v in np.round(middle * 8)),
        tuple(int(v) for v in np.round(axes * 8)),
        rng.uniform(0, 180),
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
        shift=3,
    )


def _crease(canvas: Canvas, rng: np.random.Generator) -> None:
    """A fold across the print: long, nearly straight, 2 to 6 pixels wide, often soft."""
    height, wide = canvas.shape
    start = rng.uniform((0, 0), (wide, height))
    points = _walk(rng, start, rng.uniform(0, 2 * np.pi), int(rng.integers(20, 60)), 0.03)
    widths = np.clip(rng.uniform(2, 6) * np.exp(rng.normal(0, 0.2, len(points) - 1)), 1, 8)
    _polyline(canvas, points, widths)


def _craquelure(canvas: Canvas, rng: np.random.Generator) -> None:
    """A patch of fine cracks close together, as on a dried, bent emulsion."""
    height, wide = canvas.shape
    centre = rng.uniform((0, 0), (wide, height))
    for _ in range(int(rng.integers(3, 9))):
        start = centre + rng.normal(0, rng.uniform(5, 30), 2)
        points = _walk(rng, start, rng.uniform(0, 2 * np.pi), int(rng.integers(3, 12)), 0.4)
        _polyline(canvas, points, np.clip(rng.normal(1.3, 0.4, len(points) - 1), 1, 3))


def _scuff(canvas: Canvas, rng: np.random.Generator) -> None:
    """A scuff: a few fine scratches side by side, as from one rub."""
    height, wide = canvas.shape
    start = rng.uniform((0, 0), (wide, height))
    angle = rng.uniform(0, np.pi)
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]])
    length = rng.uniform(15, 90)
    for _ in range(int(rng.integers(2, 6))):
        offset = start + across * rng.uniform(-8, 8) + along * rng.uniform(-5, 5)
        t = np.linspace(0, 1, 8)[:, None]
        points = offset + t * length * rng.uniform(0.5, 1.0) * along
        _polyline(canvas, points, np.ones(len(points) - 1))


_KINDS: tuple[tuple[Shape, float], ...] = (
    (_crack, 1.0),
    (_hair, 0.8),
    (_scratch, 0.6),
    (_dust, 1.2),
    (_blotch, 0.7),
    (_speck, 0.8),
    (_crease, 0.3),
    (_craquelure, 0.4),
    (_scuff, 0.3),
)


def old_print_damage(
    grey: np.ndarray, seed: int, defects: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(damaged copy, clean copy) of a grey photo, (H, W) float32 in [0, 1]. Sometimes both
    get the same film grain (grain is not damage). ``defects`` scales how many there are
    (about 14 per 256 x 256 at 1)."""
    rng = np.random.default_rng(seed)
    clean = grey.astype(np.float32)
    if rng.random() < 0.4:
        grain = rng.normal(0, rng.uniform(0.005, 0.03), grey.shape).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (0, 0), rng.uniform(0.4, 1.0))
        clean = np.clip(clean + grain, 0, 1)
    damaged = clean.copy()
    weights = np.array([w for _, w in _KINDS])
    count = rng.poisson(defects * 14 * grey.size / 256**2)
    for _ in range(count):
        kind = _KINDS[rng.choice(len(_KINDS), p=weights / weights.sum())][0]
        canvas = np.zeros_like(clean)
        kind(canvas, rng)
        if rng.random() < 0.4:  # ragged edges and uneven density along the defect
            noise = cv2.GaussianBlur(rng.random(clean.shape).astype(np.float32), (0, 0), 1.5)
            canvas *= np.clip((noise - noise.mean()) * 8 + 0.8, 0.2, 1.0)
        # Mostly sharp to softly blurred; some far out of focus (a scan of a copy print).
        blur = rng.uniform(0.0, 1.3) if rng.random() < 0.85 else rng.uniform(1.3, 2.2)
        if blur > 0.25:
            canvas = cv2.GaussianBlur(canvas, (0, 0), blur)
        roll = rng.random()
        opacity = 1.0 - 0.75 * rng.random() ** 2  # mostly opaque, some faint
        if roll < 0.5:  # the paper or a white scratch: towards white
            target = np.float32(rng.uniform(0.75, 1.0))
        elif roll < 0.85:  # dirt, a hair: towards black
            target = np.float32(rng.uniform(0.0, 0.3))
        else:  # a faint stain: a fixed step up or down from the photo
            target = np.clip(damaged + rng.choice([-1, 1]) * rng.uniform(0.08, 0.4), 0, 1)
        damaged += opacity * canvas * (target - damaged)
    return damaged.astype(np.float32), clean
