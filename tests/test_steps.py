"""The built-in preprocess and postprocess steps: each one's effect measured on synthetic
images, then the steps through the real CLI (options, order, errors, the config file)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from coloi.color import bgr_to_lab, to_grey
from coloi.errors import StepOptionError
from coloi.steps import LabPhoto
from coloi_plugins.postprocess import ChromaEdges, Compare, Saturation, Warmth
from coloi_plugins.preprocess import AutoLevels, CropBorder, Denoise
from tests.conftest import natural_photo


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty config folder, so the user's own config file cannot change these tests."""
    folder = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    monkeypatch.delenv("COLOI_CONFIG", raising=False)
    return folder


def smooth_grey(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """A smooth grey photo, float32 in [0, 1], spanning most of the range."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 8)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0.05, 0.95)


def textured_grey(height: int, width: int, seed: int = 1) -> np.ndarray:
    """A busy grey photo (no uniform rows or columns), float32 in [0.2, 0.8]."""
    rng = np.random.default_rng(seed)
    return (0.2 + 0.6 * rng.random((height, width))).astype(np.float32)


def chroma(bgr: np.ndarray) -> np.ndarray:
    """a*b* magnitude per pixel of a BGR image."""
    return np.linalg.norm(bgr_to_lab(bgr)[:, :, 1:], axis=2)


# --- autolevels --------------------------------------------------------------------------------


def test_autolevels_stretches_a_faded_scan_to_full_range() -> None:
    faded = 0.35 + 0.3 * smooth_grey()  # a washed-out print: 0.365-0.635
    out = AutoLevels().process(faded)
    assert out.dtype == np.float32 and out.shape == faded.shape
    assert np.percentile(out, 0.5) < 0.01 and np.percentile(out, 99.5) > 0.99
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Monotonic: the order of grey levels (what the picture shows) is kept.
    order = np.argsort(faded, axis=None)
    assert np.all(np.diff(out.ravel()[order]) >= -1e-6)


def test_autolevels_percentiles_are_options() -> None:
    faded = 0.35 + 0.3 * smooth_grey()
    gentle = AutoLevels(clip_low="0", clip_high="100").process(faded)
    strong = AutoLevels(clip_low="10", clip_high="90").process(faded)
    assert abs(gentle.min()) < 0.01 and abs(gentle.max() - 1) < 0.01
    assert (strong == 0).mean() > 0.09 and (strong == 1).mean() > 0.09  # 10 % clipped each end
    with pytest.raises(StepOptionError, match="clip_low"):
        AutoLevels(clip_low="60")


def test_autolevels_leaves_a_flat_photo_alone() -> None:
    flat = np.full((40, 50), 0.42, np.float32)
    assert np.array_equal(AutoLevels().process(flat), flat)


def test_autolevels_clahe_raises_local_contrast() -> None:
    # A faint texture on the dark side of a strong gradient: the global stretch barely helps it.
    height, width = 128, 128
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    texture = 0.02 * (np.indices((height, width)).sum(axis=0) % 2).astype(np.float32)
    grey = np.clip(ramp * 0.9 + texture, 0, 1)
    region = (slice(32, 96), slice(8, 40))

    def local_std(image: np.ndarray) -> float:
        return float((image - cv2.blur(image, (3, 3)))[region].std())

    plain = AutoLevels().process(grey)
    equalised = AutoLevels(clahe="true").process(grey)
    assert local_std(equalised) > 1.5 * local_std(plain)
    assert equalised.dtype == np.float32 and equalised.min() >= 0 and equalised.max() <= 1


# --- denoise -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["nlmeans", "bilateral"])
def test_denoise_lowers_noise(method: str) -> None:
    clean = smooth_grey(160, 200)
    rng = np.random.default_rng(3)
    noisy = np.clip(clean + rng.normal(0, 0.03, clean.shape).astype(np.float32), 0, 1)
    out = Denoise(strength="8", method=method).process(noisy)
    assert out.dtype == np.float32 and out.shape == clean.shape
    before, after = (noisy - clean).std(), (out - clean).std()
    assert after < 0.5 * before, (before, after)


def test_denoise_keeps_sub_8_bit_detail_of_a_clean_scan() -> None:
    # A 16-bit-smooth ramp with no noise: only the noise is removed, so nothing is banded.
    ramp = np.tile(np.linspace(0.2, 0.3, 300, dtype=np.float32), (40, 1))
    out = Denoise().process(ramp)
    assert np.abs(out - ramp).max() < 1.5 / 255
    assert len(np.unique(out[20])) > 100  # an 8-bit result would have about 26 levels


def test_denoise_options() -> None:
    grey = smooth_grey()
    assert np.array_equal(Denoise(strength="0").process(grey), grey)
    with pytest.raises(StepOptionError, match="method"):
        Denoise(method="median")


# --- crop-border -------------------------------------------------------------------------------


def framed(
    photo: np.ndarray, sides: tuple[int, int, int, int], level: float, noise: float = 0.01
) -> np.ndarray:
    """``photo`` inside a border of grey ``level`` (top, bottom, left, right), with noise."""
    top, bottom, left, right = sides
    height, width = photo.shape
    rng = np.random.default_rng(7)
    out = level + rng.normal(0, noise, (height + top + bottom, width + left + right))
    out = np.clip(out, 0, 1).astype(np.float32)
    out[top : top + height, left : left + width] = photo
    return out


@pytest.mark.parametrize("level", [0.02, 0.97])
def test_crop_border_removes_a_dark_or_light_border_exactly(level: float) -> None:
    photo = textured_grey(100, 150)
    out = CropBorder().process(framed(photo, (12, 7, 9, 20), level))
    assert np.array_equal(out, photo)


def test_crop_border_removes_a_scanner_border_and_then_the_print_margin() -> None:
    photo = textured_grey(80, 90)
    on_paper = framed(photo, (5, 5, 6, 6), 0.95)
    scan = framed(on_paper, (10, 3, 4, 8), 0.03)
    assert np.array_equal(CropBorder().process(scan), photo)


def test_crop_border_keeps_photos_without_a_border() -> None:
    photo = textured_grey(60, 70)
    assert np.array_equal(CropBorder().process(photo), photo)
    mid_grey = framed(photo, (10, 10, 10, 10), 0.5)  # a mid-grey frame is part of the picture
    assert np.array_equal(CropBorder().process(mid_grey), mid_grey)


@pytest.mark.parametrize("level", [0.0, 1.0, 0.03])
def test_crop_border_never_crops_to_nothing(level: float) -> None:
    blank = framed(np.full((4, 4), level, np.float32), (20, 20, 20, 20), level)
    out = CropBorder().process(blank)
    assert out.shape == blank.shape
    thin = framed(textured_grey(3, 3), (30, 30, 30, 30), level)  # too little would remain
    assert min(CropBorder().process(thin).shape) >= 8


def test_crop_border_tolerance() -> None:
    photo = textured_grey(50, 60)
    noisy_border = framed(photo, (10, 10, 10, 10), 0.05, noise=0.06)
    assert CropBorder().process(noisy_border).shape == noisy_border.shape
    assert np.array_equal(CropBorder(tolerance="0.2").process(noisy_border), photo)


# --- postprocess steps -------------------------------------------------------------------------


def lab_photo(height: int = 64, width: int = 80, seed: int = 0) -> LabPhoto:
    rng = np.random.default_rng(seed)
    lightness = (100 * smooth_grey(height, width, seed)).astype(np.float32)
    ab = cv2.resize(rng.normal(0, 20, (4, 5, 2)).astype(np.float32), (width, height))
    return LabPhoto(lightness, ab)


def test_saturation_multiplies_chroma() -> None:
    photo = lab_photo()
    lightness, ab = photo.lightness.copy(), photo.ab.copy()
    out = Saturation(amount="1.5").process(photo)
    np.testing.assert_allclose(out.ab, 1.5 * ab, rtol=1e-6)
    assert np.array_equal(out.lightness, lightness)
    assert np.all(Saturation(amount="0").process(lab_photo()).ab == 0)
    assert Saturation().amount == 1.2


def test_warmth_raises_mean_b_and_slightly_a() -> None:
    ab = lab_photo().ab.copy()
    warm = Warmth(amount="10").process(lab_photo()).ab
    assert warm[:, :, 1].mean() == pytest.approx(ab[:, :, 1].mean() + 10, abs=1e-3)
    assert 0 < warm[:, :, 0].mean() - ab[:, :, 0].mean() < 5
    cool = Warmth(amount="-10").process(lab_photo()).ab
    assert cool[:, :, 1].mean() == pytest.approx(ab[:, :, 1].mean() - 10, abs=1e-3)
    assert Warmth().amount == 5.0


def edge_scene(height: int = 192, width: int = 256) -> tuple[LabPhoto, np.ndarray, slice]:
    """An L* step (with grain) and the colour a backend would predict: right on each side, but
    predicted on a 64x64 grid and stretched, so it bleeds across the edge.

    Returns (photo, the colour without the bleeding, the columns within two grid cells of the
    edge)."""
    edge = int(width * 0.53)  # not on a grid line
    rng = np.random.default_rng(5)
    lightness = np.where(np.arange(width) < edge, 30.0, 80.0).astype(np.float32)
    lightness = lightness[None, :] + rng.normal(0, 2, (height, width)).astype(np.float32)
    truth = np.empty((height, width, 2), np.float32)
    truth[:, :edge] = (-20.0, 10.0)
    truth[:, edge:] = (25.0, 30.0)
    small = cv2.resize(truth, (64, 64), interpolation=cv2.INTER_AREA)
    bled = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    cell = width // 64
    return LabPhoto(lightness, bled), truth, slice(edge - 2 * cell, edge + 2 * cell)


def edge_jump(ab: np.ndarray, band: slice) -> float:
    """Colour difference between the two pixels on each side of the edge in the band's middle."""
    edge = (band.start + band.stop) // 2
    return float(
        np.linalg.norm(
            ab[:, edge : edge + 2].mean(axis=(0, 1)) - ab[:, edge - 2 : edge].mean(axis=(0, 1))
        )
    )


def test_chroma_edges_reduces_colour_bleeding_across_an_edge() -> None:
    photo, truth, band = edge_scene()
    bled = photo.ab.copy()
    out = ChromaEdges().process(photo)
    assert out.ab.shape == truth.shape and out.ab.dtype == np.float32
    before = np.abs(bled - truth)[:, band].mean()
    after = np.abs(out.ab - truth)[:, band].mean()
    assert after < 0.6 * before, (before, after)
    # The colour now changes at the edge: nearly the whole step (49) instead of a third of it.
    assert edge_jump(bled, band) < 20 and edge_jump(out.ab, band) > 35
    # Away from the edge nothing gets worse.
    assert np.abs(out.ab - truth).mean() <= np.abs(bled - truth).mean()


def test_chroma_edges_options() -> None:
    photo, _, band = edge_scene()
    wide = ChromaEdges(radius="12").process(photo).ab
    narrow = ChromaEdges(radius="1").process(edge_scene()[0]).ab  # smaller than the bleeding
    assert edge_jump(wide, band) > 35 > edge_jump(narrow, band)
    blunt = ChromaEdges(eps="1").process(edge_scene()[0]).ab  # ignores all but huge L* steps
    assert edge_jump(blunt, band) < 0.5 * edge_jump(wide, band)
    # Smooth colour over smooth lightness is (almost) unchanged: only edges are moved.
    smooth = lab_photo(96, 128)
    ab = smooth.ab.copy()
    assert np.abs(ChromaEdges().process(smooth).ab - ab).mean() < 1.0
    with pytest.raises(StepOptionError, match="radius"):
        ChromaEdges(radius="2.5")


def test_compare_puts_grey_and_colour_side_by_side() -> None:
    photo = lab_photo()
    lightness, ab = photo.lightness.copy(), photo.ab.copy()
    out = Compare().process(photo)
    assert out.lightness.shape == (64, 160) and out.ab.shape == (64, 160, 2)
    assert np.array_equal(out.lightness[:, :80], lightness)
    assert np.array_equal(out.lightness[:, 80:], lightness)
    assert np.all(out.ab[:, :80] == 0) and np.array_equal(out.ab[:, 80:], ab)
    stacked = Compare(layout="stacked").process(lab_photo())
    assert stacked.ab.shape == (128, 80, 2) and np.all(stacked.ab[:64] == 0)
    with pytest.raises(StepOptionError, match="layout"):
        Compare(layout="diagonal")


# --- through the CLI ---------------------------------------------------------------------------


def faded_scan(path: Path, border: int = 0) -> Path:
    """A faded grey 'scan' of a synthetic photo, optionally inside a black scanner border."""
    grey = to_grey(natural_photo(96, 128)).astype(np.float32)
    grey = 90 + grey * 0.35  # squeezed into a narrow, grey range
    if border:
        grey = cv2.copyMakeBorder(
            grey, border, border, border, border, cv2.BORDER_CONSTANT, value=4.0
        )
    cv2.imwrite(str(path), grey.astype(np.uint8))
    return path


def test_run_with_steps(cli, tmp_path: Path) -> None:
    source = faded_scan(tmp_path / "scan.png")
    plain = cli("run", "-b", "tflite", source, "-o", tmp_path / "plain")
    assert plain.exit_code == 0, plain.stderr
    levelled = cli(
        "run", "-b", "tflite", "--pre", "autolevels", source, "-o", tmp_path / "levelled"
    )
    assert levelled.exit_code == 0, levelled.stderr
    stepped = cli(
        "run",
        "-b",
        "tflite",
        "--pre",
        "autolevels",
        "--post",
        "saturation:amount=1.5",
        source,
        "-o",
        tmp_path / "stepped",
    )
    assert stepped.exit_code == 0, stepped.stderr
    before = cv2.imread(str(tmp_path / "plain" / "scan.png"))
    middle = cv2.imread(str(tmp_path / "levelled" / "scan.png"))
    after = cv2.imread(str(tmp_path / "stepped" / "scan.png"))
    assert after.shape == before.shape
    assert np.ptp(to_grey(after)) > 1.5 * np.ptp(to_grey(before))  # autolevels ran
    # The same levelled photo, with and without the saturation step (the model's colour for
    # a levelled photo differs from its colour for the faded one, so compare like with like).
    assert chroma(after).mean() > 1.2 * chroma(middle).mean()  # saturation ran


def test_steps_run_in_the_given_order(cli, tmp_path: Path) -> None:
    source = faded_scan(tmp_path / "scan.png")
    orders = {
        "grey": ["--post", "warmth:amount=20", "--post", "saturation:amount=0"],
        "warm": ["--post", "saturation:amount=0", "--post", "warmth:amount=20"],
    }
    for name, args in orders.items():
        result = cli("run", "-b", "tflite", *args, source, "-o", tmp_path / name)
        assert result.exit_code == 0, result.stderr
    grey = bgr_to_lab(cv2.imread(str(tmp_path / "grey" / "scan.png")))
    warm = bgr_to_lab(cv2.imread(str(tmp_path / "warm" / "scan.png")))
    assert np.abs(grey[:, :, 1:]).mean() < 1.5
    assert warm[:, :, 2].mean() > 12


@pytest.mark.parametrize(
    ("option", "spec", "message"),
    [
        ("--post", "saturation:amount=lots", "is not a float"),
        ("--post", "saturation:amount=-1", "outside"),
        ("--post", "saturation:level=2", "unknown option 'level'"),
        ("--post", "saturation:amount", "not key=value"),
        ("--post", "compare:layout=diagonal", "layout"),
        ("--pre", "denoise:method=median", "method"),
        ("--pre", "crop-border:tolerance=x", "tolerance"),
        ("--pre", "sharpen", "unknown preprocess step 'sharpen'"),
        ("--post", "autolevels", "unknown postprocess step 'autolevels'"),
    ],
)
def test_bad_step_options_are_a_one_line_error(
    cli, tmp_path: Path, option: str, spec: str, message: str
) -> None:
    source = faded_scan(tmp_path / "scan.png")
    result = cli("run", "-b", "tflite", option, spec, source, "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coloi: error:"), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_config_file_steps_and_the_command_line_wins(
    cli, tmp_path: Path, no_user_config: Path
) -> None:
    source = faded_scan(tmp_path / "scan.png", border=10)
    (no_user_config / "coloi").mkdir(parents=True)
    (no_user_config / "coloi" / "config.toml").write_text(
        '[run]\npre = ["crop-border"]\npost = ["saturation:amount=0"]\n'
    )
    from_config = cli("run", "-b", "tflite", source, "-o", tmp_path / "config")
    assert from_config.exit_code == 0, from_config.stderr
    out = cv2.imread(str(tmp_path / "config" / "scan.png"))
    assert out.shape == (96, 128, 3)  # the config's crop-border ran
    assert chroma(out).mean() < 1.5  # and its saturation:amount=0

    # --post on the command line replaces the config's post list; its pre list still applies.
    mixed = cli(
        "run", "-b", "tflite", "--post", "warmth:amount=20", source, "-o", tmp_path / "mixed"
    )
    assert mixed.exit_code == 0, mixed.stderr
    out = cv2.imread(str(tmp_path / "mixed" / "scan.png"))
    assert out.shape == (96, 128, 3)
    assert bgr_to_lab(out)[:, :, 2].mean() > 12

    (no_user_config / "coloi" / "config.toml").write_text('[run]\npost = "saturation"\n')
    bad = cli("run", "-b", "tflite", source, "-o", tmp_path / "bad")
    assert bad.exit_code == 1 and "must be a list of strings" in bad.stderr


def test_compare_through_the_cli(cli, tmp_path: Path) -> None:
    source = faded_scan(tmp_path / "scan.png")
    result = cli("run", "-b", "tflite", "--post", "compare", source, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    out = cv2.imread(str(tmp_path / "out" / "scan.png"))
    assert out.shape == (96, 256, 3)
    assert chroma(out[:, :128]).mean() < 1.0 < chroma(out[:, 128:]).mean()


def test_plugins_lists_the_builtin_steps(cli) -> None:
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    by_kind: dict[str, set[str]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], set()).add(row["name"])
    assert len(by_kind["backend"]) >= 2
    assert {"autolevels", "denoise", "crop-border"} <= by_kind["preprocess"]
    assert {"saturation", "warmth", "chroma-edges", "compare"} <= by_kind["postprocess"]
    steps = [r for r in rows if r["kind"] != "backend" and r["distribution"] == "coloi"]
    assert all(r["description"] for r in steps)
    assert {r["plugin"] for r in steps} == {"preprocess", "postprocess"}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_number_option_must_be_finite(cli, sample_photo: Path, value: str) -> None:
    """Round 2, fault 8: saturation:amount=nan passed and wrote a white image."""
    result = cli(
        "run",
        sample_photo,
        "-o",
        sample_photo.parent / "out",
        "-b",
        "tflite",
        "--post",
        f"saturation:amount={value}",
    )
    assert result.exit_code != 0
    assert f"amount={value}" in result.stderr and "not a finite number" in result.stderr
    assert not (sample_photo.parent / "out").exists()
