"""Choosing the read-out of a trained run (temperature, prior boost, chroma knee) on validation
photos.

The network runs once per photo; each candidate read-out only changes the arithmetic after it,
so a sweep costs little more than one evaluation. The photos go through the same steps as
``coloi eval`` (OpenCV grey copy, reduction to the model size, full-resolution output).

So that a read-out is not tuned to one source's taste, it is chosen on the photos of half of
the sources (a photo's source is its name up to the first '_') and judged on the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from coloi.color import bgr_to_lab, lab8_to_bgr, lightness, to_grey
from coloi.evaluate import colourfulness, group_of, score_photo, summarise
from coloi.training.network import ReadOut

# Chroma knees (near-grey guesses untouched, colour above the knee made more vivid) buy
# colourfulness at far less false colour than a plain chroma gain or a coherence gain, which
# the sweeps of model v2 showed; the grid spends its photos on them.
KNEES = (
    (0.0, 1.0),
    (20.0, 1.6),
    (20.0, 2.0),
    (24.0, 2.0),
    (24.0, 2.5),
    (24.0, 3.0),
    (28.0, 2.5),
    (28.0, 3.0),
)
GRID = tuple(
    ReadOut(temperature=t, prior_boost=b, knee=k, knee_gain=g)
    for t in (1.0, 0.9, 0.85, 0.8)
    for b in (0.0, 0.25)
    for k, g in KNEES
)
MAX_FALSE_COLOUR = 0.025  # a margin under the 3% that the model is held to


def split_by_source(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(photos to choose on, photos to judge on): every other source, by name. Photos whose
    names carry no source go to either side alternately."""
    sources = sorted({group_of(p, p.parent, "prefix") for p in files} - {"(no prefix)"})
    chosen = set(sources[::2])
    tune: list[Path] = []
    judge: list[Path] = []
    for index, path in enumerate(files):
        source = group_of(path, path.parent, "prefix")
        side = source in chosen if source != "(no prefix)" else index % 2 == 0
        (tune if side else judge).append(path)
    return tune, judge


def sweep(
    model: Any,
    bins: np.ndarray,
    prior: np.ndarray,
    files: Sequence[Path],
    readouts: Sequence[ReadOut] = GRID,
    size: int = 256,
) -> dict[ReadOut, dict[str, float]]:
    """PSNR, AuC, colourfulness ratio, false colour and wrong hue of each read-out on
    ``files`` (colour photos)."""
    scores: dict[ReadOut, list[Any]] = {r: [] for r in readouts}
    truth_colour = []
    for path in files:
        truth = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if truth is None:
            continue
        grey = to_grey(truth)
        truth_lab = bgr_to_lab(truth)
        small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
        logits = np.asarray(model(lightness(small)[None, :, :, None]))[0].astype(np.float64)
        for readout in readouts:
            output = lab8_to_bgr(grey, readout.apply(logits, bins, prior))
            scores[readout].append(score_photo(output, truth, truth_lab))
        truth_colour.append(colourfulness(truth))
    return {r: summarise(s, truth_colour) for r, s in scores.items()}


def choose(
    table: dict[ReadOut, dict[str, float]],
    colour_floor: float,
    max_false_colour: float = MAX_FALSE_COLOUR,
) -> ReadOut:
    """The best PSNR among read-outs whose colourfulness ratio reaches ``colour_floor`` and whose
    false colour stays under ``max_false_colour``; failing that, the best PSNR among those
    under the false-colour limit, then the best PSNR of all."""
    honest = [r for r, s in table.items() if s["false_colour"] <= max_false_colour]
    vivid = [r for r in honest if table[r]["colourfulness_ratio"] >= colour_floor]
    return max(vivid or honest or list(table), key=lambda r: table[r]["psnr"])
