"""Choosing the annealed-mean temperature of a trained run on validation photos.

The network is run once per photo; each candidate temperature only changes the read-out, so a
sweep costs little more than one evaluation. The photos go through the same steps as
``coloi eval`` (OpenCV grey copy, reduction to the model size, full-resolution output).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from coloi.color import lab8_to_bgr, lightness, to_grey
from coloi.evaluate import Scores, colourfulness
from coloi.training import data
from coloi.training.export import load_logits_network


def _annealed_mean(logits: np.ndarray, bins: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    p = np.exp(z - z.max(-1, keepdims=True))
    return ((p / p.sum(-1, keepdims=True)) @ bins).astype(np.float32)


def sweep(run_dir: Path, photos: Path, temperatures: Sequence[float], size: int = 256,
          limit: int | None = None) -> dict[float, dict[str, float]]:
    """PSNR, AuC and colourfulness ratio of the run's best weights at each temperature."""
    model, bins, _ = load_logits_network(run_dir)
    scores = {t: Scores() for t in temperatures}
    truth_colour = []
    for path in data.photo_files(photos)[:limit]:
        truth = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if truth is None:
            continue
        grey = to_grey(truth)
        small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
        logits = np.asarray(model(lightness(small)[None, :, :, None]))[0].astype(np.float64)
        for t in temperatures:
            scores[t].add(lab8_to_bgr(grey, _annealed_mean(logits, bins, t)), truth)
        truth_colour.append(colourfulness(truth))
    reference = float(np.mean(truth_colour))
    return {t: s.summary(reference) for t, s in scores.items()}
