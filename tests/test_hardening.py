"""Whatever a user or a folder throws at coloi, it answers with a correct output or one line
naming the file and the reason: never a traceback, a dead daemon, a half-written file or a
changed input.

The same battery of awkward inputs goes through ``coloi run`` (in-process, one case at a time)
and through ``coloi watch`` (a real daemon process on a real folder, all cases at once).
Disks that are full or read-only are real: small tmpfs mounts, where this machine allows them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from coloi.color import bgr_to_lab, lightness, to_grey
from tests.conftest import natural_photo

JOURNAL = ".coloi-watch-journal.jsonl"


# -- the battery ----------------------------------------------------------------------------


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(height: int = 64, width: int = 80, seed: int = 0) -> Image.Image:
    return Image.fromarray(natural_photo(height, width, seed)[:, :, ::-1])


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _png_bomb() -> bytes:
    """A 100-byte PNG whose header claims 100000 x 100000 pixels (10 gigapixels)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk_bomb() -> bytes:
    """A small valid PNG whose IDAT claims to be 4 GB long (OpenCV would allocate that)."""
    data = bytearray(_save(Image.new("L", (32, 24), 90), "PNG"))
    at = data.index(b"IDAT") - 4
    data[at : at + 4] = struct.pack(">I", 0xFF000062)
    return bytes(data)


def _cmyk_icc() -> bytes:
    """The header of an ICC profile for CMYK data (all a reader looks at to tell)."""
    header = bytearray(128)
    header[0:4] = struct.pack(">I", 132)
    header[12:16], header[16:20], header[20:24] = b"prtr", b"CMYK", b"Lab "
    header[36:40] = b"acsp"
    return bytes(header) + b"\x00\x00\x00\x00"


def _alpha_png() -> bytes:
    rgba = np.dstack(
        [
            natural_photo(64, 80)[:, :, ::-1],
            np.tile(np.linspace(0, 255, 80).astype(np.uint8), (64, 1)),
        ]
    )
    return _save(Image.fromarray(rgba, "RGBA"), "PNG")


def _frames(fmt: str, count: int, mode: str = "RGB") -> bytes:
    images = [_rgb(seed=seed).convert(mode) for seed in range(count)]
    return _save(images[0], fmt, save_all=True, append_images=images[1:])


@dataclass(frozen=True)
class Case:
    """One awkward input. ``reason`` is what its error line must say (None: it must work);
    ``output`` is the output's name when it works."""

    name: str
    data: bytes
    reason: str | None = None
    output: str | None = None
    check: Callable[[Path, Path], None] | None = None  # (source, output) for a good result

    @property
    def output_name(self) -> str:
        return self.output or self.name


def _check_cmyk(source: Path, output: Path) -> None:
    out = cv2.imread(str(output))
    assert out is not None
    truth = np.asarray(Image.open(source).convert("L"), np.float32)
    assert np.abs(to_grey(out).astype(np.float32) - truth).mean() < 4.0  # its own lightness
    assert "icc_profile" not in Image.open(output).info  # a CMYK profile does not describe it


def _check_alpha(source: Path, output: Path) -> None:
    out = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
    assert out is not None and out.shape == (64, 80, 4)
    assert np.array_equal(out[:, :, 3], np.asarray(Image.open(source))[:, :, 3])


def _check_shape(height: int, width: int) -> Callable[[Path, Path], None]:
    def check(source: Path, output: Path) -> None:
        out = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
        assert out is not None and out.shape == (height, width, 3)

    return check


def _check_colourised(source: Path, output: Path) -> None:
    out = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
    assert out is not None and out.ndim == 3 and out.shape[2] == 3
    assert np.linalg.norm(bgr_to_lab(out)[:, :, 1:], axis=2).mean() > 1.0  # it has colour


ACCENTED = "Grand-mère à Zürich \u2013 1938.png"  # an en dash, too
_JPEG = _save(_rgb(), "JPEG")
_PNG = _save(_rgb(), "PNG")
_TIFF = _save(_rgb(), "TIFF")

CASES = [
    Case("empty.jpg", b"", "empty file"),
    Case("cut.jpg", _JPEG[:-400], "truncated JPEG file"),
    Case("cut.png", _PNG[:-300], "truncated PNG file"),
    Case("cut.tif", _TIFF[:-3000], "truncated TIFF file"),
    Case("shopping list.png", b"eggs, milk, flour\n" * 20, "not an image"),
    Case("bomb.png", _png_bomb(), "100000x100000 pixels is over the limit"),
    Case("4 GB chunk.png", _png_chunk_bomb(), "truncated PNG file"),
    Case("animated.gif", _frames("GIF", 3, "P"), "animated GIF (3 frames)"),
    Case("pages.tif", _frames("TIFF", 2), "multi-page TIFF (2 pages)"),
    Case(
        "cmyk.jpg",
        _save(_rgb().convert("CMYK"), "JPEG", icc_profile=_cmyk_icc()),
        check=_check_cmyk,
    ),
    Case("palette.png", _save(_rgb().convert("P"), "PNG"), check=_check_colourised),
    Case("alpha.png", _alpha_png(), check=_check_alpha),
    Case(
        "still.gif",
        _save(_rgb().convert("P"), "GIF"),
        output="still.gif.png",
        check=_check_colourised,
    ),
    Case("dot.png", _save(Image.new("L", (1, 1), 128), "PNG"), check=_check_shape(1, 1)),
    Case("dot.jpg", _save(Image.new("L", (1, 1), 128), "JPEG"), check=_check_shape(1, 1)),
    Case("line.png", _save(Image.new("L", (300, 1), 128), "PNG"), check=_check_shape(1, 300)),
    Case("column.webp", _save(Image.new("L", (1, 200), 128), "WEBP"), check=_check_shape(200, 1)),
    Case("old photo, 1952.jpg", _JPEG, check=_check_colourised),
    Case(ACCENTED, _PNG, check=_check_colourised),
    Case("祖父の写真.tif", _TIFF, check=_check_colourised),
    Case("a very long name " * 12 + ".png", _PNG, check=_check_colourised),
]
BAD = [case for case in CASES if case.reason]
GOOD = [case for case in CASES if not case.reason]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file's bytes under ``folder``, by relative path (links not followed)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".coloi-partial")]


# -- real filesystems: full and read-only ---------------------------------------------------


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], None]]:
    """Mount a small tmpfs on a folder (``mount -t tmpfs -o OPTIONS``), or skip the test
    where this machine does not allow it (not root, or no CAP_SYS_ADMIN in a container)."""
    mounted: list[Path] = []

    def mount(folder: Path, options: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            pytest.skip("cannot mount a tmpfs here (no mount command)")
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _read_only(folder: Path, tmpfs: Callable[[Path, str], None]) -> None:
    """Make ``folder`` really read-only. chmod does not stop root, so as root it becomes a
    read-only mount instead (skipped where mounting is not allowed)."""
    if os.geteuid() == 0:
        tmpfs(folder, "ro,size=64k")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)


def _noise_tiff(path: Path, side: int = 800) -> None:
    """A grey photo whose colourised TIFF (about 3 * side**2 bytes) fills a 1 MiB disk."""
    noise = np.random.default_rng(1).integers(0, 256, (side, side), dtype=np.uint8)
    assert cv2.imwrite(str(path), noise)


# -- coloi run ------------------------------------------------------------------------------


def _run_case(cli, tmp_path: Path, case: Case):  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / case.name).write_bytes(case.data)
    cv2.imwrite(str(folder / "good.png"), natural_photo())
    before = _snapshot(folder)
    result = cli("run", "-b", "tflite", folder, "-o", tmp_path / "out")
    assert "Traceback" not in result.stderr
    assert _snapshot(folder) == before  # inputs byte for byte as they were
    assert not _partials(tmp_path)
    return result


@pytest.mark.parametrize("case", BAD, ids=[case.name for case in BAD])
def test_run_bad_input(cli, tmp_path: Path, case: Case) -> None:
    result = _run_case(cli, tmp_path, case)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if case.name in line]
    assert len(lines) == 1 and case.reason in lines[0], result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


@pytest.mark.parametrize("case", GOOD, ids=[case.name for case in GOOD])
def test_run_awkward_but_good_input(cli, tmp_path: Path, case: Case) -> None:
    result = _run_case(cli, tmp_path, case)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["good.png", case.output_name]
    )
    assert case.check is not None
    case.check(tmp_path / "in" / case.name, tmp_path / "out" / case.output_name)


def test_run_gif_output_is_png_beside_it(cli, tmp_path: Path) -> None:
    gif = tmp_path / "still.gif"
    gif.write_bytes(_save(_rgb().convert("P"), "GIF"))
    result = cli("run", "-b", "tflite", gif)
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "still.gif_colourised.png").format == "PNG"


def test_run_fifo_does_not_hang(cli, tmp_path: Path) -> None:
    fifo = tmp_path / "in" / "pipe.jpg"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    for argument in (fifo, fifo.parent):  # named, and met in a folder
        result = cli("run", "-b", "tflite", argument, "-o", tmp_path / "out")
        assert result.exit_code == 1
        assert "pipe.jpg: not a regular file" in result.stderr


def test_run_links(cli, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "real.jpg"
    outside.parent.mkdir()
    outside.write_bytes(_JPEG)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "link.jpg").symlink_to(outside)
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    # A link named on the command line is followed; so is one to a file found in a folder.
    result = cli("run", "-b", "tflite", folder / "link.jpg", "-o", tmp_path / "named")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "named" / "link.jpg").is_file()
    result = cli("run", "-b", "tflite", folder, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["link.jpg"]
    for name in ("gone.jpg", "loop.jpg"):
        lines = [line for line in result.stderr.splitlines() if name in line]
        assert len(lines) == 1 and "a link to nothing" in lines[0], result.stderr
    result = cli("run", "-b", "tflite", folder / "loop.jpg", "-o", tmp_path / "out2")
    assert result.exit_code == 1 and "loop.jpg: cannot read" in result.stderr
    assert outside.read_bytes() == _JPEG


def test_run_limits(cli, tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(_JPEG)
    result = cli("run", "-b", "tflite", photo, "--max-bytes", "1000", "-o", tmp_path / "a")
    assert result.exit_code == 1
    assert f"p.jpg: file of {len(_JPEG):,} bytes is over the limit of 1,000 bytes" in result.stderr
    result = cli("run", "-b", "tflite", photo, "--max-pixels", "5000", "-o", tmp_path / "b")
    assert result.exit_code == 1
    assert "p.jpg: 80x64 pixels is over the limit of 5,000 pixels" in result.stderr
    assert cli("run", "-b", "tflite", photo, "-o", tmp_path / "c").exit_code == 0


def test_run_file_removed_between_planning_and_reading(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import coloi.batch

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"p{index}.png"), natural_photo(seed=index))
    planned = coloi.batch.plan_jobs

    def plan_then_remove(*args: Any, **kwargs: Any) -> list[Any]:
        jobs = list(planned(*args, **kwargs))
        (folder / "p1.png").unlink()  # gone after it was found, before it is read
        return jobs

    monkeypatch.setattr(coloi.batch, "plan_jobs", plan_then_remove)
    result = cli("run", "-b", "tflite", folder, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "p1.png: no such file" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p2.png"]


def test_run_read_only_output(cli, tmp_path: Path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), natural_photo())
    _read_only(tmp_path / "out", tmpfs)
    result = cli("run", "-b", "tflite", photo, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "p.png" in line]
    assert len(lines) == 1 and "cannot write" in lines[0], result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_run_full_disk(cli, tmp_path: Path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    _noise_tiff(folder / "big.tif")
    cv2.imwrite(str(folder / "small.png"), natural_photo())
    before = _snapshot(folder)
    tmpfs(tmp_path / "out", "size=1m")
    result = cli("run", "-b", "tflite", folder / "big.tif", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "big.tif" in line]
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    assert list((tmp_path / "out").iterdir()) == []  # nothing partial, nothing half-written
    # ... and the space it took while trying is free again.
    result = cli("run", "-b", "tflite", folder / "small.png", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert _snapshot(folder) == before


def test_run_tiff_orientation_alpha_and_cmyk(cli, tmp_path: Path) -> None:
    from PIL import TiffImagePlugin

    stored = np.zeros((20, 40, 4), np.uint8)  # 40 wide, 20 high; translucent mid-grey
    stored[..., :3], stored[..., 3] = 90, 128
    stored[:, :10, :3] = 255  # a white band on the left, which orientation 6 puts on top
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[274] = 6
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(stored, "RGBA").save(folder / "rgba.tif", tiffinfo=tags)
    Image.fromarray(stored[..., :3]).save(folder / "rgb.tif", tiffinfo=tags)
    Image.fromarray(stored[..., :3]).convert("CMYK").save(folder / "cmyk.tif")
    result = cli("run", "-b", "tflite", folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    for name, channels in (("rgba.tif", 4), ("rgb.tif", 3)):
        # Read back with Pillow: OpenCV premultiplies unassociated alpha, as it did the input.
        out = np.asarray(Image.open(tmp_path / "out" / name))
        assert out.shape == (40, 20, channels), name  # turned upright once, not twice
        rgb = np.ascontiguousarray(out[:, :, :3])
        lab_l = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[:, :, 0]
        # The translucent grey keeps its lightness (L*, what the pipeline preserves, not luma,
        # which depends on the colour the model picks); premultiplied, it would be far darker.
        kept = float(lightness(np.full((1, 1), 90, np.uint8))[0, 0])
        assert lab_l[:5].min() > 80 and abs(float(lab_l[20:].mean()) - kept) < 3, name
    assert np.asarray(Image.open(tmp_path / "out" / "rgba.tif"))[..., 3].min() == 128
    cmyk = cv2.imread(str(tmp_path / "out" / "cmyk.tif"), cv2.IMREAD_UNCHANGED)
    assert cmyk is not None and cmyk.shape == (20, 40, 3)  # no made-up alpha channel


def test_run_output_format_too_small_for_the_photo(cli, tmp_path: Path) -> None:
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.full((2, 17_000), 120, np.uint8))
    result = cli("run", "-b", "tflite", wide, "-f", "webp", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "wide.png: cannot encode it as WEBP" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# -- coloi watch ----------------------------------------------------------------------------


@dataclass
class Daemon:
    """A ``coloi watch`` process whose log goes to a file, readable while it runs."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines_about(self, name: str) -> list[str]:
        return [line for line in self.log.splitlines() if name in line]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the daemon died:\n{self.log}"
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting; log:\n{self.log}")

    def stop(self) -> str:
        assert self.process.poll() is None, f"the daemon died:\n{self.log}"
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, self.log
        return self.log


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(watched: Path, out: Path, *extra: str) -> Daemon:
        log_path = tmp_path / f"daemon-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "coloi"),
                    "watch",
                    str(watched),
                    "-o",
                    str(out),
                    "-b",
                    "tflite",
                    "--settle",
                    "0.3",
                    "--poll-interval",
                    "0.2",
                    *extra,
                ],
                stderr=log,
                stdout=subprocess.DEVNULL,
            )
        started.append(Daemon(process, log_path))
        return started[-1]

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def _outputs(out: Path) -> list[str]:
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def _journal(out: Path) -> dict[str, dict[str, object]]:
    """The photos the journal remembers as done or failed (the last line of each). The
    "started" and "retry" lines of photos to be tried again remember nothing."""
    entries = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    latest = {entry["source"]: entry for entry in entries}
    return {k: v for k, v in latest.items() if v["result"] in ("done", "failed")}


@pytest.mark.slow
@pytest.mark.parametrize("polling", [False, True])
def test_watch_battery(tmp_path: Path, daemon: Callable[..., Daemon], polling: bool) -> None:
    watched, out, outside = tmp_path / "scans", tmp_path / "out", tmp_path / "elsewhere"
    watched.mkdir()
    outside.mkdir()
    backlog, arrivals = CASES[::2], CASES[1::2]  # found at start, and dropped in later
    for case in backlog:
        (watched / case.name).write_bytes(case.data)
    (outside / "secret.jpg").write_bytes(_JPEG)
    (outside / "album").mkdir()
    (outside / "album" / "p.jpg").write_bytes(_JPEG)
    (watched / "escape.jpg").symlink_to(outside / "secret.jpg")
    (watched / "linked album").symlink_to(outside / "album")
    (watched / "loop.jpg").symlink_to(watched / "loop.jpg")
    (watched / "alias.png").symlink_to(watched / ACCENTED)
    os.mkfifo(watched / "pipe.jpg")
    running = daemon(watched, out, *(["--polling"] if polling else []))
    for case in arrivals:
        partial = watched / f".{case.name}.part"
        partial.write_bytes(case.data)
        partial.rename(watched / case.name)
    expected = sorted([case.output_name for case in GOOD] + ["alias.png"])
    failures = {case.name: case.reason for case in BAD} | {"pipe.jpg": "not a regular file"}
    running.wait_for(
        lambda: (
            _outputs(out) == expected
            and all(running.lines_about(f"failed {name}:") for name in failures)
        )
    )
    time.sleep(1.0)  # nothing more happens
    log = running.stop()

    # Nothing but coloi's own lines: no traceback, no decoder chatter.
    assert all(line.startswith("coloi: ") for line in log.splitlines()), log
    assert _outputs(out) == expected
    for case in GOOD:
        assert case.check is not None
        case.check(watched / case.name, out / case.output_name)
    for name, reason in failures.items():
        lines = running.lines_about(name)
        assert len(lines) == 1 and f"failed {name}: {reason}" in lines[0], log
    for name, reason in (
        ("escape.jpg", "a link to outside the watched folder"),
        ("loop.jpg", "a link that leads round in a loop"),
    ):
        assert f"ignored {name}: {reason}" in log
    assert not (out / "linked album").exists()  # a linked folder is not followed
    assert _snapshot(watched) == {case.name: case.data for case in CASES}
    assert (outside / "secret.jpg").read_bytes() == _JPEG
    assert not _partials(out)
    journal = _journal(out)
    assert {name for name, entry in journal.items() if entry["result"] == "failed"} == set(failures)


@pytest.mark.slow
def test_watch_limits_and_photo_timeout(tmp_path: Path, daemon: Callable[..., Daemon]) -> None:
    watched, out = tmp_path / "scans", tmp_path / "out"
    watched.mkdir()
    cv2.imwrite(str(watched / "before.png"), natural_photo())
    # A 36-megapixel photo: several seconds here, far over the limit of 1 s, which a small
    # photo stays well under even on a loaded machine.
    y, x = np.mgrid[0:6000, 0:6000]
    cv2.imwrite(str(watched / "slow.png"), ((x + y) % 256).astype(np.uint8))
    (watched / "heavy.jpg").write_bytes(_save(_rgb(800, 1000), "JPEG"))  # about 90 kB
    running = daemon(watched, out, "--photo-timeout", "1", "--max-bytes", "60000")
    running.wait_for(
        lambda: (
            _outputs(out) == ["before.png"]
            and bool(running.lines_about("failed slow.png"))
            and bool(running.lines_about("failed heavy"))
        )
    )
    cv2.imwrite(str(watched / "after.png"), natural_photo(seed=1))  # it keeps going
    running.wait_for(lambda: _outputs(out) == ["after.png", "before.png"])
    log = running.stop()
    assert "failed slow.png: took longer than 1 s (--photo-timeout)" in log
    assert "failed heavy.jpg: file of" in log and "over the limit of 60,000 bytes" in log
    assert "Traceback" not in log and not _partials(out)
    journal = _journal(out)
    # A timeout may be the machine's load, not the photo's fault: it is not remembered (round
    # 2, fault 2), while the file over the byte limit is.
    assert "slow.png" not in journal and journal["heavy.jpg"]["result"] == "failed"
    # A restart tries the slow photo again (and, under the same limit, fails it again); it
    # leaves the done and the bad ones alone.
    running = daemon(watched, out, "--photo-timeout", "1")
    running.wait_for(lambda: bool(running.lines_about("failed slow.png")))
    log = running.stop()
    assert "before.png" not in log and "heavy.jpg" not in log


@pytest.mark.slow
def test_watch_sigterm_during_a_timed_photo(tmp_path: Path, daemon: Callable[..., Daemon]) -> None:
    """The time limit's signal and the shutdown signals work together: SIGTERM mid-photo
    still finishes that photo and exits 0, without a stray alarm afterwards."""
    watched, out = tmp_path / "scans", tmp_path / "out"
    watched.mkdir()
    y, x = np.mgrid[0:4000, 0:4000]
    cv2.imwrite(str(watched / "slow.png"), ((x + y) % 256).astype(np.uint8))
    running = daemon(watched, out, "--photo-timeout", "60", "--settle", "0")
    running.wait_for(lambda: bool(running.lines_about("watching")))
    time.sleep(0.5)  # into the photo
    log = running.stop()
    assert "done slow.png" in log and "stopping: 1 colourised" in log, log
    assert all(line.startswith("coloi: ") for line in log.splitlines()), log


@pytest.mark.slow
def test_watch_full_disk_and_read_only_subfolder(tmp_path: Path, daemon, tmpfs) -> None:  # type: ignore[no-untyped-def]
    watched, out = tmp_path / "scans", tmp_path / "out"
    (watched / "locked").mkdir(parents=True)
    tmpfs(out, "size=1m")
    _read_only(out / "locked", tmpfs)
    cv2.imwrite(str(watched / "a.png"), natural_photo())
    _noise_tiff(watched / "big.tif")
    cv2.imwrite(str(watched / "locked" / "l.png"), natural_photo(seed=2))
    before = _snapshot(watched)
    running = daemon(watched, out)
    running.wait_for(
        lambda: (
            "a.png" in _outputs(out)
            and bool(running.lines_about("failed big.tif"))
            and bool(running.lines_about("failed locked"))
        )
    )
    cv2.imwrite(str(watched / "z.png"), natural_photo(seed=3))  # still working
    running.wait_for(lambda: _outputs(out) == ["a.png", "z.png"])
    log = running.stop()
    assert "failed big.tif: cannot write (No space left on device)" in log
    assert "failed locked/l.png: cannot write" in log
    assert len(running.lines_about("big.tif")) == 1 and "Traceback" not in log
    assert not _partials(out)
    assert before.items() <= _snapshot(watched).items()
    # An output that could not be written is not the photo's fault: it is not remembered as
    # failed, so a restart (say, after space was freed) tries it again.
    assert set(_journal(out)) == {"a.png", "z.png"}


def test_watch_read_only_output_folder(cli, tmp_path: Path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    watched = tmp_path / "scans"
    watched.mkdir()
    _read_only(tmp_path / "out", tmpfs)
    result = cli("watch", watched, "-o", tmp_path / "out", "-b", "tflite")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"coloi: error: {tmp_path / 'out'}: cannot keep the journal in the output folder "
        f"({os.strerror(30 if os.geteuid() == 0 else 13)})"
    ]


def test_watch_file_removed_before_it_is_read(tmp_path: Path) -> None:
    """Between the check that a photo has settled and its reading, it goes: one line, nothing
    remembered (it is not a bad file), and the daemon carries on."""
    import logging

    from coloi import Colouriser
    from coloi.watch import Watcher

    watched, out = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    cv2.imwrite(str(watched / "gone.png"), natural_photo())
    watcher = Watcher(watched, out, Colouriser("tflite"), settle=0.1)
    ready = watcher.settler.ready

    def ready_then_remove(now: float):  # type: ignore[no-untyped-def]
        photos = ready(now)
        for path, _ in photos:
            path.unlink()
        return photos

    watcher.settler.ready = ready_then_remove  # type: ignore[method-assign]
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("coloi")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    runner = threading.Thread(target=watcher.run)
    try:
        runner.start()
        deadline = time.monotonic() + 30
        while not any("gone.png" in r for r in records) and time.monotonic() < deadline:
            time.sleep(0.05)
        watcher.settler.ready = ready  # type: ignore[method-assign]
        cv2.imwrite(str(watched / "next.png"), natural_photo(seed=1))
        while not (out / "next.png").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watcher.stopping.set()
        runner.join(timeout=10)
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [r for r in records if "gone.png" in r] == [
        "skipped gone.png: removed before it could be read"
    ]
    assert (out / "next.png").exists() and not runner.is_alive()
    # Noted as started and then to be retried, but never as done or failed.
    entries = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    assert {e["result"] for e in entries if e["source"] == "gone.png"} <= {"started", "retry"}
