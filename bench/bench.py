"""coloi's benchmark suite: cold start, single photos, batches, large scans, model-only time
beside this machine's compute floor, and coloi beside the plain pipeline's floor.

    python bench/bench.py                 # writes bench/results.md and bench/results.json
    python bench/bench.py --repeats 3     # fewer repeats

Every figure is the median of several runs, with min and max. Run it on an otherwise idle
machine; the photos are made from samples/ in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLOI = str(Path(sys.executable).parent / "coloi")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


GNU_TIME = "/usr/bin/time"


def timed_process(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process.

    Peak RSS comes from GNU time where it is installed: wait4's ru_maxrss would count the
    benchmark's own memory too, which a forked child inherits as its high-water mark.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        prefix = [GNU_TIME, "-f", "%M", "-o", report.name] if os.path.exists(GNU_TIME) else []
        started = time.perf_counter()
        process = subprocess.Popen(
            prefix + command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()}")
        peak_kb = int(report.read().split()[-1]) if prefix else usage.ru_maxrss
    return wall, peak_kb / 1024


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "runs": len(values),
    }


def repeat_process(
    command: list[str], repeats: int, before: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    walls, peaks = [], []
    for _ in range(repeats):
        before()
        wall, peak = timed_process(command)
        walls.append(wall)
        peaks.append(peak)
    return {"wall_s": stats(walls), "peak_rss_mb": stats(peaks), "command": " ".join(command)}


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One entry from single-run entries of the same command."""
    walls = [run["wall_s"]["median"] for run in runs]
    peaks = [run["peak_rss_mb"]["median"] for run in runs]
    return {"wall_s": stats(walls), "peak_rss_mb": stats(peaks), "command": runs[0]["command"]}


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    from importlib import metadata

    versions = {}  # read from metadata: importing TensorFlow here would skew what follows
    for package in (
        "numpy",
        "opencv-python-headless",
        "pillow",
        "ai-edge-litert",
        "tensorflow",
        "keras",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    import coloi

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "coloi": coloi.__version__,
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def make_photos(folder: Path) -> dict[str, Path]:
    """Grey test photos made from the shipped samples: ~256 px snapshots and large scans."""
    colour = [cv2.imread(str(p)) for p in sorted((REPO / "samples").glob("*.jpg"))]
    rng = np.random.default_rng(0)
    small = folder / "small"
    small.mkdir()
    for i in range(120):
        image = colour[i % len(colour)]
        h, w = image.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(image[top : top + side, left : left + side], (256, int(256 * 0.75)))
        cv2.imwrite(str(small / f"snap{i:03}.jpg"), cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))

    def scan(width: int, height: int) -> np.ndarray:
        base = cv2.resize(colour[2], (width, height), interpolation=cv2.INTER_CUBIC)
        grain = rng.normal(0, 4, (height, width)).astype(np.float32)
        return np.clip(cv2.cvtColor(base, cv2.COLOR_BGR2GRAY) + grain, 0, 255).astype(np.uint8)

    paths = {"small": small}
    twelve = scan(4000, 3000)
    paths["jpeg12"] = folder / "scan12.jpg"
    cv2.imwrite(str(paths["jpeg12"]), twelve, [cv2.IMWRITE_JPEG_QUALITY, 92])
    paths["tiff12"] = folder / "scan12-16bit.tif"
    cv2.imwrite(
        str(paths["tiff12"]), twelve.astype(np.uint16) * 257, [cv2.IMWRITE_TIFF_COMPRESSION, 1]
    )
    batch = folder / "batch12"
    batch.mkdir()
    for i in range(6):
        cv2.imwrite(
            str(batch / f"scan{i}.jpg"),
            np.roll(twelve, i * 97, axis=1),
            [cv2.IMWRITE_JPEG_QUALITY, 92],
        )
    paths["batch12"] = batch
    paths["jpeg50"] = folder / "scan50.jpg"
    cv2.imwrite(str(paths["jpeg50"]), scan(8660, 5776), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return paths


def matmul_rates() -> dict[str, float]:
    """This machine's float32 (NumPy/BLAS) and int8 (LiteRT/XNNPACK) matrix-multiply rates."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        a @ a
        runs.append(time.perf_counter() - started)
    rates = {"float32_gflops": round(2 * 2048**3 / min(runs) / 1e9, 1)}
    int8 = _int8_matmul_model()
    if int8 is not None:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=int8, num_threads=os.cpu_count())
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]
        interpreter.set_tensor(index, np.ones((1, 64, 64, 512), np.float32))
        interpreter.invoke()
        runs = []
        for _ in range(10):
            started = time.perf_counter()
            interpreter.invoke()
            runs.append(time.perf_counter() - started)
        rates["int8_gops"] = round(2 * 64 * 64 * 512 * 512 / min(runs) / 1e9, 1)
    return rates


def _int8_matmul_model() -> bytes | None:
    """A 1x1 convolution (a matrix multiply) quantised to int8; needs TensorFlow to build."""
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf
    except ImportError:
        return None
    inputs = keras.Input((64, 64, 512), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(512, 1, use_bias=False)(inputs))
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [np.random.default_rng(i).standard_normal((1, 64, 64, 512)).astype(np.float32)]
            for i in range(4)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        model_bytes: bytes = converter.convert()
        return model_bytes


def model_flops() -> int:
    """2 x multiply-adds of the shipped int8 network, counted from its LiteRT graph."""
    from ai_edge_litert.interpreter import Interpreter

    from coloi.models import find_model

    interpreter = Interpreter(model_path=str(find_model("tflite").path))
    shapes = {t["index"]: t["shape"] for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():  # the only per-op listing LiteRT offers
        inputs, outputs = op["inputs"], op["outputs"]
        out = int(np.prod(shapes[outputs[0]]))
        if op["op_name"] == "CONV_2D":
            total += out * int(np.prod(shapes[inputs[1]][1:]))
        elif op["op_name"] == "DEPTHWISE_CONV_2D":
            total += out * int(np.prod(shapes[inputs[1]][1:3]))
        elif op["op_name"] == "FULLY_CONNECTED":
            total += out * int(shapes[inputs[1]][-1])
        elif op["op_name"] == "BATCH_MATMUL":
            total += out * int(shapes[inputs[0]][-1])
    return 2 * total


def model_only(repeats: int) -> dict[str, Any]:
    """Median inference time of each backend on one L* plane of the model's input size (the
    size every photo is reduced to), model loaded."""
    from coloi.backend import BackendSettings
    from coloi.plugin_host import get_registry

    registry = get_registry()
    results = {}
    for name in ("tflite", "tf-gpu"):
        cls = registry.backends[name].cls
        if cls.unavailable_reason():
            continue
        backend = cls(BackendSettings())
        side = backend.input_size() or (256, 256)
        plane = np.random.default_rng(0).uniform(0, 100, side).astype(np.float32)
        for _ in range(3):
            backend.predict_ab(plane)
        runs = []
        for _ in range(max(10, repeats * 5)):
            started = time.perf_counter()
            backend.predict_ab(plane)
            runs.append(time.perf_counter() - started)
        results[name] = stats(runs)
    return results


TARGETS = [  # (key path, limit, unit, description)
    ("help.wall_s.median", 0.3, "s", "coloi --help"),
    ("jpeg12_tflite.wall_s.median", 1.0, "s", "12 MP JPEG, tflite, wall incl. start"),
    ("jpeg12_tflite.peak_rss_mb.max", 1024, "MB", "12 MP JPEG, peak RSS"),
    ("jpeg12_vs_floor", 1.3, "x", "12 MP JPEG / plain pipeline floor"),
    ("tiff12_tflite.wall_s.median", 2.0, "s", "12 MP 16-bit TIFF, wall"),
    ("batch_small_tflite.seconds_per_photo", 1 / 20, "s/photo", "~256 px batch (>= 20/s)"),
    ("batch_12mp_tflite.seconds_per_photo", 0.6, "s/photo", "12 MP JPEG batch"),
    ("jpeg50_tflite.peak_rss_mb.max", 2560, "MB", "50 MP scan, peak RSS"),
    ("model_only.tflite.median", 0.015, "s", "tflite model, one photo"),
]


def lookup(results: dict[str, Any], key: str) -> float:
    value: Any = results
    for part in key.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return float(value) if isinstance(value, int | float) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    r = args.repeats
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = make_photos(folder)
        out = folder / "out"

        def clean() -> None:
            subprocess.run(["rm", "-rf", str(out)], check=True)

        one = str(next(photos["small"].iterdir()))
        results["help"] = repeat_process([COLOI, "--help"], r)
        for backend in ("tflite", "tf-gpu"):
            results[f"one_small_{backend}"] = repeat_process(
                [COLOI, "-q", "run", "-b", backend, one, "-o", str(out)], r, clean
            )
        # coloi and the floor alternate, so that both see the same state of the machine.
        from coloi.models import find_model

        model = find_model("tflite").path  # the colour model (repair.tflite is beside it)
        coloi_runs, floor_runs = [], []
        for _ in range(max(r, 8)):
            coloi_runs.append(
                repeat_process(
                    [COLOI, "-q", "run", "-b", "tflite", str(photos["jpeg12"]), "-o", str(out)],
                    1,
                    clean,
                )
            )
            floor_runs.append(
                repeat_process(
                    [
                        sys.executable,
                        str(REPO / "bench" / "floor_pipeline.py"),
                        str(model),
                        str(photos["jpeg12"]),
                        str(folder / "floor.jpg"),
                    ],
                    1,
                )
            )
        results["jpeg12_tflite"] = merge_runs(coloi_runs)
        results["jpeg12_floor"] = merge_runs(floor_runs)
        results["jpeg12_vs_floor"] = round(
            results["jpeg12_tflite"]["wall_s"]["median"]
            / results["jpeg12_floor"]["wall_s"]["median"],
            3,
        )
        results["tiff12_tflite"] = repeat_process(
            [COLOI, "-q", "run", "-b", "tflite", str(photos["tiff12"]), "-o", str(out)], r, clean
        )
        for backend in ("tflite", "tf-gpu"):
            for key, name, count in (("small", "small", 120), ("batch12", "12mp", 6)):
                entry = repeat_process(
                    [COLOI, "-q", "run", "-b", backend, str(photos[key]), "-o", str(out)],
                    max(2, r // 2),
                    clean,
                )
                entry["photos"] = count
                entry["seconds_per_photo"] = round(entry["wall_s"]["median"] / count, 4)
                entry["photos_per_second"] = round(count / entry["wall_s"]["median"], 2)
                results[f"batch_{name}_{backend}"] = entry
        results["jpeg50_tflite"] = repeat_process(
            [COLOI, "-q", "run", "-b", "tflite", str(photos["jpeg50"]), "-o", str(out)],
            max(2, r // 2),
            clean,
        )
    results["model_only"] = model_only(r)
    results["rates"] = matmul_rates()
    flops = model_flops()
    if flops:
        results["model_flops"] = flops
        floors = {
            "tflite": flops / (results["rates"].get("int8_gops", 0) * 1e9 or 1),
            "tf-gpu": flops / (results["rates"]["float32_gflops"] * 1e9),
        }
        results["model_floor_s"] = {k: round(v, 5) for k, v in floors.items()}
        results["model_vs_floor"] = {
            k: round(v["median"] / floors[k], 2) for k, v in results["model_only"].items()
        }
    results["targets"] = [
        {
            "what": what,
            "key": key,
            "limit": limit,
            "unit": unit,
            "value": round(lookup(results, key), 4),
            "met": bool(lookup(results, key) <= limit),
        }
        for key, limit, unit, what in TARGETS
    ]
    # Commands as a reader would type them: relative to the repository, photos in $WORK (the
    # temporary folder, gone by now).
    text = json.dumps(results, indent=2).replace(str(REPO) + "/", "").replace(tmp, "$WORK")
    results = json.loads(text)
    args.out.with_suffix(".json").write_text(text + "\n")
    args.out.with_suffix(".md").write_text(report(results))
    print(report(results))


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# coloi benchmark results",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python "
        f"{m['python']}; {m['platform']}; run {m['date']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "Command: `python bench/bench.py` (median of several runs; min-max in brackets).",
        "",
        "| measurement | wall s | peak RSS MB | command |",
        "|---|---|---|---|",
    ]
    for key, value in results.items():
        if isinstance(value, dict) and "wall_s" in value:
            w, p = value["wall_s"], value["peak_rss_mb"]
            extra = (
                f" ({value['photos_per_second']} photos/s)" if "photos_per_second" in value else ""
            )
            lines.append(
                f"| {key}{extra} | {w['median']} [{w['min']}-{w['max']}] | "
                f"{p['median']:.0f} [{p['min']:.0f}-{p['max']:.0f}] | "
                f"`{value['command'].replace(str(REPO) + '/', '')}` |"
            )
    lines += ["", "## Model only (one photo at the model's input size, model loaded)", ""]
    for name, s in results.get("model_only", {}).items():
        floor = results.get("model_floor_s", {}).get(name)
        ratio = results.get("model_vs_floor", {}).get(name)
        lines.append(
            f"- {name}: {s['median'] * 1000:.1f} ms [{s['min'] * 1000:.1f}-"
            f"{s['max'] * 1000:.1f}]"
            + (f"; compute floor {floor * 1000:.2f} ms, ratio {ratio}" if floor else "")
        )
    lines += [
        f"- network: {results.get('model_flops', 0) / 1e9:.2f} GFLOP per photo; machine: "
        f"{results['rates']}",
        "",
        "## Targets",
        "",
        "| target | value | limit | met |",
        "|---|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(
            f"| {t['what']} | {t['value']} {t['unit']} | {t['limit']:.3g} "
            f"{t['unit']} | {'yes' if t['met'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
