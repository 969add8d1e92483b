"""Choosing the read-out of a trained run (temperature, prior boost, chroma gain) on
validation photos.

The network runs once per photo; each candidate read-out only changes the arithmetic after it,
so a sweep costs little more than one evaluation. The photos go through the same steps as
``coloi eval`` (OpenCV grey copy, reduction to the model size, full-resolution output).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from coloi.color import lab8_to_bgr, lightness, to_grey
from coloi.evaluate import Scores, colourfulness
from coloi.training.network import ReadOut

GRID = tuple(ReadOut(t, b, k) for t in (1.0, 0.8) for b in (0.0, 0.25, 0.5, 0.75, 1.0)
             for k in (1.0, 1.1, 1.2, 1.3, 1.4, 1.5))


def sweep(model: Any, bins: np.ndarray, prior: np.ndarray, files: Sequence[Path],
          readouts: Sequence[ReadOut] = GRID, size: int = 256) -> dict[ReadOut, dict[str, float]]:
    """PSNR, AuC and colourfulness ratio of each read-out on ``files`` (colour photos)."""
    scores = {r: Scores() for r in readouts}
    truth_colour = []
    for path in files:
        truth = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if truth is None:
            continue
        grey = to_grey(truth)
        small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
        logits = np.asarray(model(lightness(small)[None, :, :, None]))[0].astype(np.float64)
        for readout in readouts:
            scores[readout].add(lab8_to_bgr(grey, readout.apply(logits, bins, prior)), truth)
        truth_colour.append(colourfulness(truth))
    reference = float(np.mean(truth_colour))
    return {r: s.summary(reference) for r, s in scores.items()}


def choose(table: dict[ReadOut, dict[str, float]], colour_floor: float) -> ReadOut:
    """The best PSNR among read-outs whose colourfulness ratio reaches ``colour_floor`` (the
    most colourful one if none does)."""
    vivid = [r for r, s in table.items() if s["colourfulness_ratio"] >= colour_floor]
    if not vivid:
        return max(table, key=lambda r: table[r]["colourfulness_ratio"])
    return max(vivid, key=lambda r: table[r]["psnr"])
