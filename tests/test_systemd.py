"""The systemd units are valid and the system units are locked down (exposure at most 2.5 for
the watch unit, 2.0 for the serve unit)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
COLOI = str(Path(sys.executable).parent / "coloi")


def _unit_copy(source: Path, folder: Path, name: str, installed_path: str) -> Path:
    # Point ExecStart at this environment's coloi, since verify checks that it exists.
    text = source.read_text().replace(installed_path, COLOI)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


@pytest.mark.parametrize(
    ("source", "name", "limit"),
    [
        ("coloi-watch@.service", "coloi-watch@family.service", 2.5),
        ("coloi-serve.service", "coloi-serve.service", 2.0),
    ],
)
def test_system_unit_verifies_and_is_locked_down(
    tmp_path: Path, source: str, name: str, limit: float
) -> None:
    unit = _unit_copy(REPO / "systemd" / source, tmp_path, name, "/usr/local/bin/coloi")
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score, security.stdout + security.stderr
    assert float(score.group(1)) <= limit


def test_user_unit_verifies(tmp_path: Path) -> None:
    unit = _unit_copy(
        REPO / "systemd" / "user" / "coloi-watch.service",
        tmp_path / "units",
        "coloi-watch.service",
        "%h/.local/bin/coloi",
    )
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    verify = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert verify.returncode == 0, verify.stderr


def test_unit_runs_the_real_command() -> None:
    text = (REPO / "systemd" / "coloi-watch@.service").read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert " watch " in exec_start and "--output" in exec_start and "Type=notify" in text


def test_serve_unit_runs_the_real_command() -> None:
    text = (REPO / "systemd" / "coloi-serve.service").read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split()[1] == "serve" and "Type=notify" in text
    # Writes nothing, and listens on the port coloi serve uses by default.
    import inspect

    from coloi.cli import serve

    port = inspect.signature(serve).parameters["port"].default
    assert "ReadWritePaths" not in text and f"SocketBindAllow=tcp:{port}" in text


@pytest.mark.parametrize("unit", ["coloi-watch@.service", "user/coloi-watch.service"])
def test_one_slow_photo_is_given_up_before_the_watchdog_kills_the_daemon(unit: str) -> None:
    """Round 2, fault 4: with no photo time limit, one crafted file kept the daemon busy past
    WatchdogSec; systemd killed it and restarted it into the same file."""
    text = (REPO / "systemd" / unit).read_text()
    match = re.search(r"(?:--photo-timeout |COLOI_PHOTO_TIMEOUT=)(\d+)", text)
    watchdog = re.search(r"^WatchdogSec=(\d+)$", text, re.MULTILINE)
    assert match and watchdog
    assert 0 < int(match.group(1)) <= int(watchdog.group(1)) / 2
