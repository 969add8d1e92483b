"""The example plugins in examples/, installed for real with pip (into a folder on PYTHONPATH)
and driven through a real ``coloi`` process: listed by ``coloi plugins``, and doing what their
documentation says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from coloi.color import bgr_to_lab, lightness
from tests.conftest import REPO, run_coloi

EXAMPLES = REPO / "examples"
PACKAGES = ("coloi-sepia-tone", "coloi-flat-backend")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the example packages are pip-installed into (offline, no dependencies)."""
    setuptools = pytest.importorskip("setuptools", reason="building the examples needs it")
    if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.importorskip("wheel", reason="setuptools < 70.1 builds wheels with it")
    work = tmp_path_factory.mktemp("examples")
    # Build from copies: an in-tree build would leave build/ and *.egg-info in examples/.
    sources = [shutil.copytree(EXAMPLES / name, work / "src" / name) for name in PACKAGES]
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *map(str, sources),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return target


def coloi(site: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    clean = {
        "COLOI_DISABLE_PLUGIN_AUTOLOAD": "",
        "COLOI_PLUGINS": "",
        "COLOI_BLOCK_PLUGINS": "",
        "COLOI_BACKEND": "",
        "COLOI_CONFIG": "",
        "XDG_CONFIG_HOME": str(site.parent / "config"),
    }
    return run_coloi(*args, env={**clean, "PYTHONPATH": path, **env})


@pytest.fixture
def grey_photo(tmp_path: Path) -> Path:
    """A grey ramp from dark to light, with the midtones (where no colour clips) in the middle."""
    grey = np.tile(np.linspace(10, 245, 96), (64, 1)).astype(np.uint8)
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), grey)
    return path


def ab_of(path: Path) -> np.ndarray:
    """a*b* of the midtone columns of an output, where the colour fits in 8-bit sRGB."""
    return bgr_to_lab(cv2.imread(str(path)))[:, 32:64, 1:]


def test_both_examples_are_listed(site: Path) -> None:
    result = coloi(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["sepia-tone"]["kind"] == "postprocess"
    assert rows["sepia-tone"]["plugin"] == "sepia-tone"
    assert rows["sepia-tone"]["distribution"] == "coloi-sepia-tone"
    assert rows["sepia-tone"]["version"] == "0.1.0"
    assert rows["flat"]["kind"] == "backend" and rows["flat"]["available"] == "yes"
    assert rows["flat"]["distribution"] == "coloi-flat-backend"
    assert {"tflite", "autolevels", "saturation"} <= set(rows)  # the built-ins are still there
    blocked = coloi(site, "--block-plugin", "flat", "plugins", "--json")
    assert "flat" not in {row["name"] for row in json.loads(blocked.stdout)}


def test_sepia_tone_gives_every_pixel_the_sepia_hue(
    site: Path, grey_photo: Path, tmp_path: Path
) -> None:
    # "plain" has an identity step too, so that all four take the same (float) path.
    for name, args in (
        ("plain", ["--post", "saturation:amount=1"]),
        ("sepia", ["--post", "sepia-tone"]),
        ("none", ["--post", "sepia-tone:amount=0"]),
        ("half", ["--post", "sepia-tone:amount=0.5"]),
    ):
        result = coloi(site, "run", "-b", "tflite", *args, grey_photo, "-o", tmp_path / name)
        assert result.returncode == 0, result.stderr
    plain, sepia, none, half = (
        ab_of(tmp_path / n / "grey.png") for n in ("plain", "sepia", "none", "half")
    )
    np.testing.assert_allclose(sepia.mean(axis=(0, 1)), (6.0, 20.0), atol=1.0)
    assert sepia.std(axis=(0, 1)).max() < 1.0  # one hue everywhere
    assert np.array_equal(none, plain)  # amount=0: unchanged
    np.testing.assert_allclose(
        half.mean(axis=(0, 1)), 0.5 * plain.mean(axis=(0, 1)) + (3.0, 10.0), atol=1.0
    )
    bad = coloi(
        site,
        "run",
        "-b",
        "tflite",
        "--post",
        "sepia-tone:amount=2",
        grey_photo,
        "-o",
        tmp_path / "bad",
    )
    assert bad.returncode == 1 and "outside" in bad.stderr


def test_flat_backend_predicts_its_constant_colour(
    site: Path, grey_photo: Path, tmp_path: Path
) -> None:
    warm = coloi(site, "run", "-b", "flat", grey_photo, "-o", tmp_path / "warm")
    assert warm.returncode == 0, warm.stderr
    out = cv2.imread(str(tmp_path / "warm" / "grey.png"))
    np.testing.assert_allclose(
        ab_of(tmp_path / "warm" / "grey.png").mean(axis=(0, 1)), (10.0, 22.0), atol=1.0
    )
    grey = cv2.imread(str(grey_photo), cv2.IMREAD_GRAYSCALE)
    assert np.abs(bgr_to_lab(out)[:, :, 0] - lightness(grey)).mean() < 1.5  # own lightness

    cold = coloi(site, "run", "-b", "flat:a=-10,b=-30", grey_photo, "-o", tmp_path / "cold")
    assert cold.returncode == 0, cold.stderr
    np.testing.assert_allclose(
        ab_of(tmp_path / "cold" / "grey.png").mean(axis=(0, 1)), (-10.0, -30.0), atol=1.0
    )

    from_env = coloi(
        site, "run", grey_photo, "-o", tmp_path / "env", COLOI_BACKEND="flat:a=-10,b=-30"
    )
    assert from_env.returncode == 0, from_env.stderr
    assert (tmp_path / "env" / "grey.png").read_bytes() == (
        tmp_path / "cold" / "grey.png"
    ).read_bytes()

    for option, reason in (
        ("a=brown", "option a='brown' is not a float"),
        ("a=500", "option a=500.0 is outside [-128, 127]"),
        ("c=1", "unknown option 'c' (known: a, b)"),
    ):
        bad = coloi(site, "run", "-b", f"flat:{option}", grey_photo, "-o", tmp_path / "bad")
        assert bad.returncode == 1
        lines = bad.stderr.strip().splitlines()
        assert lines == [f"coloi: error: backend 'flat': {reason}"], bad.stderr
    assert not (tmp_path / "bad").exists()


def test_backend_and_step_options_are_listed(site: Path) -> None:
    result = coloi(site, "plugins", "--options", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["flat"]["options"] == [
        {
            "name": "a",
            "type": "float",
            "default": 10.0,
            "minimum": -128,
            "maximum": 127,
            "choices": None,
            "help": "a*: green (negative) to red (positive)",
        },
        {
            "name": "b",
            "type": "float",
            "default": 22.0,
            "minimum": -128,
            "maximum": 127,
            "choices": None,
            "help": "b*: blue (negative) to yellow (positive)",
        },
    ]
    assert [o["name"] for o in rows["sepia-tone"]["options"]] == ["amount"]
    assert rows["tflite"]["options"] == []
    text = coloi(site, "plugins", "--options")
    assert text.returncode == 0
    assert "a*: green (negative) to red (positive)" in text.stdout


def test_examples_together_with_builtin_steps(site: Path, grey_photo: Path, tmp_path: Path) -> None:
    # A third-party backend, a built-in step and a third-party step in one run, in order.
    result = coloi(
        site,
        "run",
        "-b",
        "flat",
        "--post",
        "saturation:amount=0",
        "--post",
        "sepia-tone",
        grey_photo,
        "-o",
        tmp_path / "out",
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(
        ab_of(tmp_path / "out" / "grey.png").mean(axis=(0, 1)), (6.0, 20.0), atol=1.0
    )
