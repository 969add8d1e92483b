"""The command line itself: help for every command, version, plugins listing, light imports."""

from __future__ import annotations

import json
import sys

import pytest

from coloi.cli import app
from tests.conftest import run_coloi

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_every_command_has_help(cli) -> None:
    assert {"run", "plugins", "train", "export", "eval"} <= set(COMMANDS)
    for command in COMMANDS:
        result = cli(command, "--help")
        assert result.exit_code == 0, command
        assert "Usage" in result.stdout


def test_version(cli) -> None:
    from coloi import __version__

    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"coloi {__version__}"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["plugins"]])
def test_light_commands_import_no_framework(args: list[str]) -> None:
    code = (
        "import sys; from coloi.cli import app\n"
        f"try:\n    app({args!r}, prog_name='coloi')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'ai_edge_litert', 'tflite_runtime', "
        "'coloi.serve', 'starlette', 'uvicorn', 'python_multipart') "
        "if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out


def test_plugins_lists_builtin_backends(cli) -> None:
    result = cli("plugins", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    backends = {r["name"]: r for r in rows if r["kind"] == "backend"}
    assert {"tflite", "tf-gpu"} <= set(backends)
    assert backends["tflite"]["plugin"] == "tflite"
    assert all({"name", "kind", "plugin"} <= set(r) for r in rows)


def test_console_script_runs() -> None:
    result = run_coloi("plugins")
    assert result.returncode == 0
    assert "tflite" in result.stdout


def test_plugins_lists_every_option(cli) -> None:
    from coloi.plugin_host import get_registry

    rows = json.loads(cli("plugins", "--options", "--json").stdout)
    listed = {row["name"]: row["options"] for row in rows}
    for registration in get_registry().all():
        declared = registration.cls.options()
        assert [o["name"] for o in listed[registration.name]] == list(declared)
        for option in listed[registration.name]:
            assert option["help"] and option["type"] in {"float", "int", "str", "bool"}
            assert option["default"] == declared[option["name"]].default
    assert "options" not in json.loads(cli("plugins", "--json").stdout)[0]
    text = cli("plugins", "--options").stdout
    assert "strength=6.0  (float in [0.0, 50.0])" in text
