"""Choose ``repair``'s thresholds (and compare detector checkpoints) on the *development*
damage generator (tests/damage.py, ``old_print_damage``), never on the benchmark's.

    python bench/repair_dev.py ../shared/data/val --photos 60
    python bench/repair_dev.py ../shared/data/val --model candidate.tflite

For every photo of a strided subset it damages a grey copy with the development generator,
runs the detector once on the damaged and once on the undamaged copy, and then, for each
pair of hysteresis thresholds (a pixel is kept above ``low`` in a piece that reaches
``high``) and each mask growth, measures what the benchmark measures: the mean PSNR gain of
L*, the share of undamaged pixels changed by more than 5 L* (harm), and the precision and
recall of defect pixels. It prints one row per setting.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from repair_bench import DEFECT_LSTAR, HARM_LSTAR, psnr  # noqa: E402  (the same measures)

from coloi.color import lightness  # noqa: E402
from coloi_plugins import repair  # noqa: E402
from tests.damage import old_print_damage  # noqa: E402


def use_model(path: Path) -> None:
    """Make ``repair`` run the detector in ``path`` instead of the shipped one."""
    from ai_edge_litert.interpreter import Interpreter

    repair._interpreter.cache_clear()
    repair._interpreter = functools.cache(lambda: Interpreter(model_path=str(path)))


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def mask_of(logits: np.ndarray, low: float, high: float, grow: int) -> np.ndarray:
    mask = repair._above(repair._hysteresis(logits, low, high), low)
    if grow:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        mask = cv2.dilate(mask, kernel)
    return mask


def blended(
    grey: np.ndarray, mask: np.ndarray, logits: np.ndarray, blend: float | None
) -> np.ndarray:
    if blend is None:
        return repair.fill(grey, mask)
    return repair.fill(grey, mask, logits + np.float32(blend))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="validation photos")
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--model", type=Path, help="a candidate detector (.tflite)")
    parser.add_argument("--lows", default="-1,-0.5,0,0.5")
    parser.add_argument("--highs", default="1,1.5,2.5")
    parser.add_argument("--grows", default="0,1")
    parser.add_argument(
        "--blends",
        default="none",
        help="'none' (a found pixel is replaced) or biases b: a found pixel becomes "
        "sigmoid(logit + b) of the fill and the rest its own value",
    )
    parser.add_argument("--amount", type=float, default=1.0, help="how much damage")
    parser.add_argument(
        "--harm-photos",
        type=int,
        default=0,
        help="measure harm on this many undamaged photos instead (no damage is involved)",
    )
    args = parser.parse_args()
    if args.model:
        use_model(args.model)
    every = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    # Another stride than the benchmark's, so that the two rarely share a photo.
    files = every[1 :: max(1, len(every) // args.photos)][: args.photos]
    cases = []
    for index, path in enumerate(files):
        grey = read(path)
        damaged, clean = old_print_damage(grey, 7_000 + index, args.amount)
        cases.append((damaged, clean, repair.defect_logits(damaged)))
    if args.harm_photos:
        files = every[:: max(1, len(every) // args.harm_photos)][: args.harm_photos]
    undamaged = [(grey, repair.defect_logits(grey)) for grey in map(read, files)]
    settings = itertools.product(
        *(tuple(float(v) for v in text.split(",")) for text in (args.lows, args.highs)),
        tuple(int(v) for v in args.grows.split(",")),
        tuple(None if v == "none" else float(v) for v in args.blends.split(",")),
    )
    print("low high grow blend | gain_db harm_% precision recall")
    for low, high, grow, blend in settings:
        if high < low:
            continue
        gains, harmed, pixels, tp, fp, fn = [], 0, 0, 0, 0, 0
        for grey, grey_logits in undamaged:
            mask = mask_of(grey_logits, low, high, grow)
            fixed = blended(grey, mask, grey_logits, blend)
            changed = np.abs(lightness(fixed) - lightness(grey)) > HARM_LSTAR
            harmed += int(changed.sum())
            pixels += changed.size
        for damaged, clean, logits in cases:
            clean_l, damaged_l = lightness(clean), lightness(damaged)
            mask = mask_of(logits, low, high, grow)
            repaired_l = lightness(blended(damaged, mask, logits, blend))
            gains.append(psnr(repaired_l, clean_l) - psnr(damaged_l, clean_l))
            truth, found = np.abs(damaged_l - clean_l) > DEFECT_LSTAR, mask > 0
            tp += int((truth & found).sum())
            fp += int((~truth & found).sum())
            fn += int((truth & ~found).sum())
        print(
            f"{low:4} {high:4} {grow} {blend} | {statistics.mean(gains):6.2f} "
            f"{harmed / pixels * 100:6.3f} {tp / max(tp + fp, 1):6.3f} {tp / max(tp + fn, 1):6.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
