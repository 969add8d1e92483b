"""One settings model: defaults < config.toml (a table per command) < COLOI_* environment <
command line, through the real CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, run_coloi


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config file the CLI reads, empty; no COLOI_* setting inherited."""
    path = tmp_path / "config" / "coloi" / "config.toml"
    path.parent.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("COLOI_CONFIG", "COLOI_BACKEND", "COLOI_QUALITY", "COLOI_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_run_takes_backend_and_quality_from_the_config(cli, config: Path, tmp_path: Path) -> None:
    photo = SAMPLES / "chelsea.jpg"
    assert cli("run", "-b", "tflite", photo, "-o", tmp_path / "q95").exit_code == 0
    assert (
        cli("run", "-b", "tflite", "--quality", "80", photo, "-o", tmp_path / "q80").exit_code == 0
    )
    config.write_text('[run]\nbackend = "tflite"\nquality = 80\n')
    result = cli("run", photo, "-o", tmp_path / "config")
    assert result.exit_code == 0, result.stderr
    made = (tmp_path / "config" / "chelsea.jpg").read_bytes()
    assert made == (tmp_path / "q80" / "chelsea.jpg").read_bytes()
    assert len(made) < len((tmp_path / "q95" / "chelsea.jpg").read_bytes())


def test_precedence_config_then_environment_then_command_line(
    cli, config: Path, tmp_path: Path
) -> None:
    photo = SAMPLES / "camera.png"
    config.write_text('[run]\nbackend = "from-config"\n')
    result = cli("run", photo, "-o", tmp_path / "a")
    assert result.exit_code == 1 and "unknown backend 'from-config'" in result.stderr
    result = cli("run", photo, "-o", tmp_path / "b", env={"COLOI_BACKEND": "from-env"})
    assert result.exit_code == 1 and "unknown backend 'from-env'" in result.stderr
    result = cli(
        "run", "-b", "tflite", photo, "-o", tmp_path / "c", env={"COLOI_BACKEND": "from-env"}
    )
    assert result.exit_code == 0, result.stderr
    result = cli("run", photo, "-o", tmp_path / "d", env={"COLOI_BACKEND": "tflite"})
    assert result.exit_code == 0, result.stderr


def test_coloi_backend_sets_run_and_watch_alike(config: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for args in (["run", SAMPLES / "camera.png"], ["watch", tmp_path / "in"]):
        result = run_coloi(
            *args,
            "-o",
            tmp_path / "out",
            env={"COLOI_BACKEND": "not-installed", "XDG_CONFIG_HOME": str(config.parent.parent)},
        )
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("coloi: error: unknown backend 'not-installed'")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\nqualty = 80\n", "[run] qualty: unknown option of coloi run"),
        ("[run]\nquality = 200\n", "[run] quality = 200: "),
        ('[run]\npost = "saturation"\n', "[run] post must be a list of strings"),
        ("[rnu]\nquality = 80\n", "unknown table [rnu]"),
        ("[run\n", "unreadable config file"),
    ],
)
def test_config_mistakes_name_the_file_and_the_key(
    cli, config: Path, text: str, message: str
) -> None:
    config.write_text(text)
    result = cli("run", SAMPLES / "camera.png")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"coloi: error: {config}: {message}"), result.stderr


def test_every_option_of_a_command_can_be_configured(cli, config: Path, tmp_path: Path) -> None:
    config.write_text(
        "[watch]\nsettle = 0.5\npoll-interval = 0.3\nphoto_timeout = 10\n"
        "[eval]\nlimit = 3\n[plugins]\njson = true\n"
    )
    result = cli("plugins")
    assert result.exit_code == 0 and result.stdout.lstrip().startswith("[")


def test_no_module_reads_the_environment_but_settings() -> None:
    """coloi's settings come from coloi/settings.py alone; the other readers of the environment
    read other programs' variables, each for a reason."""
    from tests.conftest import REPO

    others = {
        "coloi/sdnotify.py": "systemd's NOTIFY_SOCKET and WATCHDOG_USEC",
        "coloi/imageio.py": "OpenCV's own OPENCV_LOG_LEVEL",
        "coloi/cli.py": "KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL, for train and export",
        "plugins/tf_backend.py": "KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL, set for TensorFlow",
    }
    readers = {
        path.relative_to(REPO).as_posix(): path.read_text()
        for folder in ("coloi", "plugins")
        for path in (REPO / folder).rglob("*.py")
        if re.search(r"os\.environ|getenv", path.read_text())
    }
    readers = {
        name: text for name, text in readers.items() if not name.startswith("coloi/training/")
    }  # the model's own code
    assert set(readers) == {"coloi/settings.py", *others}
    for name in others:
        assert "COLOI_" not in "".join(
            line for line in readers[name].splitlines() if "os.environ" in line
        ), name
