"""Round 2 of the reader and the batch (issue 12): crafted files that stalled or fooled the
reader, trees and names that broke discovery and output naming, manifests, models, config
files and plugins that hung or crashed start-up, and interrupted runs.

Each test reproduces one fault with the real reader, the real ``coloi`` command or the real
backends on the shipped models.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coloi.errors import UnreadablePhoto
from coloi.imageio import read_photo
from tests.conftest import BACKENDS, natural_photo, run_coloi


def _in_subprocess(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh interpreter, so that a hang is a timeout, not a stuck
    test run."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- fault 4: a TIFF whose chain of pages (IFDs) is absurdly long, or loops ------------------


def _tiff_chain(pages: int, loop: bool = False) -> bytes:
    """A little-endian TIFF of ``pages`` IFDs, each a 1x1 picture that declares only its
    size and where its pixel is (42 bytes an IFD, 8.4 MB for 200,000), chained one after
    another. With ``loop``, the last IFD points back at the
    first."""
    first = [
        (256, 3, 1, 1),
        (257, 3, 1, 1),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 0),
        (278, 3, 1, 1),
        (279, 4, 1, 1),
    ]
    first_size = 2 + 12 * len(first) + 4
    other_size = 2 + 12 * 3 + 4
    pixel_at = 8 + first_size + other_size * (pages - 1)
    data = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(first)))
    for tag, kind, count, value in first:
        data += struct.pack("<HHII", tag, kind, count, pixel_at if tag == 273 else value)
    data += struct.pack("<I", 8 + first_size if pages > 1 else 0)
    for index in range(1, pages):
        position = 8 + first_size + other_size * (index - 1)
        following = position + other_size if index < pages - 1 else (8 if loop else 0)
        data += struct.pack(
            "<HHHIIHHIIHHII", 3, 256, 3, 1, 1, 257, 3, 1, 1, 273, 4, 1, pixel_at
        ) + struct.pack("<I", following)
    return bytes(data + b"\x80")


def test_a_tiff_with_200000_pages_is_refused_at_once(tmp_path: Path) -> None:
    crafted = tmp_path / "chain.tif"
    crafted.write_bytes(_tiff_chain(200_000))
    # Pillow alone counts these pages in minutes; the timeout makes that a failure, not a hang.
    result = _in_subprocess(
        "import sys; from pathlib import Path; from coloi.imageio import read_photo\n"
        f"try: read_photo(Path({str(crafted)!r}))\n"
        "except Exception as error: print(type(error).__name__, error)\n",
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("UnreadablePhoto") and "chain.tif" in line
    assert "pages" in line and "\n" not in line


def test_a_tiff_whose_pages_loop_is_refused(tmp_path: Path) -> None:
    crafted = tmp_path / "loop.tif"
    crafted.write_bytes(_tiff_chain(3, loop=True))
    with pytest.raises(UnreadablePhoto, match=r"loop\.tif: .*loops"):
        read_photo(crafted)


def test_a_one_page_tiff_of_the_same_layout_is_read(tmp_path: Path) -> None:
    single = tmp_path / "one.tif"
    single.write_bytes(_tiff_chain(1))
    assert read_photo(single).pixels.shape == (1, 1)


# -- fault 7: tracebacks from deep trees, long names, manifests, models and config files -----


def _png(path: Path, seed: int = 0) -> Path:
    Image.fromarray(natural_photo(48, 64, seed)[:, :, ::-1]).save(path)
    return path


def _one_error_line(stderr: str) -> str:
    """The one error line of a failed command, whose every line is coloi's own (a warning,
    such as tf-gpu's about a missing GPU, may come before it)."""
    lines = stderr.strip().splitlines()
    assert all(line.startswith("coloi: ") for line in lines), stderr
    errors = [line for line in lines if line.startswith("coloi: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


DEPTH = 2_000


@pytest.fixture
def deep_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``in/d/d/.../d/deep.png``, 2,000 folders deep, named relative to the working folder
    (``tmp_path``), so that no path is over the kernel's limit of 4,096 bytes; removed
    without recursion (shutil.rmtree would itself hit Python's recursion limit)."""
    monkeypatch.chdir(tmp_path)
    folders = [Path("in")]
    for _ in range(DEPTH):
        folders.append(folders[-1] / "d")
    for folder in folders:
        folder.mkdir()
    _png(folders[-1] / "deep.png")
    _png(Path("in", "top.png"), seed=1)
    yield folders[-1] / "deep.png"
    for root in (Path("in"), Path("o")):
        if not root.exists():
            continue
        leaf = root.joinpath(*["d"] * DEPTH)
        for level in range(DEPTH, -1, -1):
            folder = root.joinpath(*["d"] * level)
            if folder.exists():
                for file in folder.iterdir():
                    if not file.is_dir():
                        file.unlink()
                folder.rmdir()
        assert not leaf.exists()


def test_discovery_walks_a_tree_2000_folders_deep(deep_tree: Path) -> None:
    from coloi.discovery import find_photos

    assert find_photos(Path("in")) == [deep_tree, Path("in", "top.png")]


def test_run_colourises_a_photo_2000_folders_deep(deep_tree: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "coloi", "run", "-b", "tflite", "in", "-o", "o"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path("o", deep_tree.relative_to("in")).is_file()
    assert Path("o", "top.png").is_file()


def test_a_name_whose_output_name_is_too_long_fails_only_that_photo(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    long_name = _png(folder / ("a" * 251 + ".png"))  # 255 bytes, the most a name may have
    _png(folder / "b.png", seed=1)
    result = run_coloi("run", "-b", "tflite", folder)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line or "aaaa" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert long_name.stem in errors[0] and "too long" in errors[0].lower()
    assert (folder / "b_colourised.png").is_file()


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A model folder holding the shipped manifest and the shipped LiteRT model."""
    from tests.conftest import MODELS

    copy = tmp_path / "models"
    copy.mkdir()
    (copy / "manifest.json").write_bytes((MODELS / "manifest.json").read_bytes())
    (copy / "coloi-int8.tflite").write_bytes((MODELS / "coloi-int8.tflite").read_bytes())
    return copy


def _edit_manifest(folder: Path, **fields: object) -> Path:
    import json

    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text())
    for entry in data["models"]:
        if entry["format"] == "tflite":
            entry.update(fields)
    manifest.write_text(json.dumps(data))
    return manifest


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", 5),
        ("file", 5),
        ("file", ["a"]),
        ("sha256", 5),
        ("input_size", "big"),
        ("input_size", True),
        ("input_size", -256),
        ("input_size", 1.5),
    ],
)
def test_a_manifest_field_of_the_wrong_type_is_one_line(
    cli, model_copy: Path, sample_photo: Path, field: str, value: object
) -> None:
    manifest = _edit_manifest(model_copy, **{field: value})
    result = cli("run", "-b", "tflite", "--model-dir", model_copy, sample_photo)
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert str(manifest) in line and repr(field) in line, line


def test_a_manifest_entry_that_is_not_an_object_is_one_line(
    cli, model_copy: Path, sample_photo: Path
) -> None:
    manifest = model_copy / "manifest.json"
    manifest.write_text('{"models": ["coloi-int8.tflite"]}')
    result = cli("run", "-b", "tflite", "--model-dir", model_copy, sample_photo)
    assert result.exit_code == 1
    assert str(manifest) in _one_error_line(result.stderr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_garbage_model_with_a_matching_sha256_is_one_line(
    cli, tmp_path: Path, sample_photo: Path, backend: str
) -> None:
    import hashlib
    import json

    from tests.conftest import MODELS

    copy = tmp_path / "models"
    copy.mkdir()
    data = json.loads((MODELS / "manifest.json").read_text())
    garbage = np.random.default_rng(0).bytes(50_000)
    for entry in data["models"]:
        (copy / entry["file"]).write_bytes(garbage)
        entry["sha256"] = hashlib.sha256(garbage).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(data))
    result = cli("run", "-b", backend, "--model-dir", copy, sample_photo)
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert str(copy) in line and "cannot load" in line, line


@pytest.mark.parametrize(
    "content", [b"run = 5\n", b'[run]\nbackend = "tfl\xffite"\n', b"\xff\xfe[run]\n"]
)
def test_a_broken_config_file_is_one_line_naming_it(
    cli, tmp_path: Path, sample_photo: Path, content: bytes
) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(content)
    result = cli("run", "-b", "tflite", sample_photo, env={"COLOI_CONFIG": str(config)})
    assert result.exit_code == 1
    assert str(config) in _one_error_line(result.stderr)
    assert not sample_photo.with_name("chelsea_colourised.jpg").exists()


# -- fault 9: start-up that hangs or ends in silence ----------------------------------------


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_model_file_that_is_not_a_regular_file_fails_at_once(
    model_copy: Path, sample_photo: Path, kind: str
) -> None:
    import os

    if kind == "device":
        target = "/dev/zero"  # endless: hashing it would never finish
    else:
        target = str(model_copy / "model.fifo")  # blocks whoever opens it for a writer
        os.mkfifo(target)
    _edit_manifest(model_copy, file=target)
    result = run_coloi("run", "-b", "tflite", "--model-dir", model_copy, sample_photo, timeout=30)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert target in line and "not a regular file" in line, line


def _plugin(tmp_path: Path, source: str) -> Path:
    """A third-party plugin distribution ``bad-plugin`` whose module is ``source``."""
    from tests.test_plugin_control import fake_distribution

    return fake_distribution(
        tmp_path / "site", "bad-plugin", {"bad": "bad_plugin"}, {"bad_plugin": source}
    )


def test_a_plugin_that_exits_at_import_fails_the_run(tmp_path: Path, sample_photo: Path) -> None:
    from tests.test_plugin_control import coloi

    site = _plugin(tmp_path, "import sys\nsys.exit(0)\n")
    result = coloi(site, "run", "-b", "tflite", sample_photo)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "'bad'" in line and "SystemExit" in line and "--block-plugin bad" in line, line
    assert not sample_photo.with_name("chelsea_colourised.jpg").exists()
    # Blocked, it is not imported at all.
    assert coloi(site, "--block-plugin", "bad", "run", "-b", "tflite", sample_photo).returncode == 0


def test_a_plugin_that_hangs_at_import_is_given_up(tmp_path: Path, sample_photo: Path) -> None:
    from tests.test_plugin_control import coloi

    site = _plugin(tmp_path, "import time\nwhile True:\n    time.sleep(1)\n")
    result = coloi(site, "run", "-b", "tflite", sample_photo, COLOI_PLUGIN_IMPORT_TIMEOUT="2")
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "'bad'" in line and "2 s" in line and "--block-plugin bad" in line, line


# -- fault 8: outputs that were wrong and yet "done" -----------------------------------------


def _jpeg_with_a_hole() -> bytes:
    """A 640x480 JPEG whose middle third of entropy-coded data is zeros, as a disk or a
    transfer leaves it: libjpeg decodes it with a warning and fills the rest with grey."""
    import cv2

    photo = cv2.resize(natural_photo(96, 128), (640, 480))
    data = bytearray(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    scan, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    start, stop = scan + (end - scan) // 3, scan + 2 * (end - scan) // 3
    data[start:stop] = bytes(stop - start)
    return bytes(data)


def test_a_jpeg_with_a_zero_filled_hole_is_refused_with_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "hole.jpg").write_bytes(_jpeg_with_a_hole())
    _png(folder / "fine.png")
    result = run_coloi("run", "-b", "tflite", folder, "-o", tmp_path / "out")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("coloi: ") for line in lines), result.stderr  # nothing bare
    errors = [line for line in lines if "hole.jpg" in line]
    assert len(errors) == 1 and "corrupt JPEG data" in errors[0], result.stderr
    assert not (tmp_path / "out" / "hole.jpg").exists()
    assert (tmp_path / "out" / "fine.png").is_file()


def test_the_shipped_jpegs_decode_without_a_warning() -> None:
    from tests.conftest import SAMPLES

    for photo in SAMPLES.glob("*.jpg"):
        assert read_photo(photo).pixels.size


@pytest.mark.parametrize("output", [True, False])
def test_a_gif_and_a_png_of_one_name_get_two_outputs(tmp_path: Path, output: bool) -> None:
    from coloi.color import bgr_to_lab

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(natural_photo(48, 64, 1)[:, :, ::-1]).convert("L").save(folder / "b.gif")
    _png(folder / "b.png", seed=2)
    target = ["-o", tmp_path / "out"] if output else []
    result = run_coloi("run", "-b", "tflite", folder, *target)
    assert result.returncode == 0, result.stderr
    written = sorted(Path(line) for line in result.stdout.split())
    assert len(written) == 2 and written[0] != written[1]
    for path in written:
        lab = bgr_to_lab(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1].copy())
        assert np.abs(lab[:, :, 1:]).mean() > 1.0  # each one colourised
    if output:  # a PNG's output keeps its name
        assert tmp_path / "out" / "b.png" in written


def test_two_inputs_meant_for_one_output_fail_one_of_them(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "c.png")
    Image.fromarray(natural_photo(48, 64, 3)[:, :, ::-1]).save(folder / "c.jpg")
    result = run_coloi("run", "-b", "tflite", folder, "-f", "png", "-o", tmp_path / "out")
    assert result.returncode == 1
    errors = [
        line
        for line in result.stderr.splitlines()
        if "error" in line or ("c.png" in line and "colourised" not in line)
    ]
    assert len(errors) == 1 and "c.jpg" in errors[0] and "c.png" in errors[0], result.stderr
    assert result.stdout.split() == [str(tmp_path / "out" / "c.png")]


# -- fault 11: memory within the default limits ----------------------------------------------


def _png_16bit(path: Path, width: int, height: int) -> Path:
    """A 16-bit RGB PNG of smooth rows, written a row at a time: 100 MP in 2.3 MB."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    row = b"\x00" + (bytes(range(256)) * (width * 6 // 256 + 1))[: width * 6]
    deflate = zlib.compressobj(6)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def test_a_100_mp_16_bit_png_is_refused_before_decoding(tmp_path: Path) -> None:
    scan = _png_16bit(tmp_path / "scan.png", 10_000, 10_000)
    # Decoding alone would take 600 MB; the peak of the whole process stays far below it.
    # VmHWM, not getrusage: Linux carries ru_maxrss over from the forking process (pytest,
    # with TensorFlow loaded) across exec.
    result = _in_subprocess(
        "from pathlib import Path; from coloi.imageio import read_photo\n"
        f"try: read_photo(Path({str(scan)!r}))\n"
        "except Exception as error: print(type(error).__name__, error)\n"
        "status = Path('/proc/self/status').read_text().split('VmHWM:')[1]\n"
        "print(int(status.split()[0]) // 1024)\n"
    )
    assert result.returncode == 0, result.stderr
    refusal, peak_mb = result.stdout.strip().splitlines()
    assert refusal.startswith("PhotoTooLarge") and "10000x10000 pixels" in refusal, refusal
    assert int(peak_mb) < 400, f"{peak_mb} MB: the photo was decoded"


def test_a_tiff_cut_into_too_many_strips_is_refused(tmp_path: Path) -> None:
    strips = 300_000  # one row each of a 1-pixel-wide picture: 300,000 pixels in all
    offsets_at = 8 + 2 + 12 * 8 + 4
    counts_at = offsets_at + 4 * strips
    pixel_at = counts_at + 2 * strips
    entries = [
        (256, 3, 1, 1),
        (257, 4, 1, strips),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, strips, offsets_at),
        (278, 3, 1, 1),
        (279, 3, strips, counts_at),
    ]
    data = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    data += b"".join(struct.pack("<HHII", *entry) for entry in entries) + struct.pack("<I", 0)
    data += struct.pack("<I", pixel_at) * strips + struct.pack("<H", 1) * strips + b"\x80"
    crafted = tmp_path / "strips.tif"
    crafted.write_bytes(data)
    with pytest.raises(UnreadablePhoto, match=r"strips\.tif: .*300,000 strips"):
        read_photo(crafted)


# -- fault 12: an interrupted run, a killed one, a large colour profile ----------------------


def test_ctrl_c_on_run_says_what_was_written(tmp_path: Path) -> None:
    import os
    import shutil
    import signal

    import cv2

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(40):
        cv2.imwrite(
            str(folder / f"p{index:02}.jpg"),
            cv2.resize(natural_photo(96, 128, index), (1600, 1200)),
        )
    coloi = shutil.which("coloi", path=str(Path(sys.executable).parent)) or "coloi"
    process = subprocess.Popen(
        [coloi, "run", "-b", "tflite", str(folder), "-o", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # one photo written: the run is well under way
    os.kill(process.pid, signal.SIGINT)
    # Read through the same buffered streams as readline (communicate would lose what that
    # buffered); stderr holds a line or two, so reading stdout first cannot block it.
    rest = process.stdout.read()
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.wait(timeout=60)
    assert process.returncode == 130, stderr
    reported = [Path(line) for line in (first + rest).split()]
    written = sorted((tmp_path / "out").iterdir())
    assert sorted(reported) == written and 1 <= len(written) < 40  # each one reported
    summary = stderr.strip().splitlines()[-1]
    assert summary.startswith("coloi: interrupted: ") and "Traceback" not in stderr, stderr
    assert f"{len(written)} colourised" in summary and "the rest not done" in summary


def test_a_rerun_removes_what_a_killed_run_left_half_written(tmp_path: Path) -> None:
    import os

    from coloi.imageio import _partial_name

    out = tmp_path / "out"
    out.mkdir()
    # A writer killed mid-write, by the real naming of partial files.
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pathlib import Path\n"
            "from coloi.imageio import _partial_name\n"
            f"Path({str(out)!r}, _partial_name(Path('a.png'))).write_bytes(b'half a photo')\n"
            "os.kill(os.getpid(), 9)\n",
        ],
        check=False,
    )
    assert killed.returncode == -9
    (left,) = out.iterdir()
    live = out / _partial_name(Path("b.png"))  # this process is alive: a run that is still writing
    live.write_bytes(b"being written")
    foreign = out / ".c.png.x7Gh2k9q.coloi-partial"  # unnamed, and recent: not known to be dead
    foreign.write_bytes(b"?")
    photo = _png(tmp_path / "a.png")
    result = run_coloi("run", "-b", "tflite", photo, "-o", out)
    assert result.returncode == 0, result.stderr
    assert not left.exists()
    assert live.exists() and foreign.exists()
    assert (out / "a.png").is_file()
    old = os.stat(foreign).st_mtime - 2 * 24 * 3600  # an unnamed one two days old is stale
    os.utime(foreign, (old, old))
    (out / "a.png").unlink()
    import coloi.imageio

    coloi.imageio._cleaned_folders.clear()
    result = run_coloi("run", "-b", "tflite", photo, "-o", out)
    assert result.returncode == 0 and not foreign.exists() and live.exists()


def test_a_png_with_a_colour_profile_over_a_megabyte_keeps_it(tmp_path: Path) -> None:
    import zlib

    rng = np.random.default_rng(0)
    size = 1_200_000  # a little over 1 MiB, as large printer and scanner profiles are
    header = bytearray(128)
    header[0:4] = struct.pack(">I", size)
    header[12:16], header[16:20], header[20:24], header[36:40] = b"mntr", b"RGB ", b"XYZ ", b"acsp"
    profile = bytes(header) + rng.bytes(size - 128)  # tables are not very compressible
    plain = io.BytesIO()
    Image.fromarray(natural_photo(48, 64)[:, :, ::-1]).save(plain, format="PNG")
    data = plain.getvalue()
    body = b"profile\x00\x00" + zlib.compress(profile)
    iccp = (
        struct.pack(">I", len(body))
        + b"iCCP"
        + body
        + struct.pack(">I", zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF)
    )
    source = tmp_path / "profiled.png"
    source.write_bytes(data[:33] + iccp + data[33:])  # after IHDR
    result = run_coloi("run", "-b", "tflite", source, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert read_photo(tmp_path / "out" / "profiled.png").icc_profile == profile


def test_a_new_line_in_a_file_name_cannot_forge_a_line_of_run(tmp_path: Path) -> None:
    """Round 2, fault 12: `coloi run` printed a name with a newline as two lines."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x\ncoloi: done forged.png").write_bytes(b"not a photo")
    result = run_coloi("run", folder, "-o", tmp_path / "out", "-b", "tflite")
    assert result.returncode == 1
    assert not any(line.startswith("coloi: done forged") for line in result.stderr.splitlines())
    assert "'" in result.stderr and "\\ncoloi: done forged.png" in result.stderr, result.stderr
