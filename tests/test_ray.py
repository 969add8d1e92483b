"""``coloi run --engine ray`` on a real Ray: a local Ray started by the test (2 CPUs) that the
real ``coloi`` joins by its address, or the Ray that ``coloi`` starts itself. Worker and driver
processes are killed for real, by PID, mid-run.

Marked ``ray`` (``pytest -m ray``), and those that start a Ray ``slow`` as well (out of the
fast tier); skipped where Ray is not installed (``pip install -e '.[tf,test,ray]'`` installs
it, as .ci/run does).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import natural_photo, run_coloi
from tests.test_plugin_control import fake_distribution

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray

# The Ray tests run the CLI as a subprocess without inheriting a cluster or settings.
CLEAN = {"RAY_ADDRESS": "", "COLOI_RAY_ADDRESS": "", "COLOI_ENGINE": "", "COLOI_CONFIG": os.devnull}


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray with 2 CPUs, started here, that ``coloi`` joins by its address."""
    context = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        object_store_memory=100 * 1024 * 1024,
    )
    try:
        yield context.address_info["address"]
    finally:
        ray.shutdown()


def make_archive(root: Path, count: int, size: tuple[int, int] = (48, 64)) -> list[Path]:
    """``count`` photos in a tree of folders (PNG, JPEG, 16-bit PNG and grey JPEG), plus names
    that are passed over; returns the photos."""
    photos = []
    for index in range(count):
        folder = root / f"box{index % 4}" / ("roll" if index % 3 else "")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = natural_photo(*size, seed=index)
        kind = index % 4
        if kind == 0:
            path = folder / f"p{index:03d}.png"
        elif kind == 1:
            path = folder / f"p{index:03d}.jpg"
        elif kind == 2:
            path = folder / f"p{index:03d}.png"
            pixels = pixels.astype(np.uint16) * 257
        else:
            path = folder / f"p{index:03d}.jpg"
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(path), pixels)
        photos.append(path)
    (root / ".thumbnails").mkdir()
    cv2.imwrite(str(root / ".thumbnails" / "t.png"), natural_photo(8, 8))
    (root / "box0" / "copying.jpg.part").write_bytes(b"half")
    return photos


BAD = {
    "empty.png": "empty file",
    "notes.jpg": "not an image",
    "half.png": "truncated",
    "gone.jpg": "a link to nothing",
}


def add_bad_files(root: Path) -> None:
    (root / "box1" / "empty.png").write_bytes(b"")
    (root / "box2" / "notes.jpg").write_text("not a photo\n")
    whole = cv2.imencode(".png", natural_photo(64, 64))[1].tobytes()
    (root / "box3" / "half.png").write_bytes(whole[: len(whole) // 2])
    (root / "box0" / "gone.jpg").symlink_to(root / "nowhere.jpg")


def outputs(folder: Path) -> dict[str, Path]:
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".")  # a killed write's partial is not one
    }


def partials(folder: Path) -> list[Path]:
    return [path for path in folder.rglob(".*") if path.is_file()]


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry))
    return tree


def photo_workers(root: int) -> list[int]:
    """The PIDs of coloi's Ray actors (process title ``ray::PhotoWorker...``) among the
    processes that ``root`` started, directly or not."""
    tree, found, todo = children(), [], [root]
    while todo:
        pid = todo.pop()
        for child in tree.get(pid, []):
            todo.append(child)
            try:
                title = Path("/proc", str(child), "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::PhotoWorker"):
                found.append(child)
    return found


def wait_for(condition: Callable[[], object], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def coloi_process(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    coloi = Path(sys.executable).with_name("coloi")
    return subprocess.Popen(
        [str(coloi), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **CLEAN, **(env or {})},
    )


def expected_bytes(photos: list[Path]) -> dict[str, bytes]:
    """What ``coloi run -b tflite`` writes for each photo, made in this process."""
    import coloi

    with coloi.Colouriser("tflite") as colouriser:
        return {photo.name: colouriser.colourise(photo) for photo in photos}


@pytest.mark.slow  # starts Ray: seconds
def test_ray_matches_local_pixel_for_pixel(tmp_path: Path, ray_address: str) -> None:
    """~100 photos in a tree plus bad files: the same outputs as --engine local, pixel for
    pixel, the same failure lines and report, exit status 1."""
    scans = tmp_path / "scans"
    photos = make_archive(scans, 100)
    add_bad_files(scans)
    local = run_coloi(
        "run",
        "-b",
        "tflite",
        scans,
        "-o",
        tmp_path / "local",
        "--report",
        tmp_path / "local.jsonl",
        env=CLEAN,
    )
    on_ray = run_coloi(
        "run",
        "--engine",
        "ray",
        "--ray-address",
        ray_address,
        "-b",
        "tflite",
        scans,
        "-o",
        tmp_path / "ray",
        "--report",
        tmp_path / "ray.jsonl",
        env=CLEAN,
        timeout=180,
    )
    assert local.returncode == 1, local.stderr
    assert on_ray.returncode == 1, on_ray.stderr
    assert "Ray: 2 workers" in on_ray.stderr

    local_out, ray_out = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    assert len(local_out) == len(photos) and local_out.keys() == ray_out.keys()
    for name, path in local_out.items():
        ours = cv2.imread(str(ray_out[name]), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert ours is not None and ours.dtype == theirs.dtype, name
        assert np.array_equal(ours, theirs), name
    assert sorted(on_ray.stdout.replace("/ray/", "/local/").splitlines()) == sorted(
        local.stdout.splitlines()
    )

    def failures(stderr: str) -> list[str]:
        return sorted(line for line in stderr.splitlines() if str(scans) in line)

    assert failures(on_ray.stderr) == failures(local.stderr)
    assert len(failures(local.stderr)) == len(BAD)
    for name, reason in BAD.items():
        assert any(name in line and reason in line for line in failures(on_ray.stderr)), name

    import json

    def report(path: Path, out: str) -> list[dict[str, object]]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            row["output"] = str(row["output"]).replace(out, "OUT")
        return sorted(rows, key=lambda row: str(row["path"]))

    rows = report(tmp_path / "ray.jsonl", str(tmp_path / "ray"))
    assert rows == report(tmp_path / "local.jsonl", str(tmp_path / "local"))
    assert {Path(str(row["path"])).name for row in rows} == set(BAD)
    assert all(set(row) == {"path", "reason", "error", "source", "output"} for row in rows)
    assert not partials(tmp_path / "ray")


@pytest.mark.slow  # starts Ray: seconds
def test_worker_killed_mid_run(tmp_path: Path) -> None:
    """A worker process of the run (coloi starts its own Ray here) is SIGKILLed mid-run: its
    photos are done again elsewhere, every photo ends with one whole output, and no temporary
    file is left."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    photos = make_archive(scans, 120, size=(160, 200))
    run = coloi_process("run", "--engine", "ray", "-b", "tflite", scans, "-o", out)
    try:
        wait_for(lambda: len(outputs(out)) >= 12 if out.exists() else False)
        workers = photo_workers(run.pid)
        assert len(workers) >= 2
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=150)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 0, stderr
    assert "a Ray worker was lost" in stderr
    assert len(stdout.splitlines()) == len(photos)  # each photo reported once
    expected = expected_bytes(photos)
    written = outputs(out)
    assert sorted(Path(name).name for name in written) == sorted(expected)
    for path in written.values():
        assert path.read_bytes() == expected[path.name], path  # whole, and right
    assert not partials(out)


@pytest.mark.slow  # starts Ray: seconds
def test_driver_killed_then_rerun_skip_existing(tmp_path: Path, ray_address: str) -> None:
    """The driver is SIGKILLed mid-run on a cluster it joined (through RAY_ADDRESS); a rerun
    with --skip-existing does the rest and nothing twice: the outputs already there keep their
    inode and modification time, and are reported as skipped."""
    scans, out = tmp_path / "scans", tmp_path / "out"
    photos = make_archive(scans, 120, size=(160, 200))
    first = coloi_process(
        "run", "--engine", "ray", "-b", "tflite", scans, "-o", out, env={"RAY_ADDRESS": ray_address}
    )
    try:
        wait_for(lambda: len(outputs(out)) >= 12 if out.exists() else False)
        workers = photo_workers(os.getpid())  # the cluster's raylet is this process's child
        assert workers
        first.kill()
    finally:
        first.kill()
        first.wait()
    # Ray ends a dead driver's actors once their batches in hand are done: wait for them.
    wait_for(lambda: not any(Path("/proc", str(pid)).exists() for pid in workers))
    before = {
        name: (path.stat().st_ino, path.stat().st_mtime_ns) for name, path in outputs(out).items()
    }
    assert 0 < len(before) < len(photos)

    rerun = run_coloi(
        "run",
        "--engine",
        "ray",
        "-b",
        "tflite",
        scans,
        "-o",
        out,
        "--skip-existing",
        env={**CLEAN, "RAY_ADDRESS": ray_address},
        timeout=180,
    )
    assert rerun.returncode == 0, rerun.stderr
    after = outputs(out)
    assert len(after) == len(photos)
    assert {
        name: (after[name].stat().st_ino, after[name].stat().st_mtime_ns) for name in before
    } == before
    done_now = {Path(line).relative_to(out).as_posix() for line in rerun.stdout.splitlines()}
    assert done_now == set(after) - set(before)
    assert rerun.stderr.count("skipped, output exists") == len(before)
    expected = expected_bytes(photos)
    for path in after.values():
        assert path.read_bytes() == expected[path.name], path
    assert not partials(out)


CRASH = textwrap.dedent('''
    """A preprocess step that kills its own process on a photo 77 pixels wide."""
    import os
    import signal

    from coloi import hookimpl
    from coloi.steps import PreprocessStep


    class Crash(PreprocessStep):
        name = "test-crash"
        description = "kills its process on a photo 77 pixels wide"

        def process(self, grey):
            if grey.shape[1] == 77:
                os.kill(os.getpid(), signal.SIGKILL)
            return grey


    @hookimpl
    def coloi_register_preprocessors():
        return [Crash]
''')


@pytest.mark.slow  # starts Ray: seconds
def test_photo_that_kills_its_worker_fails_by_name(tmp_path: Path) -> None:
    """A photo whose worker dies every time it is tried fails, by name, after a few tries;
    the others are done."""
    site = fake_distribution(
        tmp_path / "site", "coloi-crash", {"crash": "coloi_crash"}, {"coloi_crash": CRASH}
    )
    scans, out = tmp_path / "scans", tmp_path / "out"
    photos = make_archive(scans, 12)
    cv2.imwrite(str(scans / "box1" / "poison.png"), natural_photo(40, 77))
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    result = run_coloi(
        "run",
        "--engine",
        "ray",
        "-b",
        "tflite",
        "--pre",
        "test-crash",
        scans,
        "-o",
        out,
        "--report",
        tmp_path / "report.jsonl",
        env={**CLEAN, "PYTHONPATH": path},
        timeout=180,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "poison.png" in line]
    assert len(lines) == 1 and "its Ray worker died 3 times" in lines[0], result.stderr
    assert sorted(outputs(out)) == sorted(p.relative_to(scans).as_posix() for p in photos)
    assert "poison.png" in (tmp_path / "report.jsonl").read_text()
    assert not partials(out)


def test_ray_address_unreachable(tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), natural_photo())
    result = run_coloi(
        "run",
        "--engine",
        "ray",
        "--ray-address",
        "127.0.0.1:9",
        photo,
        "-o",
        tmp_path / "out",
        env=CLEAN,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:9 (Connection refused)" in result.stderr
    assert not (tmp_path / "out").exists()


def worker(**settings: object) -> object:
    """A PhotoWorker built in this process, as an actor builds it (no Ray involved)."""
    from coloi.ray_engine import PhotoWorker, WorkerSettings

    return PhotoWorker(WorkerSettings(backend="tflite", **settings))  # type: ignore[arg-type]


def test_retry_takes_an_output_there_as_done_and_removes_leftovers(tmp_path: Path) -> None:
    """What a worker does with photos whose first worker died: an output already there was
    that worker's (the driver saw none before sending it), and the dead write's temporary file
    goes; on a first attempt the same output would be a failure."""
    from coloi.batch import Job
    from coloi.imageio import _partial_prefix

    source, target = tmp_path / "p.png", tmp_path / "out" / "p.png"
    cv2.imwrite(str(source), natural_photo())
    target.parent.mkdir()
    target.write_bytes(b"written by the attempt that died")
    leftover = target.parent / f"{_partial_prefix(target)}abcd1234.coloi-partial"
    leftover.write_bytes(b"half")
    other = target.parent / f"{_partial_prefix(target.with_name('q.png'))}abcd1234.coloi-partial"
    other.write_bytes(b"another photo's write, not this one's")
    job = Job(source, target, "png")

    (first,) = worker().colourise([job], retry=False)  # type: ignore[attr-defined]
    assert first.error is not None and "output already exists" in str(first.error)
    assert leftover.exists()
    (again,) = worker().colourise([job], retry=True)  # type: ignore[attr-defined]
    assert again.error is None and not again.skipped
    assert not leftover.exists() and other.exists()
    assert target.read_bytes() == b"written by the attempt that died"  # never written twice

    target.unlink()
    (redone,) = worker().colourise([job], retry=True)  # type: ignore[attr-defined]
    assert redone.error is None
    assert cv2.imread(str(target)) is not None


def test_worker_reports_a_backend_that_cannot_load() -> None:
    broken = worker(model="no-such-model")
    assert "no-such-model" in str(broken.ready())  # type: ignore[attr-defined]
    assert worker().ready() is None  # type: ignore[attr-defined]


def test_errors_name_paths_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers get absolute paths; the lines printed name them as the user gave them."""
    from coloi.batch import Job, Outcome
    from coloi.errors import UnreadablePhoto, UnwritableOutput
    from coloi.ray_engine import _absolute, _as_given

    monkeypatch.chdir(tmp_path)
    job = Job(Path("scans/a.png"), Path("out/a.png"), "png")
    sent = _absolute(job)
    assert sent.source == tmp_path / "scans" / "a.png"
    for error, named in (
        (UnreadablePhoto(sent.source, "empty file"), "scans/a.png"),
        (UnwritableOutput(sent.target.parent, "cannot create folder"), "out"),
    ):
        outcome = _as_given(Outcome(sent.source, sent.target, error, 0.0), job)
        assert str(outcome.error) == f"{named}: {error.reason}"
        assert type(outcome.error) is type(error)
        assert outcome.source == job.source and outcome.target == job.target


def test_without_ray_installed(
    cli,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.delitem(sys.modules, "coloi.ray_engine", raising=False)
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), natural_photo())
    result = cli("run", "--engine", "ray", photo, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "coloi: error: --engine ray needs Ray: pip install 'coloi[ray]'"
    )
    assert not (tmp_path / "out").exists()
