"""Shared fixtures: the real CLI in-process and as a subprocess, and photos the tests make."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from coloi.cli import app

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
MODELS = REPO / "models"

# The tf-gpu backend, training and export need the tf extra; without it their tests skip, so
# that `pip install -e '.[test]'` alone gives a green run.
needs_tf = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="needs TensorFlow (pip install -e '.[tf,test]')",
)
BACKENDS = ["tflite", pytest.param("tf-gpu", marks=needs_tf)]


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run ``coloi ARGS`` in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str | Path, env: dict[str, str] | None = None) -> object:
        return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


def run_coloi(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``coloi`` console script in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    coloi = shutil.which("coloi", path=str(Path(sys.executable).parent)) or "coloi"
    return subprocess.run(
        [coloi, *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def natural_photo(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth synthetic colour 'photo' (BGR uint8): sky-like gradient, a disc, some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    bgr = np.empty((height, width, 3), np.float32)
    bgr[..., 0] = 200 - 100 * y / height
    bgr[..., 1] = 120 + 60 * np.sin(x / 9.0)
    bgr[..., 2] = 60 + 120 * (x / width)
    disc = (y - height * 0.6) ** 2 + (x - width * 0.4) ** 2 < (min(height, width) / 4) ** 2
    bgr[disc] = (40, 180, 220)
    bgr += rng.normal(0, 6, bgr.shape)
    return np.clip(bgr, 0, 255).astype(np.uint8)


@pytest.fixture
def sample_photo(tmp_path: Path) -> Path:
    """A copy of a shipped real photo (the cat), in a folder of its own."""
    folder = tmp_path / "in"
    folder.mkdir()
    return Path(shutil.copy(SAMPLES / "chelsea.jpg", folder / "chelsea.jpg"))
