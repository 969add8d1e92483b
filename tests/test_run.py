"""``coloi run`` end to end: both backends on the shipped models, formats, bit depths, EXIF
orientation, metadata, output naming and the safety rules for outputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from coloi.color import bgr_to_lab, lightness, to_grey
from tests.conftest import BACKENDS, SAMPLES, natural_photo, needs_tf


def chroma(bgr: np.ndarray) -> float:
    """Mean a*b* magnitude: 0 for a grey image."""
    return float(np.linalg.norm(bgr_to_lab(bgr)[:, :, 1:], axis=2).mean())


@pytest.mark.parametrize("backend", BACKENDS)
def test_colourises_a_real_grey_photo(cli, tmp_path: Path, backend: str) -> None:
    result = cli("run", "--backend", backend, SAMPLES / "camera.png", "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    out = cv2.imread(str(tmp_path / "camera.png"), cv2.IMREAD_UNCHANGED)
    grey = cv2.imread(str(SAMPLES / "camera.png"), cv2.IMREAD_GRAYSCALE)
    assert out.shape == (*grey.shape, 3)
    assert chroma(out) > 3.0  # it has colour
    # The photo's own lightness is kept at full resolution (up to 8-bit rounding and gamut).
    assert np.abs(bgr_to_lab(out)[:, :, 0] - lightness(grey)).mean() < 1.5


@needs_tf
def test_backends_agree(cli, tmp_path: Path) -> None:
    for backend in ("tflite", "tf-gpu"):
        assert (
            cli(
                "run", "-b", backend, "-f", "png", SAMPLES / "chelsea.jpg", "-o", tmp_path / backend
            ).exit_code
            == 0
        )
    ab = [
        bgr_to_lab(cv2.imread(str(tmp_path / b / "chelsea.png")))[:, :, 1:]
        for b in ("tflite", "tf-gpu")
    ]
    assert np.abs(ab[0] - ab[1]).mean() < 3.0


def test_colour_input_is_colourised_from_its_luminance(cli, tmp_path: Path) -> None:
    colour = cv2.imread(str(SAMPLES / "coffee.jpg"))
    sepia = cv2.transform(
        colour, np.array([[0.27, 0.53, 0.13], [0.35, 0.69, 0.17], [0.39, 0.77, 0.19]])
    )
    grey = cv2.cvtColor(to_grey(colour), cv2.COLOR_GRAY2BGR)
    for name, image in (("colour", colour), ("grey", grey)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), image)
    assert (
        cli(
            "run",
            "-b",
            "tflite",
            tmp_path / "colour.png",
            tmp_path / "grey.png",
            "-o",
            tmp_path / "out",
        ).exit_code
        == 0
    )
    a = cv2.imread(str(tmp_path / "out" / "colour.png"))
    b = cv2.imread(str(tmp_path / "out" / "grey.png"))
    assert np.array_equal(a, b)  # only the luminance matters
    assert sepia is not None


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp", ".bmp"])
def test_formats_round_trip(cli, tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"photo{suffix}"
    cv2.imwrite(str(source), natural_photo())
    result = cli("run", "-b", "tflite", source)
    assert result.exit_code == 0, result.stderr
    output = tmp_path / f"photo_colourised{suffix}"
    assert Image.open(output).format == Image.open(source).format
    assert cv2.imread(str(output)).shape == (96, 128, 3)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_in_gives_sixteen_bit_out(cli, tmp_path: Path, suffix: str) -> None:
    grey16 = (
        cv2.cvtColor(natural_photo(), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
        + np.arange(128, dtype=np.uint16)[None, :]
    )  # detail below 8 bits
    source = tmp_path / f"scan{suffix}"
    cv2.imwrite(str(source), grey16)
    assert cli("run", "-b", "tflite", source, "-o", tmp_path / "out").exit_code == 0
    out = cv2.imread(str(tmp_path / "out" / f"scan{suffix}"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (96, 128, 3)
    # Sub-8-bit detail of the input survives in the output's lightness.
    l_in = lightness(grey16)
    l_out = cv2.cvtColor(out.astype(np.float32) / 65535, cv2.COLOR_BGR2Lab)[:, :, 0]
    assert np.abs(l_out - l_in).mean() < 0.5


def test_grey_and_rgb_scans_of_the_same_photo_match(cli, tmp_path: Path) -> None:
    grey = cv2.cvtColor(natural_photo(), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    assert (
        cli(
            "run", "-b", "tflite", tmp_path / "g.png", tmp_path / "rgb.png", "-o", tmp_path / "o"
        ).exit_code
        == 0
    )
    assert np.array_equal(
        cv2.imread(str(tmp_path / "o" / "g.png")), cv2.imread(str(tmp_path / "o" / "rgb.png"))
    )


def _exif_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> None:
    image = Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "coloi-test-camera"
    image.save(path, exif=exif.tobytes(), icc_profile=b"fake-icc-for-test" * 4)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_respected(cli, tmp_path: Path, orientation: int) -> None:
    pixels = natural_photo(60, 100)
    _exif_jpeg(tmp_path / "p.jpg", pixels, orientation)
    assert cli("run", "-b", "tflite", tmp_path / "p.jpg", "-o", tmp_path / "o").exit_code == 0
    expected = Image.open(tmp_path / "p.jpg")
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(expected)
    out = Image.open(tmp_path / "o" / "p.jpg")
    assert out.size == upright.size  # a portrait stays portrait
    assert out.getexif().get(0x0112, 1) == 1
    grey_out = np.asarray(out.convert("L"), dtype=np.float32)
    grey_upright = np.asarray(upright.convert("L"), dtype=np.float32)
    assert np.abs(grey_out - grey_upright).mean() < 4.0


def test_exif_and_icc_are_carried_over(cli, tmp_path: Path) -> None:
    _exif_jpeg(tmp_path / "p.jpg", natural_photo(), 1)
    assert (
        cli("run", "-b", "tflite", tmp_path / "p.jpg", "-f", "png", "-o", tmp_path / "o").exit_code
        == 0
    )
    assert cli("run", "-b", "tflite", tmp_path / "p.jpg", "-o", tmp_path / "o").exit_code == 0
    for name in ("p.jpg", "p.png"):
        out = Image.open(tmp_path / "o" / name)
        assert out.getexif().get(0x010F) == "coloi-test-camera", name
        assert out.info.get("icc_profile") == b"fake-icc-for-test" * 4, name


def test_folder_output_mirrors_the_tree(cli, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    (scans / "a").mkdir(parents=True)
    cv2.imwrite(str(scans / "a" / "b.png"), natural_photo())
    cv2.imwrite(str(scans / "top.jpg"), natural_photo())
    (scans / "notes.txt").write_text("not a photo")
    single = tmp_path / "x" / "c.jpg"
    single.parent.mkdir()
    cv2.imwrite(str(single), natural_photo())
    result = cli("run", "-b", "tflite", scans, single, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    made = sorted(
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    )
    assert made == ["a/b.png", "c.jpg", "top.jpg"]


def test_never_overwrites_without_permission(cli, tmp_path: Path, sample_photo: Path) -> None:
    original = sample_photo.read_bytes()
    out = sample_photo.with_name("chelsea_colourised.jpg")
    out.write_bytes(b"precious")
    result = cli("run", "-b", "tflite", sample_photo)
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "chelsea_colourised.jpg" in result.stderr
    assert out.read_bytes() == b"precious"
    assert cli("run", "-b", "tflite", "--skip-existing", sample_photo).exit_code == 0
    assert out.read_bytes() == b"precious"
    assert cli("run", "-b", "tflite", "--overwrite", sample_photo).exit_code == 0
    assert Image.open(out).format == "JPEG"
    assert sample_photo.read_bytes() == original  # the input is never touched
    assert not list(sample_photo.parent.glob(".*"))  # no temporary files left


def test_output_into_the_input_folder_refuses_to_replace_inputs(
    cli, tmp_path: Path, sample_photo: Path
) -> None:
    original = sample_photo.read_bytes()
    result = cli("run", "-b", "tflite", sample_photo, "-o", sample_photo.parent, "--overwrite")
    assert result.exit_code == 1
    assert "replace its input" in result.stderr
    assert sample_photo.read_bytes() == original


def test_rerun_on_folder_ignores_its_own_outputs(cli, tmp_path: Path, sample_photo: Path) -> None:
    assert cli("run", "-b", "tflite", sample_photo.parent).exit_code == 0
    result = cli("run", "-b", "tflite", "--skip-existing", sample_photo.parent)
    assert result.exit_code == 0
    assert sorted(p.name for p in sample_photo.parent.iterdir()) == [
        "chelsea.jpg",
        "chelsea_colourised.jpg",
    ]


def test_png_with_alpha_keeps_alpha(cli, tmp_path: Path) -> None:
    bgra = np.dstack([natural_photo(), np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1))])
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    assert cli("run", "-b", "tflite", tmp_path / "a.png", "-o", tmp_path / "o").exit_code == 0
    out = cv2.imread(str(tmp_path / "o" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (96, 128, 4)
    assert np.array_equal(out[:, :, 3], bgra[:, :, 3])


def test_progress_is_drawn_on_the_terminal_of_stderr_only(tmp_path: Path) -> None:
    """With stderr on a terminal and stdout piped, stdout holds only the output paths."""
    import os
    import pty
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    for number in range(3):
        cv2.imwrite(str(tmp_path / "in" / f"p{number}.png"), natural_photo(seed=number))
    controller, terminal = pty.openpty()
    coloi = Path(sys.executable).parent / "coloi"
    process = subprocess.Popen(
        [str(coloi), "run", "-b", "tflite", str(tmp_path / "in"), "-o", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
        env={**os.environ, "COLUMNS": "80", "TERM": "xterm"},
    )
    os.close(terminal)
    stdout, _ = process.communicate(timeout=120)
    drawn = b""
    try:
        while chunk := os.read(controller, 65536):
            drawn += chunk
    except OSError:  # the terminal closed with the process
        pass
    os.close(controller)
    assert process.returncode == 0
    assert stdout.splitlines() == [str(tmp_path / "out" / f"p{n}.png") for n in range(3)]
    assert b"colourising" in drawn
