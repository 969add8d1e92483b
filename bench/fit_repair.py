"""Fit the score that ``repair`` gives each candidate piece (a logistic regression on the
features of plugins/repair.py) and write them to plugins/repair_weights.py.

    python bench/fit_repair.py ../shared/data/train --photos 400

The photos are colour or grey photos of the *training* set, damaged with the development
generator (tests/damage.py); the benchmark (bench/repair_bench.py) measures on the validation
photos with a different generator. A piece counts as a defect when at least half of its
pixels are covered by the generated damage. Pieces are weighted by their area, because
changed pixels, not pieces, are what the benchmark counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "plugins" / "repair_weights.py"
sys.path.insert(0, str(REPO))

from coloi_plugins import repair  # noqa: E402
from tests.damage import damage  # noqa: E402


def pieces(
    grey: np.ndarray, coverage: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, is-defect, area) of every candidate piece of one photo."""
    width = repair.largest_width(grey.shape, 0)
    found = repair.candidates(grey, width)
    area = found.stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    if coverage is None:
        covered = np.zeros(len(area))
    else:
        covered = np.bincount(
            found.piece, weights=coverage.ravel()[found.where] > 0.3, minlength=len(area)
        )
    return found.features[1:], (covered / area >= 0.5)[1:], area[1:]


def fit(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Weighted L2-regularised logistic regression by Newton's method."""
    w = np.zeros(x.shape[1])
    weight = weight / weight.mean()
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (weight * (p - y)) / len(y) + l2 * w
        hessian = (x * (weight * p * (1 - p))[:, None]).T @ x / len(y) + l2 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--photos", type=int, default=400)
    args = parser.parse_args()
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    files = files[:: max(1, len(files) // args.photos)][: args.photos]
    xs, ys, areas = [], [], []
    for index, path in enumerate(files):
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        damaged, coverage = damage(grey, seed=index)
        for photo, truth in ((grey, None), (damaged, coverage)):
            x, y, a = pieces(photo, truth)
            xs.append(x)
            ys.append(y)
            areas.append(a)
    x, y, area = np.concatenate(xs), np.concatenate(ys).astype(np.float64), np.concatenate(areas)
    w = fit(x.astype(np.float64), y, area)
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    kept = p > 0.5
    print(
        f"{len(files)} photos, {len(y)} pieces, {int(y.sum())} defects; "
        f"area-weighted precision {area[kept & (y > 0)].sum() / max(area[kept].sum(), 1):.3f} "
        f"recall {area[kept & (y > 0)].sum() / max(area[y > 0].sum(), 1):.3f}"
    )
    values = ",\n    ".join(
        ", ".join(f"{v:.6g}" for v in w[i : i + 6]) for i in range(0, len(w), 6)
    )
    WEIGHTS.write_text(
        '"""The weights of ``repair``\'s piece score, written by bench/fit_repair.py from '
        f"{len(files)} photos\nof the training set with the development damage generator "
        '(tests/damage.py). Do not edit."""\n\n'
        f"WEIGHTS = (\n    {values},\n)\n"
    )
    print(f"wrote {WEIGHTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
