"""Benchmark of ``coloi run --engine ray`` (the scale-out issue's acceptance run):

1. throughput of ``--engine ray`` beside ``--engine local`` on the same 1,000 photos (~256 px
   grey JPEGs cut from the samples, in a tree of folders): the whole run, and photos per second
   from the first output to the last (Ray's start-up is a fixed cost paid once per run);
2. the driver's peak memory over a tree of 1,000,000 entries. The tree is made cheaply: 1,000
   folders of 1,000 hard links to one small photo each (few inodes, no data). Every output is
   already there (hard links again) and the run is given ``--skip-existing``, so the real
   driver, with its Ray started and its workers loaded, does the listing stage alone: it lists
   each folder, looks at each output and skips it. Its peak RSS is its own VmHWM (read from
   /proc while it runs; Ray's own processes are not counted, being other processes). The same
   stage is also measured without Ray, in a bare process (list + look at each output).

    python bench/ray_bench.py            # writes bench/ray_results.md and .json
    python bench/ray_bench.py --entries 100000   # a smaller tree
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLOI = str(Path(sys.executable).parent / "coloi")
sys.path.insert(0, str(REPO / "bench"))
from bench import machine  # noqa: E402  (the same machine record as bench.py)

# No cluster or settings from the environment: a Ray started by coloi on this machine.
ENV = {**os.environ, "RAY_ADDRESS": "", "COLOI_RAY_ADDRESS": "", "COLOI_CONFIG": os.devnull}


def make_photos(folder: Path, count: int) -> None:
    """``count`` grey ~256 px JPEGs cut from the samples, 100 to a folder."""
    colour = [cv2.imread(str(p)) for p in sorted((REPO / "samples").glob("*.jpg"))]
    rng = np.random.default_rng(0)
    for i in range(count):
        image = colour[i % len(colour)]
        h, w = image.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(image[top : top + side, left : left + side], (256, 192))
        path = folder / f"box{i // 100:02}" / f"photo{i:04}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))


def timed_run(args: list[str]) -> dict[str, Any]:
    """Run ``coloi ARGS``, noting when each output's line arrives on stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [COLOI, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV
    )
    assert process.stdout is not None
    arrivals = [time.perf_counter() - started for _ in process.stdout]
    process.wait()
    total = time.perf_counter() - started
    assert process.returncode == 0, f"coloi {' '.join(args)}: exit {process.returncode}"
    first, last = arrivals[0], arrivals[-1]
    return {
        "outputs": len(arrivals),
        "seconds": round(total, 2),
        "first_output_after_s": round(first, 2),
        "photos_per_second": round(len(arrivals) / total, 1),
        "photos_per_second_after_first_output": round((len(arrivals) - 1) / (last - first), 1),
    }


def throughput(folder: Path, count: int, repeats: int) -> dict[str, Any]:
    photos = folder / "photos"
    make_photos(photos, count)
    best: dict[str, dict[str, Any]] = {}
    for attempt in range(repeats):  # alternated, best of each: the machine is shared
        for engine in ("local", "ray"):
            out = folder / f"out-{engine}-{attempt}"
            result = timed_run(
                ["run", "-b", "tflite", "--engine", engine, str(photos), "-o", str(out)]
            )
            assert result["outputs"] == count
            key = "photos_per_second_after_first_output"
            if engine not in best or result[key] > best[engine][key]:
                best[engine] = result
    return {
        "photos": count,
        "repeats": repeats,
        "local": best["local"],
        "ray": best["ray"],
        "ratio_whole_run": round(
            best["ray"]["photos_per_second"] / best["local"]["photos_per_second"], 3
        ),
        "ratio_after_first_output": round(
            best["ray"]["photos_per_second_after_first_output"]
            / best["local"]["photos_per_second_after_first_output"],
            3,
        ),
    }


def make_tree(folder: Path, entries: int) -> tuple[Path, Path]:
    """``entries`` photos in folders of 1,000, and an output for each: in each folder, hard
    links to one small photo (and to one output), as a filesystem allows only so many links
    to one file (65,000 on ext4)."""
    photo = cv2.imencode(".png", np.full((8, 8), 128, np.uint8))[1].tobytes()
    output = cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    tree, out = folder / "tree", folder / "tree-out"
    for index in range(entries):
        name = f"d{index // 1000:04}/p{index % 1000:03}.png"
        if index % 1000 == 0:
            for root, data in ((tree, photo), (out, output)):
                (root / name).parent.mkdir(parents=True)
                first = root / name
                first.write_bytes(data)
            first_photo, first_output = tree / name, out / name
        else:
            os.link(first_photo, tree / name)
            os.link(first_output, out / name)
    return tree, out


def peak_rss_mb(pid: int, process: subprocess.Popen[bytes]) -> float:
    """The process's VmHWM (peak resident set), read until it exits."""
    peak = 0
    while process.poll() is None:
        try:
            for line in Path("/proc", str(pid), "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return round(peak / 1024, 1)


LISTING_ALONE = """
import resource, sys, time
from pathlib import Path
from coloi.batch import Job, existing_output, plan_jobs, removing_partial_writes
started = time.perf_counter()
first = None
count = 0
for item in removing_partial_writes(plan_jobs([Path(sys.argv[1])], Path(sys.argv[2]), None)):
    assert isinstance(item, Job) and existing_output(item, False, True).skipped
    count += 1
    first = first or time.perf_counter() - started
print(count, round(first, 4), round(time.perf_counter() - started, 1),
      round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
"""


def driver_memory(folder: Path, entries: int) -> dict[str, Any]:
    started = time.perf_counter()
    tree, out = make_tree(folder, entries)
    made = time.perf_counter() - started
    alone = subprocess.run(
        [sys.executable, "-c", LISTING_ALONE, str(tree), str(out)],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    ).stdout.split()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            COLOI,
            "run",
            "--engine",
            "ray",
            "-b",
            "tflite",
            "--skip-existing",
            str(tree),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    peak = peak_rss_mb(process.pid, process)
    seconds = time.perf_counter() - started
    assert process.returncode == 0
    return {
        "entries": entries,
        "tree_made_in_s": round(made, 1),
        "driver_peak_rss_mb": peak,
        "driver_seconds": round(seconds, 1),
        "listing_alone": {
            "entries": int(alone[0]),
            "first_job_after_s": float(alone[1]),
            "seconds": float(alone[2]),
            "peak_rss_mb": float(alone[3]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "ray_results")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        results["throughput"] = throughput(Path(tmp), args.photos, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        results["driver_memory"] = driver_memory(Path(tmp), args.entries)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# coloi run --engine ray benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; run {m['date']}.",
        f"Command: `python bench/ray_bench.py --photos {args.photos} --repeats "
        f"{args.repeats} --entries {args.entries}` (best of the repeats for each "
        f"engine, alternated; a Ray started by coloi on this machine).",
        "",
        "```json",
        json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2),
        "```",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
