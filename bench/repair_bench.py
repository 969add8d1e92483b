"""Benchmark of the ``repair`` step (and the ``--pre auto`` chain): quality on grey copies of
validation photos with synthetic damage, no harm on undamaged photos, and speed on 12 MP.

    python bench/repair_bench.py ../shared/data/val          # writes bench/repair_results.*
    python bench/repair_bench.py ../shared/data/val --photos 100 --repeats 3

The damage here comes from a generator of its own (``heldout_damage``), written before and
apart from the one ``repair``'s detector is trained with (tests/damage.py,
``old_print_damage``), with its own shapes and parameters: branching crack networks that show
the paper white, wavy hairs, irregular dust of several blobs and short ragged nicks, each with
its own opacity, width changes along its length and blur. It is never used for training or
for choosing the detector's settings.

Defect pixels (for precision and recall) are those the damage changed by more than 2 L*;
``repair``'s detected pixels are its mask. No harm: the share of pixels of an undamaged photo
that ``repair`` changes by more than 5 L*.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench import COLOI, machine, repeat_process, stats  # noqa: E402
from coloi.color import lightness  # noqa: E402
from coloi_plugins.repair import Repair, defect_mask  # noqa: E402

DEFECT_LSTAR = 2.0  # a pixel the damage changed by more than this is a defect pixel
HARM_LSTAR = 5.0  # a change larger than this on an undamaged photo is harm
HARM_LIMIT = 0.5  # percent of pixels
GAIN_TARGET = 4.0  # dB
REPAIR_LIMIT = 0.5  # s, 12 MP
CHAIN_LIMIT = 1.5  # s, 12 MP JPEG, --pre auto + colour


def _draw(canvas: np.ndarray, points: np.ndarray, widths: np.ndarray) -> None:
    """A polyline whose width changes from segment to segment."""
    for (a, b), width in zip(itertools.pairwise(points), widths, strict=False):
        cv2.line(
            canvas,
            tuple(int(v) for v in np.round(a * 8)),
            tuple(int(v) for v in np.round(b * 8)),
            1.0,
            int(width),
            cv2.LINE_AA,
            shift=3,
        )


def _crack(canvas: np.ndarray, rng: np.random.Generator, scale: float, depth: int = 0) -> None:
    """A random walk that turns a little at every step and sometimes branches."""
    height, width = canvas.shape
    point = rng.uniform((0, 0), (width, height))
    heading = rng.uniform(0, 2 * np.pi)
    steps = int(rng.integers(15, 45))
    points = [point]
    for _ in range(steps):
        heading += rng.normal(0, 0.35)
        point = point + rng.uniform(2, 6) * scale * np.array([np.cos(heading), np.sin(heading)])
        points.append(point)
        if depth < 2 and rng.random() < 0.06:
            branch = np.zeros_like(canvas)
            _crack(branch, rng, scale * 0.8, depth + 1)
            np.maximum(
                canvas,
                np.roll(branch, (int(point[1] - height / 2), int(point[0] - width / 2)), (0, 1)),
                out=canvas,
            )
    widths = np.clip(np.round(rng.normal(1.6, 0.7, steps) * scale), 1, 4 * scale)
    _draw(canvas, np.array(points), widths)


def _hair(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    height, width = canvas.shape
    start = rng.uniform((0, 0), (width, height))
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.15, 0.5) * max(height, width)
    t = np.linspace(0, 1, 60)
    wave = (
        rng.uniform(2, 8)
        * scale
        * np.sin(2 * np.pi * rng.uniform(0.5, 2.5) * t + rng.uniform(0, 6))
    )
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]])
    points = start + length * t[:, None] * along + wave[:, None] * across
    _draw(canvas, points, np.full(len(points) - 1, max(1, round(scale))))


def _dust(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    height, width = canvas.shape
    centre = rng.uniform((0, 0), (width, height))
    for _ in range(int(rng.integers(1, 4))):
        offset = centre + rng.normal(0, 1.2 * scale, 2)
        axes = (
            max(1, int(rng.uniform(0.5, 2.5) * scale)),
            max(1, int(rng.uniform(0.5, 1.8) * scale)),
        )
        cv2.ellipse(
            canvas,
            (int(offset[0]), int(offset[1])),
            axes,
            rng.uniform(0, 180),
            0,
            360,
            1.0,
            -1,
            cv2.LINE_AA,
        )


def _nick(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """A short ragged tear: a few jittered segments, thick in the middle."""
    height, width = canvas.shape
    start = rng.uniform((0, 0), (width, height))
    angle = rng.uniform(0, 2 * np.pi)
    count = 6
    length = rng.uniform(8, 20) * scale
    t = np.linspace(0, 1, count + 1)
    points = (
        start
        + length * t[:, None] * np.array([np.cos(angle), np.sin(angle)])
        + rng.normal(0, 0.8 * scale, (count + 1, 2))
    )
    widths = np.round(1 + 2 * scale * np.sin(np.pi * (t[:-1] + 0.5 / count)))
    _draw(canvas, points, widths)


def heldout_damage(grey: np.ndarray, seed: int) -> np.ndarray:
    """A damaged copy of a grey photo (H, W) float32 in [0, 1], by the benchmark's own
    generator. Sizes scale with the photo: 1 at 256 pixels on the shorter side."""
    rng = np.random.default_rng(10_000 + seed)
    scale = max(1.0, min(grey.shape) / 256)
    damaged = grey.copy()
    kinds = (
        [_crack] * int(rng.integers(1, 4))
        + [_hair] * int(rng.integers(0, 3))
        + [_dust] * int(rng.integers(3, 12))
        + [_nick] * int(rng.integers(0, 3))
    )
    for kind in kinds:
        canvas = np.zeros_like(grey)
        kind(canvas, rng, scale)
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.3, 0.9) * scale)
        if kind is _crack or (kind is _nick) or rng.random() < 0.4:
            level = rng.uniform(0.8, 0.97)  # the paper shows through
        else:
            level = rng.uniform(0.02, 0.25)  # dirt, a hair
        opacity = rng.uniform(0.55, 1.0)
        damaged += opacity * canvas * (level - damaged)
    return damaged.astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(100.0**2 / max(float(np.mean((a - b) ** 2)), 1e-10)))


def quality(folder: Path, photos: int) -> dict[str, Any]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = files[:: max(1, len(files) // photos)][:photos]
    step = Repair()
    gains, before, after, harm, harm_pixels, total_pixels = [], [], [], [], 0, 0
    true_positive = false_positive = false_negative = 0
    visible_found = visible = 0
    for index, path in enumerate(files):
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        clean = lightness(grey)
        changed = np.abs(lightness(step.process(grey)) - clean) > HARM_LSTAR
        harm.append(float(changed.mean()) * 100)
        harm_pixels += int(changed.sum())
        total_pixels += changed.size

        damaged = heldout_damage(grey, index)
        damaged_l = lightness(damaged)
        repaired_l = lightness(step.process(damaged))
        before.append(psnr(damaged_l, clean))
        after.append(psnr(repaired_l, clean))
        gains.append(after[-1] - before[-1])
        error = np.abs(damaged_l - clean)
        truth = error > DEFECT_LSTAR
        found = defect_mask(damaged) > 0
        true_positive += int((found & truth).sum())
        false_positive += int((found & ~truth).sum())
        false_negative += int((~found & truth).sum())
        visible += int((error > 10).sum())
        visible_found += int((found & (error > 10)).sum())
    return {
        "photos": len(files),
        "psnr_damaged_db": round(statistics.mean(before), 2),
        "psnr_repaired_db": round(statistics.mean(after), 2),
        "psnr_gain_db": round(statistics.mean(gains), 2),
        "psnr_gain_median_db": round(statistics.median(gains), 2),
        "photos_worse": sum(g < 0 for g in gains),
        "harm_percent": round(harm_pixels / total_pixels * 100, 3),
        "harm_percent_median_photo": round(statistics.median(harm), 3),
        "harm_percent_worst_photo": round(max(harm), 3),
        "photos_over_harm_limit": sum(h >= HARM_LIMIT for h in harm),
        "precision": round(true_positive / max(true_positive + false_positive, 1), 3),
        "recall": round(true_positive / max(true_positive + false_negative, 1), 3),
        "recall_over_10_lstar": round(visible_found / max(visible, 1), 3),
    }


def scan12(folder: Path) -> tuple[Path, np.ndarray]:
    """A 12 MP grey scan with grain and held-out damage, as a JPEG, made from samples/."""
    colour = cv2.imread(str(REPO / "samples" / "chelsea.jpg"))
    base = (
        cv2.cvtColor(
            cv2.resize(colour, (4000, 3000), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2GRAY
        ).astype(np.float32)
        / 255.0
    )
    grain = np.random.default_rng(0).normal(0, 4 / 255, base.shape).astype(np.float32)
    damaged = heldout_damage(np.clip(base + grain, 0, 1), 0)
    levels = np.clip(damaged * 255 + 0.5, 0, 255).astype(np.uint8)
    path = folder / "scan12.jpg"
    cv2.imwrite(str(path), levels, [cv2.IMWRITE_JPEG_QUALITY, 92])
    tiff = folder / "scan12-16bit.tif"
    cv2.imwrite(
        str(tiff),
        np.clip(damaged * 65535 + 0.5, 0, 65535).astype(np.uint16),
        [cv2.IMWRITE_TIFF_COMPRESSION, 1],
    )
    return path, damaged


def speed(repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        jpeg, damaged = scan12(folder)
        for name, step in (("repair", Repair()), ("unfade", None)):
            if step is None:
                from coloi_plugins.preprocess import Unfade

                step = Unfade()
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                step.process(damaged)
                times.append(time.perf_counter() - started)
            results[f"{name}_12mp_in_process"] = {"wall_s": stats(times)}
        out = folder / "out"

        def clean() -> None:
            subprocess.run(["rm", "-rf", str(out)], check=True)

        for name, extra, photo in (
            ("colour_only", [], jpeg),
            ("auto_and_colour", ["--pre", "auto"], jpeg),
            ("auto_and_colour_16bit_tiff", ["--pre", "auto"], folder / "scan12-16bit.tif"),
        ):
            command = [COLOI, "-q", "run", "-b", "tflite", *extra, str(photo), "-o", str(out)]
            entry = repeat_process(command, repeats, before=clean)
            entry["command"] = (
                entry["command"]
                .replace(scratch, "$WORK")
                .replace(str(Path(COLOI).parent), ".venv/bin")
            )
            results[f"{name}_12mp"] = entry
    return results


def report(results: dict[str, Any]) -> str:
    m, q, s = results["machine"], results["quality"], results["speed"]
    rows = [
        (
            "PSNR gain of L* on damaged photos (mean)",
            f"{q['psnr_gain_db']} dB",
            f">= {GAIN_TARGET} dB",
            q["psnr_gain_db"] >= GAIN_TARGET,
        ),
        (
            "undamaged pixels changed by > 5 L*",
            f"{q['harm_percent']} %",
            f"< {HARM_LIMIT} %",
            q["harm_percent"] < HARM_LIMIT,
        ),
        (
            "repair, 12 MP, in process",
            f"{s['repair_12mp_in_process']['wall_s']['median']} s",
            f"<= {REPAIR_LIMIT} s",
            s["repair_12mp_in_process"]["wall_s"]["median"] <= REPAIR_LIMIT,
        ),
        (
            "--pre auto + colour, 12 MP JPEG, wall incl. start",
            f"{s['auto_and_colour_12mp']['wall_s']['median']} s",
            f"<= {CHAIN_LIMIT} s",
            s["auto_and_colour_12mp"]["wall_s"]["median"] <= CHAIN_LIMIT,
        ),
    ]
    lines = [
        "# coloi repair benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; "
        f"run {m['date']}. {results['note']}",
        f"Command: `{results['command']}`",
        "",
        f"## Quality ({q['photos']} validation photos, grey copies, held-out damage generator)",
        "",
        "| measurement | value |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in q.items()),
        "",
        "## Speed (median of repeats; min-max in brackets)",
        "",
        "| measurement | wall s | command |",
        "|---|---|---|",
    ]
    for key, entry in s.items():
        wall = entry["wall_s"]
        lines.append(
            f"| {key} | {wall['median']} [{wall['min']}-{wall['max']}] | "
            f"`{entry.get('command', 'in process, Repair().process / Unfade().process')}` |"
        )
    lines += ["", "## Targets", "", "| target | value | limit | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {'yes' if d else 'NO'} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="validation photos (colour or grey)")
    parser.add_argument("--photos", type=int, default=473)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="", help="a line for the results, e.g. CPU sharing")
    args = parser.parse_args()
    results = {
        "machine": machine(),
        "note": args.note,
        "command": "python bench/repair_bench.py " + " ".join(sys.argv[1:]),
        "quality": quality(args.folder, args.photos),
        "speed": speed(args.repeats),
    }
    (REPO / "bench" / "repair_results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (REPO / "bench" / "repair_results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
