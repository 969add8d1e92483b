"""Load test of ``coloi serve`` (the serve issue's acceptance run):

16 concurrent clients send 400 grey photos of about 1 megapixel in all to a real ``coloi serve``
on a loopback port, each client posting one photo at a time over its own keep-alive
connection. A 503 is waited out for its ``Retry-After`` and sent again; any other answer but
200 is an error. Reported: errors (must be none), 503s, latency per photo (first send to its
answer, waits included) at p50 and p99, throughput beside ``coloi run`` on the same photos, and
the server's memory (RSS) after the first 50 photos and at most afterwards.

    python bench/serve_bench.py            # writes bench/serve_results.md and .json
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLOI = str(Path(sys.executable).parent / "coloi")
sys.path.insert(0, str(REPO / "bench"))
from bench import machine  # noqa: E402  (the same machine record as bench.py)


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` grey JPEGs of 1200x840 (1.0 MP), crops of the samples scaled up."""
    folder.mkdir(parents=True)
    colour = [cv2.imread(str(p)) for p in sorted((REPO / "samples").glob("*.jpg"))]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = colour[i % len(colour)]
        h, w = image.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(
            image[top : top + side, left : left + side], (1200, 840), interpolation=cv2.INTER_CUBIC
        )
        paths.append(folder / f"photo{i:04}.jpg")
        cv2.imwrite(
            str(paths[-1]), cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
    return paths


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def coloi_run(folder: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [COLOI, "-q", "run", "--backend", "tflite", str(folder), "-o", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def load(port: int, photos: list[Path], clients: int, pid: int) -> dict[str, Any]:
    work: queue.Queue[Path] = queue.Queue()
    for path in photos:
        work.put(path)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    busy = {"503": 0, "503_without_retry_after": 0, "reconnects": 0}
    rss: list[tuple[int, float]] = []

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            try:
                path = work.get_nowait()
            except queue.Empty:
                break
            data = path.read_bytes()
            first = time.perf_counter()
            fresh = False
            while True:
                try:
                    connection.request(
                        "POST", "/v1/colourise", body=data, headers={"Content-Type": "image/jpeg"}
                    )
                    response = connection.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as error:
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    if not fresh:  # a kept-alive connection the server had closed: once more,
                        fresh = True  # as HTTP clients do (it never reached the server)
                        with lock:
                            busy["reconnects"] += 1
                        continue
                    with lock:
                        errors.append(f"{path.name}: {error!r}")
                    break
                fresh = False
                if response.status == 503:
                    retry = response.getheader("Retry-After")
                    with lock:
                        busy["503"] += 1
                        busy["503_without_retry_after"] += retry is None
                    time.sleep(float(retry or 1))
                    continue
                if response.status != 200 or not body.startswith(b"\xff\xd8"):
                    with lock:
                        errors.append(f"{path.name}: {response.status} {body[:200]!r}")
                    break
                with lock:
                    latencies.append(time.perf_counter() - first)
                    rss.append((len(latencies), rss_mb(pid)))
                break
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    after_50 = next((mb for done, mb in rss if done >= 50), 0.0)
    peak_after_50 = max((mb for done, mb in rss if done >= 50), default=0.0)
    ordered = sorted(latencies)
    return {
        "photos": len(photos),
        "clients": clients,
        "answered_200": len(latencies),
        "errors": errors,
        **busy,
        "seconds": round(seconds, 2),
        "photos_per_second": round(len(latencies) / seconds, 2),
        "latency_p50_s": round(float(np.percentile(ordered, 50)), 3) if ordered else None,
        "latency_p99_s": round(float(np.percentile(ordered, 99)), 3) if ordered else None,
        "rss_mb_after_50": round(after_50, 1),
        "rss_mb_max_after_50": round(peak_after_50, 1),
        "rss_growth_mb_after_50": round(peak_after_50 - after_50, 1),
    }


def serve(photos: list[Path], clients: int, *options: str) -> dict[str, Any]:
    """Start ``coloi serve`` with ``options``, load it, stop it with SIGTERM."""
    port = free_port()
    server = subprocess.Popen(
        [
            COLOI,
            "-q",
            "serve",
            "--backend",
            "tflite",
            "--port",
            str(port),
            "--no-access-log",
            *options,
        ]
    )
    try:
        wait_ready(port)
        served = load(port, photos, clients, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    return {"options": " ".join(options) or "defaults", **served, "exit_code_on_sigterm": code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="coloi-serve-bench-"))
    try:
        photos = make_photos(scratch / "photos", args.photos)
        run_seconds = coloi_run(scratch / "photos", scratch / "run-out")
        served = serve(photos, args.clients)
        # A waiting line as long as there are clients: no 503s, so no client waits them out.
        served_long_queue = serve(photos, args.clients, "--queue", str(args.clients))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run_rate = args.photos / run_seconds
    result = {
        "machine": machine(),
        "coloi_run": {
            "photos": args.photos,
            "seconds": round(run_seconds, 2),
            "photos_per_second": round(run_rate, 2),
        },
        "serve": served,
        "throughput_vs_run": round(served["photos_per_second"] / run_rate, 3),
        f"serve_queue_{args.clients}": served_long_queue,
        f"throughput_vs_run_queue_{args.clients}": round(
            served_long_queue["photos_per_second"] / run_rate, 3
        ),
    }
    (args.out / "serve_results.json").write_text(json.dumps(result, indent=2) + "\n")
    cpu = result["machine"]
    (args.out / "serve_results.md").write_text(
        "# coloi serve load test\n\n"
        f"Machine: {cpu['cpu']}, {cpu['cores']} cores; run {cpu['date']}.\n"
        f"Command: `python bench/serve_bench.py --photos {args.photos} --clients "
        f"{args.clients}` ({args.clients} concurrent clients, {args.photos} grey 1200x840 "
        "JPEGs; `coloi serve --backend tflite` with its defaults (2 workers, a waiting line "
        f"of 8), then with `--queue {args.clients}`; `coloi run --backend tflite` on the same "
        "photos for the baseline).\n\n"
        f"```json\n{json.dumps(result, indent=2)}\n```\n"
    )
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
