"""``coloi eval``: colourise grey copies of colour photos and measure the result against the
truth, beside the grey baseline (a* = b* = 0).

Per photo, then averaged over photos (overall and per group of photos):

- PSNR on 8-bit RGB (capped at 100 dB, for a photo that comes back identical);
- AuC of the per-pixel a*b* error over thresholds 0-150 (Zhang et al. 2016);
- colourfulness (Hasler & Suesstrunk 2003) of the output as a ratio to the truth's;
- false colour: the share of pixels near-neutral in the truth (chroma < 8) but clearly
  coloured in the output (chroma > 20);
- wrong hue: among pixels coloured in both (chroma > 20), the share whose hue differs by more
  than 90 degrees (pooled over the photos' pixels, since a photo may have few such pixels).

Works without TensorFlow: it runs any backend through the normal pipeline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from coloi.color import bgr_to_lab, to_depth, to_grey
from coloi.imageio import Photo, read_photo
from coloi.pipeline import Colouriser

AUC_THRESHOLDS = np.arange(0, 151, dtype=np.float32)
NEUTRAL_CHROMA = 8.0  # below this a truth pixel counts as near-neutral
COLOURED_CHROMA = 20.0  # above this a pixel counts as clearly coloured
WRONG_HUE_DEGREES = 90.0
MAX_PSNR = 100.0
GROUPINGS = ("none", "folder", "prefix")


def psnr(output: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((output.astype(np.float64) - truth.astype(np.float64)) ** 2))
    return MAX_PSNR if mse == 0 else min(MAX_PSNR, 10.0 * np.log10(255.0**2 / mse))


def ab_auc(output_ab: np.ndarray, truth_ab: np.ndarray) -> float:
    """Area under the curve of 'share of pixels with a*b* error <= t', t in 0..150, in [0, 1]."""
    error = np.linalg.norm(output_ab - truth_ab, axis=2)
    counts = np.searchsorted(np.sort(error.ravel()), AUC_THRESHOLDS, side="right")
    return float(np.mean(counts / error.size))


def colourfulness(bgr: np.ndarray) -> float:
    """Hasler & Suesstrunk's M = sigma_rgyb + 0.3 mu_rgyb, on rg = R - G, yb = (R + G)/2 - B."""
    b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    sigma = np.hypot(rg.std(), yb.std())
    mu = np.hypot(rg.mean(), yb.mean())
    return float(sigma + 0.3 * mu)


def colour_errors(output_ab: np.ndarray, truth_ab: np.ndarray) -> tuple[float, int, int]:
    """(false-colour share, wrong-hue pixels, pixels coloured in both) of one photo."""
    out_chroma = np.hypot(output_ab[:, :, 0], output_ab[:, :, 1])
    truth_chroma = np.hypot(truth_ab[:, :, 0], truth_ab[:, :, 1])
    false_colour = float(np.mean((truth_chroma < NEUTRAL_CHROMA) & (out_chroma > COLOURED_CHROMA)))
    both = (truth_chroma > COLOURED_CHROMA) & (out_chroma > COLOURED_CHROMA)
    # cos(angle between the two hues) < cos(90 degrees) = 0
    dot = output_ab[:, :, 0] * truth_ab[:, :, 0] + output_ab[:, :, 1] * truth_ab[:, :, 1]
    wrong = both & (dot < np.cos(np.radians(WRONG_HUE_DEGREES)) * out_chroma * truth_chroma)
    return false_colour, int(wrong.sum()), int(both.sum())


@dataclass
class PhotoScore:
    psnr: float
    auc: float
    colourfulness: float
    false_colour: float
    wrong_hue_pixels: int
    coloured_pixels: int


def score_photo(
    output: np.ndarray,
    truth: np.ndarray,
    truth_lab: np.ndarray | None = None,
) -> PhotoScore:
    """All measures of one 8-bit BGR output against its 8-bit BGR truth."""
    truth_ab = (bgr_to_lab(truth) if truth_lab is None else truth_lab)[:, :, 1:]
    output_ab = bgr_to_lab(output)[:, :, 1:]
    false_colour, wrong, both = colour_errors(output_ab, truth_ab)
    return PhotoScore(
        psnr(output, truth),
        ab_auc(output_ab, truth_ab),
        colourfulness(output),
        false_colour,
        wrong,
        both,
    )


def summarise(
    scores: Sequence[PhotoScore],
    truth_colourfulness: Sequence[float],
) -> dict[str, float]:
    """Means over photos; colourfulness as the mean of per-photo ratios to the truth (photos
    whose truth is practically grey, colourfulness < 1, are left out of that ratio)."""
    ratios = [
        s.colourfulness / t for s, t in zip(scores, truth_colourfulness, strict=True) if t >= 1.0
    ]
    coloured = sum(s.coloured_pixels for s in scores)
    return {
        "psnr": round(float(np.mean([s.psnr for s in scores])), 3),
        "auc": round(float(np.mean([s.auc for s in scores])), 4),
        "colourfulness_ratio": round(float(np.mean(ratios)) if ratios else 0.0, 3),
        "false_colour": round(float(np.mean([s.false_colour for s in scores])), 4),
        "wrong_hue": round(sum(s.wrong_hue_pixels for s in scores) / coloured, 4)
        if coloured
        else 0.0,
    }


def group_of(path: Path, root: Path, by: str) -> str:
    """The group a photo is reported in: its folder under ``root``, or its name's prefix (the
    part before the first '_', how our data names a photo's source)."""
    if by == "folder":
        parent = path.parent.relative_to(root)
        return str(parent) if str(parent) != "." else "."
    if by == "prefix":
        return path.stem.split("_", 1)[0] if "_" in path.stem else "(no prefix)"
    return "all"


@dataclass
class GroupScores:
    photos: int
    coloi: dict[str, float]
    grey_baseline: dict[str, float]


@dataclass
class Evaluation:
    photos: int
    coloi: dict[str, float]
    grey: dict[str, float]
    groups: dict[str, GroupScores]
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]

    def as_dict(self) -> dict[str, object]:
        result: dict[str, object] = {
            "photos": self.photos,
            "coloi": self.coloi,
            "grey_baseline": self.grey,
        }
        if self.groups:
            result["groups"] = {name: asdict(group) for name, group in self.groups.items()}
        return result


def evaluate(
    files: list[Path],
    colouriser: Colouriser,
    sheet_rows: int = 0,
    on_photo: Callable[[Path], None] = lambda path: None,
    root: Path | None = None,
    by: str = "none",
) -> Evaluation:
    """Measure ``colouriser`` on grey copies of ``files`` (8-bit colour photos), overall and
    per group (see :func:`group_of`)."""
    ours: list[PhotoScore] = []
    grey_scores: list[PhotoScore] = []
    truth_colour: list[float] = []
    members: dict[str, list[int]] = defaultdict(list)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for path in files:
        truth = read_photo(path).pixels
        truth = truth if truth.ndim == 3 else cv2.cvtColor(truth, cv2.COLOR_GRAY2BGR)
        truth = (
            to_depth(truth[:, :, :3] / 65535.0, 8) if truth.dtype == np.uint16 else truth[:, :, :3]
        )
        grey = cv2.cvtColor(to_grey(truth), cv2.COLOR_GRAY2BGR)
        output = colouriser.colourise(Photo(grey[:, :, 0].copy(), "png"))
        truth_lab = bgr_to_lab(truth)
        members[group_of(path, root or path.parent, by)].append(len(ours))
        ours.append(score_photo(output, truth, truth_lab))
        grey_scores.append(score_photo(grey, truth, truth_lab))
        truth_colour.append(colourfulness(truth))
        if len(rows) < sheet_rows:
            rows.append((grey, output, truth))
        on_photo(path)
    groups: dict[str, GroupScores] = {}
    if by != "none":
        for name, index in sorted(members.items()):
            colour = [truth_colour[i] for i in index]
            groups[name] = GroupScores(
                len(index),
                summarise([ours[i] for i in index], colour),
                summarise([grey_scores[i] for i in index], colour),
            )
    return Evaluation(
        len(files),
        summarise(ours, truth_colour),
        summarise(grey_scores, truth_colour),
        groups,
        rows,
    )


def stack_sheets(sheets: Sequence[np.ndarray], gap: int = 0) -> np.ndarray:
    """Sheets one above the other, padded white to the widest, ``gap`` white rows between."""
    width = max(sheet.shape[1] for sheet in sheets)
    return np.vstack(
        [
            np.pad(sheet, ((0, gap), (0, width - sheet.shape[1]), (0, 0)), constant_values=255)
            for sheet in sheets
        ]
    )


def contact_sheet(
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], height: int = 192
) -> np.ndarray:
    """One row per photo: grey | coloi | truth, each scaled to ``height``."""
    lines = []
    for row in rows:
        scaled = [
            cv2.resize(
                img,
                (max(1, round(img.shape[1] * height / img.shape[0])), height),
                interpolation=cv2.INTER_AREA,
            )
            for img in row
        ]
        gap = np.full((height, 6, 3), 255, np.uint8)
        lines.append(np.hstack([scaled[0], gap, scaled[1], gap, scaled[2]]))
    width = max(line.shape[1] for line in lines)
    padded = [
        np.pad(line, ((0, 6), (0, width - line.shape[1]), (0, 0)), constant_values=255)
        for line in lines
    ]
    return np.vstack(padded)
