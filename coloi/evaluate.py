"""``coloi eval``: colourise grey copies of colour photos and measure the result against the
truth, beside the grey baseline (a* = b* = 0).

- PSNR on 8-bit RGB;
- AuC of the per-pixel a*b* error over thresholds 0-150 (Zhang et al. 2016);
- colourfulness (Hasler & Suesstrunk 2003) of the outputs as a ratio to the truth's.

Works without TensorFlow: it runs any backend through the normal pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from coloi.color import bgr_to_lab, to_depth, to_grey
from coloi.imageio import Photo, read_photo
from coloi.pipeline import Colouriser

AUC_THRESHOLDS = np.arange(0, 151, dtype=np.float32)


def psnr(output: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((output.astype(np.float64) - truth.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ab_auc(output: np.ndarray, truth: np.ndarray) -> float:
    """Area under the curve of 'share of pixels with a*b* error <= t', t in 0..150, in [0, 1]."""
    error = np.linalg.norm(bgr_to_lab(output)[:, :, 1:] - bgr_to_lab(truth)[:, :, 1:], axis=2)
    counts = np.searchsorted(np.sort(error.ravel()), AUC_THRESHOLDS, side="right")
    return float(np.mean(counts / error.size))


def colourfulness(bgr: np.ndarray) -> float:
    """Hasler & Suesstrunk's M = sigma_rgyb + 0.3 mu_rgyb, on rg = R - G, yb = (R + G)/2 - B."""
    b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    sigma = np.hypot(rg.std(), yb.std())
    mu = np.hypot(rg.mean(), yb.mean())
    return float(sigma + 0.3 * mu)


@dataclass
class Scores:
    psnr: list[float] = field(default_factory=list)
    auc: list[float] = field(default_factory=list)
    colourfulness: list[float] = field(default_factory=list)

    def add(self, output: np.ndarray, truth: np.ndarray) -> None:
        self.psnr.append(psnr(output, truth))
        self.auc.append(ab_auc(output, truth))
        self.colourfulness.append(colourfulness(output))

    def summary(self, truth_colourfulness: float) -> dict[str, float]:
        return {"psnr": round(float(np.mean(self.psnr)), 3),
                "auc": round(float(np.mean(self.auc)), 4),
                "colourfulness_ratio": round(float(np.mean(self.colourfulness))
                                             / truth_colourfulness, 3)}


@dataclass
class Evaluation:
    photos: int
    coloi: dict[str, float]
    grey: dict[str, float]
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]

    def as_dict(self) -> dict[str, object]:
        return {"photos": self.photos, "coloi": self.coloi, "grey_baseline": self.grey}


def evaluate(files: list[Path], colouriser: Colouriser, sheet_rows: int = 0,
             on_photo: Callable[[Path], None] = lambda path: None) -> Evaluation:
    """Measure ``colouriser`` on grey copies of ``files`` (8-bit colour photos)."""
    ours, grey_baseline, truth_colour = Scores(), Scores(), []
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for path in files:
        truth = read_photo(path).pixels
        truth = truth if truth.ndim == 3 else cv2.cvtColor(truth, cv2.COLOR_GRAY2BGR)
        truth = to_depth(truth[:, :, :3] / 65535.0, 8) if truth.dtype == np.uint16 \
            else truth[:, :, :3]
        grey = cv2.cvtColor(to_grey(truth), cv2.COLOR_GRAY2BGR)
        output = colouriser.colourise(Photo(grey[:, :, 0].copy(), "png"))
        ours.add(output, truth)
        grey_baseline.add(grey, truth)
        truth_colour.append(colourfulness(truth))
        if len(rows) < sheet_rows:
            rows.append((grey, output, truth))
        on_photo(path)
    reference = float(np.mean(truth_colour))
    return Evaluation(len(files), ours.summary(reference), grey_baseline.summary(reference), rows)


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  height: int = 192) -> np.ndarray:
    """One row per photo: grey | coloi | truth, each scaled to ``height``."""
    lines = []
    for row in rows:
        scaled = [cv2.resize(img, (max(1, round(img.shape[1] * height / img.shape[0])), height),
                             interpolation=cv2.INTER_AREA) for img in row]
        gap = np.full((height, 6, 3), 255, np.uint8)
        lines.append(np.hstack([scaled[0], gap, scaled[1], gap, scaled[2]]))
    width = max(line.shape[1] for line in lines)
    padded = [np.pad(line, ((0, 6), (0, width - line.shape[1]), (0, 0)), constant_values=255)
              for line in lines]
    return np.vstack(padded)
