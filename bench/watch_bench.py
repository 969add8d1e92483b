"""Benchmark of ``coloi watch`` (the daemon issue's acceptance run):

1. a burst of 1,000 photos dropped at once into a watched folder, a third each by copy, by
   slow writes and by rename-into, with corrupt files among them: every photo must get exactly
   one complete output, the corrupt ones logged by name, the daemon still running;
2. the same burst with ``kill -9`` in the middle, then a restart: the same result, and the
   photos done before the kill not done again;
3. the daemon's throughput beside ``coloi run`` on the same photos, and its memory (RSS) over
   the burst.

    python bench/watch_bench.py            # writes bench/watch_results.md and .json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLOI = str(Path(sys.executable).parent / "coloi")
sys.path.insert(0, str(REPO / "bench"))
from bench import machine  # noqa: E402  (the same machine record as bench.py)


def make_photos(folder: Path, count: int, corrupt: int) -> list[Path]:
    """``count`` grey ~256 px JPEGs cut from the samples, plus ``corrupt`` broken files."""
    folder.mkdir(parents=True)
    colour = [cv2.imread(str(p)) for p in sorted((REPO / "samples").glob("*.jpg"))]
    rng = np.random.default_rng(0)
    for i in range(count):
        image = colour[i % len(colour)]
        h, w = image.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(image[top : top + side, left : left + side], (256, 192))
        cv2.imwrite(str(folder / f"photo{i:04}.jpg"), cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    for i in range(corrupt):
        data = (folder / f"photo{i:04}.jpg").read_bytes()
        (folder / f"broken{i}.jpg").write_bytes(data[: len(data) // 3])
    return sorted(folder.iterdir())


def drop(sources: list[Path], watched: Path) -> None:
    """Deliver the photos three ways at once: copy, slow write (in chunks), rename-into."""

    def slow(paths: list[Path]) -> None:
        for path in paths:
            data = path.read_bytes()
            with (watched / path.name).open("wb") as stream:
                for start in range(0, len(data), 4096):
                    stream.write(data[start : start + 4096])
                    stream.flush()
                    time.sleep(0.002)

    def renamed(paths: list[Path]) -> None:
        for path in paths:
            hidden = watched / f".{path.name}.tmp123"
            shutil.copyfile(path, hidden)
            os.rename(hidden, watched / path.name)

    def copied(paths: list[Path]) -> None:
        for path in paths:
            shutil.copyfile(path, watched / path.name)

    workers = [
        threading.Thread(target=f, args=(sources[i::3],))
        for i, f in enumerate((copied, slow, renamed))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.jpg"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(watched: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [COLOI, "watch", str(watched), "-o", str(out), "-b", "tflite"], stderr=log.open("ab")
    )


def burst(
    staged: list[Path], folder: Path, expected: int, kill_after: int | None = None
) -> dict[str, Any]:
    watched, out, log = folder / "watched", folder / "out", folder / "daemon.log"
    watched.mkdir()
    daemon = start(watched, out, log)
    time.sleep(3)  # model loaded and watching
    began = time.perf_counter()
    dropper = threading.Thread(target=drop, args=(staged, watched))
    dropper.start()
    samples: list[tuple[int, float]] = []
    killed_at = None
    while len(outputs(out)) < expected:
        done = len(outputs(out))
        samples.append((done, rss_mb(daemon.pid)))
        if kill_after is not None and killed_at is None and done >= kill_after:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            killed_at = done
            before_restart = {n: (out / n).stat().st_mtime_ns for n in outputs(out)}
            daemon = start(watched, out, log)
        if time.perf_counter() - began > 900:
            raise RuntimeError("the burst did not finish in 15 minutes")
        time.sleep(0.5)
    seconds = time.perf_counter() - began
    dropper.join()
    time.sleep(3)  # anything more (a duplicate) would show now
    alive = daemon.poll() is None
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=60)
    text = log.read_text()
    done_lines = [line for line in text.splitlines() if line.startswith("coloi: done ")]
    done_names = [line.split()[2] for line in done_lines]
    result = {
        "photos": expected,
        "outputs": len(outputs(out)),
        "seconds": round(seconds, 2),
        "photos_per_second": round(expected / seconds, 2),
        "duplicated": len(done_names) - len(set(done_names)),
        "partial_files_left": len(list(out.glob(".*coloi-partial"))),
        "unreadable_outputs": sum(cv2.imread(str(p)) is None for p in out.glob("*.jpg")),
        "corrupt_logged": sorted(
            {
                line.split()[2].rstrip(":")
                for line in text.splitlines()
                if line.startswith("coloi: failed ")
            }
        ),
        "daemon_running_at_end": alive,
        "exit_code_on_sigterm": daemon.returncode,
    }
    rss_after_100 = next((r for d, r in samples if d >= 100), None)
    result["rss_mb_after_100"] = round(rss_after_100 or 0, 1)
    result["rss_mb_max_after_100"] = round(max((r for d, r in samples if d >= 100), default=0), 1)
    result["rss_growth_mb_after_100"] = round(
        result["rss_mb_max_after_100"] - result["rss_mb_after_100"], 1
    )
    if killed_at is not None:
        redone = [n for n in before_restart if (out / n).stat().st_mtime_ns != before_restart[n]]
        result.update(
            killed_after=killed_at,
            done_before_kill=len(before_restart),
            done_again_after_restart=len(redone),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--corrupt", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "watch_results")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        staged = make_photos(folder / "staged", args.photos, args.corrupt)
        (folder / "a").mkdir()
        results["burst"] = burst(staged, folder / "a", args.photos)
        (folder / "b").mkdir()
        results["burst_with_kill"] = burst(
            staged, folder / "b", args.photos, kill_after=args.photos // 3
        )
        photos_only = folder / "run-input"
        photos_only.mkdir()
        for path in staged:
            if path.name.startswith("photo"):
                shutil.copyfile(path, photos_only / path.name)
        started = time.perf_counter()
        subprocess.run(
            [COLOI, "-q", "run", "-b", "tflite", str(photos_only), "-o", str(folder / "run-out")],
            check=True,
        )
        run_seconds = time.perf_counter() - started
    results["coloi_run"] = {
        "photos": args.photos,
        "seconds": round(run_seconds, 2),
        "photos_per_second": round(args.photos / run_seconds, 2),
    }
    results["daemon_vs_run_throughput"] = round(
        results["burst"]["photos_per_second"] / results["coloi_run"]["photos_per_second"], 3
    )
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# coloi watch benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; run {m['date']}.",
        "Command: `python bench/watch_bench.py` (a burst of photos dropped by copy, slow "
        "write and rename-into, with corrupt files; then the same with kill -9 midway).",
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
