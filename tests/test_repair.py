"""The ``repair``, ``unfade`` and ``auto`` preprocess steps, through the real CLI: a synthetic
scratch is removed, a clean photo is left alone, 16-bit photos keep 16 bits, a faded print is
restored without clipping its highlights, and bad options are one-line errors.

``--post compare`` puts the grey photo the backend was given (after the preprocess steps) in the
left half of the output, which is how these tests see what a step did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from coloi.color import lightness
from coloi_plugins.preprocess import Unfade
from coloi_plugins.repair import Repair, defect_mask
from tests.conftest import SAMPLES
from tests.damage import damage, old_print_damage


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("COLOI_CONFIG", raising=False)


def camera(depth: int = 8) -> np.ndarray:
    """samples/camera.png (a real black-and-white photo) as float32 grey in [0, 1]."""
    grey = cv2.imread(str(SAMPLES / "camera.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    grey /= 255.0
    if depth == 16:  # a smooth 16-bit scan: levels between the 8-bit ones
        grey = cv2.GaussianBlur(grey, (0, 0), 0.7)
    return grey


def scratched(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo with one long white scratch across it, and the scratch's mask."""
    canvas = np.zeros_like(grey)
    cv2.line(canvas, (30, 60), (480, 300), 1.0, 2, cv2.LINE_AA)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.5)
    return grey + canvas * (0.95 - grey), canvas > 0.3


def save(path: Path, grey: np.ndarray, depth: int) -> Path:
    top = 255 if depth == 8 else 65535
    cv2.imwrite(
        str(path), np.clip(grey * top + 0.5, 0, top).astype(np.uint8 if depth == 8 else np.uint16)
    )
    return path


def grey_half(path: Path) -> np.ndarray:
    """The left half of a ``--post compare`` output: the preprocessed grey, as L*."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    left = pixels[:, : pixels.shape[1] // 2]
    grey = cv2.cvtColor(left, cv2.COLOR_BGR2GRAY)
    return lightness(grey)


def run_steps(cli: Callable[..., Any], photo: Path, out: Path, *pre: str) -> Path:
    args: list[str] = []
    for step in pre:
        args += ["--pre", step]
    result = cli("run", "-b", "tflite", *args, "--post", "compare", photo, "-o", out)
    assert result.exit_code == 0, result.stderr
    return out / photo.name


@pytest.mark.parametrize("depth", [8, 16])
def test_repair_removes_a_scratch_through_the_cli(
    cli: Callable[..., Any], tmp_path: Path, depth: int
) -> None:
    clean = camera(depth)
    damaged, scratch = scratched(clean)
    photo = save(tmp_path / "scratched.png", damaged, depth)
    output = run_steps(cli, photo, tmp_path / "out", "repair")
    assert cv2.imread(str(output), cv2.IMREAD_UNCHANGED).dtype == (
        np.uint8 if depth == 8 else np.uint16
    )
    truth, before, after = lightness(clean), lightness(damaged), grey_half(output)
    error_before = np.abs(before - truth)[scratch].mean()
    error_after = np.abs(after - truth)[scratch].mean()
    assert error_before > 30
    # Measured: about a third is left, where the scratch crosses the dark coat next to the
    # face (the detector is unsure there); see bench/repair_results.md for the general figures.
    assert error_after < error_before / 3, (error_before, error_after)


@pytest.mark.xfail(
    strict=True,
    reason="known limit: repair takes the tripod's thin straight "
    "legs for scratches (3.4% of camera.png changes); see bench/repair_results.md",
)
def test_repair_leaves_a_clean_photo_alone(cli: Callable[..., Any], tmp_path: Path) -> None:
    photo = SAMPLES / "camera.png"
    output = run_steps(cli, photo, tmp_path / "out", "repair")
    before = lightness(cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE))
    changed = np.abs(grey_half(output) - before) > 5
    assert changed.mean() < 0.005, changed.mean()


def test_repair_keeps_sixteen_bits_where_it_finds_nothing(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    clean = camera(16)
    damaged, scratch = scratched(clean)
    photo = save(tmp_path / "scan.png", damaged, 16)
    plain = run_steps(cli, photo, tmp_path / "plain")
    repaired = run_steps(cli, photo, tmp_path / "repaired", "repair")
    a = cv2.imread(str(plain), cv2.IMREAD_UNCHANGED).astype(np.int32)
    b = cv2.imread(str(repaired), cv2.IMREAD_UNCHANGED).astype(np.int32)
    far = cv2.dilate(scratch.astype(np.uint8), np.ones((25, 25), np.uint8)) == 0
    # Only pixels the detector marks are ever filled; elsewhere nothing may move.
    far &= defect_mask(damaged.astype(np.float32)) == 0
    left = a[:, : a.shape[1] // 2][far], b[:, : b.shape[1] // 2][far]
    # Away from what was found the 16-bit grey is untouched, level for level (no 8-bit detour).
    # (The detector marks about 4% of this photo, mostly the tripod's legs: see the xfail.)
    assert far.mean() > 0.85
    assert np.mean(left[0] == left[1]) > 0.999


def test_the_old_print_sample_is_repaired_and_coloured_with_auto(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    photo = SAMPLES / "old_w_scratch_b.png"
    result = cli("run", "-b", "tflite", "--pre", "auto", photo, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    out = cv2.imread(str(tmp_path / "out" / photo.name), cv2.IMREAD_UNCHANGED)
    assert out.shape[:2] == (256, 256)
    assert out.dtype == np.uint8 and out.shape[2] == 4  # the print's alpha channel is kept


def test_repair_on_the_development_generator() -> None:
    colour = cv2.imread(str(SAMPLES / "chelsea.jpg"))
    clean = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    damaged, _ = damage(clean, seed=3, scratches=3, specks=0)
    repaired = Repair().process(damaged)
    truth = lightness(clean)
    mse_before = np.mean((lightness(damaged) - truth) ** 2)
    mse_after = np.mean((lightness(repaired) - truth) ** 2)
    assert mse_after < mse_before / 2.5  # at least 4 dB
    assert repaired.dtype == np.float32 and repaired.shape == clean.shape


def psnr_gain(clean: np.ndarray, damaged: np.ndarray, repaired: np.ndarray) -> float:
    truth = lightness(clean)
    before = np.mean((lightness(damaged) - truth) ** 2)
    after = np.mean((lightness(repaired) - truth) ** 2)
    return float(10 * np.log10(before / after))


@pytest.mark.xfail(
    strict=True,
    reason="known limit: on camera.png the tripod's legs and the edges of the face are "
    "taken for defects and some cracks over the coat are missed; see bench/repair_results.md",
)
def test_repair_on_the_varied_development_damage() -> None:
    """Cracks, hairs, dust and blotches of the generator the detector was trained with, on a
    photo it was not trained on."""
    damaged, clean = old_print_damage(camera(), seed=11)
    assert psnr_gain(clean, damaged, Repair().process(damaged)) > 4.0


def test_a_large_scan_is_repaired_at_full_resolution(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    """A 16-bit scan larger than the detector's working size (so it is shrunk for the
    detector, and filled at full size) with a scratch 5 pixels wide. The scratch runs over sky
    and grass: this tests the path for large scans, the benchmark measures the detector."""
    clean = cv2.resize(camera(16), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    canvas = np.zeros_like(clean)
    cv2.line(canvas, (1400, 100), (2000, 1900), 1.0, 5, cv2.LINE_AA)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.0)
    damaged = clean + canvas * (0.97 - clean)
    photo = save(tmp_path / "large.png", damaged, 16)
    output = run_steps(cli, photo, tmp_path / "out", "repair")
    after = grey_half(output)
    assert after.shape == clean.shape
    scratch = canvas > 0.3
    error_before = np.abs(lightness(damaged) - lightness(clean))[scratch].mean()
    error_after = np.abs(after - lightness(clean))[scratch].mean()
    assert error_after < error_before / 4, (error_before, error_after)


def test_unfade_restores_a_faded_sixteen_bit_print_without_clipping(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    clean = camera(16)
    faded = 0.35 + 0.55 * clean  # black lifted to 0.35, white at 0.9
    photo = save(tmp_path / "faded.png", faded, 16)
    output = run_steps(cli, photo, tmp_path / "out", "unfade")
    left = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
    left = cv2.cvtColor(left[:, : left.shape[1] // 2], cv2.COLOR_BGR2GRAY)
    assert left.dtype == np.uint16
    assert np.percentile(left, 1) < 0.05 * 65535  # a black again
    assert np.percentile(left, 99) > 0.85 * 65535
    # Highlights rolled off, not clipped: the brightest 2% keep distinct levels.
    direct = Unfade().process(faded.astype(np.float32))
    brightest = direct[direct >= np.percentile(direct, 98)]
    assert np.mean(brightest >= 1.0) < 0.002
    assert len(np.unique(brightest)) > 100
    order = np.argsort(faded, axis=None)  # monotonic: nothing in the picture moves
    assert np.all(np.diff(direct.ravel()[order]) >= -1e-6)


def test_unfade_strength_zero_and_flat_photos_change_nothing() -> None:
    grey = camera()
    assert np.array_equal(Unfade(strength=0).process(grey), grey)
    flat = np.full((50, 60), 0.4, np.float32)
    assert np.array_equal(Unfade().process(flat), flat)


@pytest.mark.parametrize(
    "spec, word",
    [
        ("repair:size=-1", "size"),
        ("repair:strength=nan", "strength"),
        ("unfade:white=50", "white"),
        ("auto:colour=1", "colour"),
    ],
)
def test_bad_options_are_one_line_errors(
    cli: Callable[..., Any], tmp_path: Path, spec: str, word: str
) -> None:
    result = cli("run", "--pre", spec, SAMPLES / "camera.png", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert word in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
