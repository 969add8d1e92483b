"""Plugin loading and control, on fake installed distributions: a plugin that fails at import,
blocking it, switching autoload off, a good third-party plugin using every hook, and the errors
for duplicated or invalid registrations.

Each fake distribution is a ``NAME-0.1.dist-info`` folder (METADATA and entry_points.txt in the
``coloi`` group) plus its module, found through PYTHONPATH by a real ``coloi`` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import types
from pathlib import Path

import cv2
import numpy as np
import pluggy
import pytest

from coloi.color import bgr_to_lab, lightness
from coloi.errors import PluginError
from coloi.plugin_host import ColoiPluginManager, Registry, build_registry, get_registry
from tests.conftest import run_coloi

BROKEN = "raise RuntimeError('this plugin is broken on purpose')\n"

GOOD = textwrap.dedent('''
    """A third-party plugin using every hook: a backend, a preprocess and a postprocess step."""
    import numpy as np

    from coloi import hookimpl
    from coloi.backend import Backend
    from coloi.steps import Option, PostprocessStep, PreprocessStep


    class ConstantBackend(Backend):
        name = "test-constant"
        description = "predicts a* = 20, b* = -20 everywhere"

        def __init__(self, settings):
            pass

        def predict_ab(self, lightness):
            return np.full((8, 8, 2), (20.0, -20.0), np.float32)


    class Invert(PreprocessStep):
        name = "test-invert"
        description = "negative of the grey photo"

        def process(self, grey):
            return 1.0 - grey


    class Shift(PostprocessStep):
        name = "test-shift"
        description = "add to a*"
        by = Option(float, 10.0, "a* shift")

        def process(self, photo):
            photo.ab[:, :, 0] += self.by
            return photo


    @hookimpl
    def coloi_register_backends():
        return [ConstantBackend]


    @hookimpl
    def coloi_register_preprocessors():
        return [Invert]


    @hookimpl
    def coloi_register_postprocessors():
        return [Shift]
''')

DUPLICATE = textwrap.dedent("""
    from coloi import hookimpl
    from coloi.backend import Backend


    class Impostor(Backend):
        name = "tflite"

        def __init__(self, settings):
            pass

        def predict_ab(self, lightness):
            raise AssertionError


    @hookimpl
    def coloi_register_backends():
        return [Impostor]
""")


def fake_distribution(
    root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Install distribution ``name`` 0.1 into ``root`` by hand: its dist-info and modules."""
    dist_info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[coloi]\n{lines}")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    return root


def coloi(root: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``coloi ARGS`` with the fake distributions in ``root`` installed, and no plugin
    settings inherited from the environment except ``env``."""
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH", "")]))
    clean = {
        "COLOI_DISABLE_PLUGIN_AUTOLOAD": "",
        "COLOI_PLUGINS": "",
        "COLOI_BLOCK_PLUGINS": "",
        "XDG_CONFIG_HOME": str(root / "config"),
        "COLOI_CONFIG": "",
    }
    return run_coloi(*args, env={**clean, "PYTHONPATH": path, **env})


def names(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stderr
    return {row["name"] for row in json.loads(result.stdout)}


BUILTINS = {
    "tflite",
    "tf-gpu",
    "autolevels",
    "denoise",
    "crop-border",
    "saturation",
    "warmth",
    "chroma-edges",
    "compare",
}


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    return fake_distribution(
        tmp_path / "site", "coloi-broken", {"broken": "coloi_broken"}, {"coloi_broken": BROKEN}
    )


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return fake_distribution(
        tmp_path / "site", "coloi-good", {"good": "coloi_good"}, {"coloi_good": GOOD}
    )


def test_a_plugin_failing_at_import_is_a_one_line_error_naming_it(broken: Path) -> None:
    result = coloi(broken, "plugins")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("coloi: error: plugin 'broken'")
    assert "RuntimeError: this plugin is broken on purpose" in lines[0]
    assert "COLOI_BLOCK_PLUGINS=broken" in lines[0]  # says how to get going again
    assert result.stdout == ""


def test_help_works_with_a_broken_plugin(broken: Path) -> None:
    result = coloi(broken, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_blocking_the_broken_plugin(broken: Path) -> None:
    assert names(coloi(broken, "plugins", "--json", COLOI_BLOCK_PLUGINS="x,broken")) >= BUILTINS
    assert names(coloi(broken, "--block-plugin", "broken", "plugins", "--json")) >= BUILTINS


def test_autoload_off_skips_third_party_plugins_but_loads_the_builtins(broken: Path) -> None:
    assert names(coloi(broken, "plugins", "--json", COLOI_DISABLE_PLUGIN_AUTOLOAD="1")) >= BUILTINS
    # COLOI_PLUGINS names third-party plugins to load anyway.
    named = coloi(broken, "plugins", COLOI_DISABLE_PLUGIN_AUTOLOAD="1", COLOI_PLUGINS="broken")
    assert named.returncode == 1 and "plugin 'broken'" in named.stderr


def test_blocking_a_builtin(good: Path) -> None:
    listed = names(
        coloi(
            good, "--block-plugin", "postprocess", "--block-plugin", "tf-gpu", "plugins", "--json"
        )
    )
    assert "saturation" not in listed and "tf-gpu" not in listed
    assert {"tflite", "autolevels", "test-shift"} <= listed


def test_a_third_party_plugin_uses_every_hook(good: Path, tmp_path: Path) -> None:
    result = coloi(good, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {rows[n]["kind"] for n in ("test-constant", "test-invert", "test-shift")} == {
        "backend",
        "preprocess",
        "postprocess",
    }
    assert rows["test-shift"]["plugin"] == "good"
    assert rows["test-shift"]["distribution"] == "coloi-good"
    assert rows["test-shift"]["version"] == "0.1"
    assert set(rows) >= BUILTINS
    assert "test-shift" not in names(
        coloi(good, "plugins", "--json", COLOI_DISABLE_PLUGIN_AUTOLOAD="1")
    )
    assert "test-shift" in names(
        coloi(good, "plugins", "--json", COLOI_DISABLE_PLUGIN_AUTOLOAD="1", COLOI_PLUGINS="good")
    )

    grey = np.tile(np.linspace(20, 230, 64, dtype=np.float32), (48, 1)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    ran = coloi(
        good,
        "run",
        "-b",
        "test-constant",
        "--pre",
        "test-invert",
        "--post",
        "test-shift:by=5",
        tmp_path / "grey.png",
        "-o",
        tmp_path / "out",
    )
    assert ran.returncode == 0, ran.stderr
    lab = bgr_to_lab(cv2.imread(str(tmp_path / "out" / "grey.png")))
    middle = lab[:, 24:40]  # away from the gamut's edges at black and white
    assert np.abs(middle[:, :, 1] - 25).max() < 3 and np.abs(middle[:, :, 2] + 20).max() < 3
    assert np.abs(lab[:, :, 0] - lightness(255 - grey)).mean() < 1.0  # inverted


def test_a_duplicate_backend_name_is_a_clear_error(tmp_path: Path) -> None:
    root = fake_distribution(
        tmp_path / "site",
        "coloi-impostor",
        {"impostor": "coloi_impostor"},
        {"coloi_impostor": DUPLICATE},
    )
    result = coloi(root, "plugins")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "backend 'tflite' is already registered" in lines[0]
    assert "'impostor'" in lines[0] and "'tflite'" in lines[0]
    assert "tflite" in names(coloi(root, "--block-plugin", "impostor", "plugins", "--json"))


def test_an_entry_point_name_taken_by_two_distributions_is_an_error(tmp_path: Path) -> None:
    # Blocking is by entry-point name, so two plugins called "tflite" cannot be told apart.
    root = fake_distribution(
        tmp_path / "site", "coloi-shadow", {"tflite": "coloi_good"}, {"coloi_good": GOOD}
    )
    result = coloi(root, "plugins")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'tflite'" in lines[0] and "coloi-shadow" in lines[0]


# --- the registry, in-process ------------------------------------------------------------------


def registry_of(*plugins: object) -> Registry:
    manager = ColoiPluginManager()
    for index, plugin in enumerate(plugins):
        manager.register_plugin(plugin, f"plugin{index}")
    manager.check_hooks()
    return build_registry(manager)


def plugin_module(source: str, name: str) -> types.ModuleType:
    """A plugin module made from source, without a file or an entry point."""
    module = types.ModuleType(name)
    exec(compile(textwrap.dedent(source), name, "exec"), module.__dict__)
    return module


def test_duplicate_step_names_between_plugins_are_an_error() -> None:
    source = """
        from coloi import hookimpl
        from coloi.steps import PostprocessStep

        class Twin(PostprocessStep):
            name = "twin"

            def process(self, photo):
                return photo

        @hookimpl
        def coloi_register_postprocessors():
            return [Twin]
    """
    first, second = plugin_module(source, "first"), plugin_module(source, "second")
    with pytest.raises(PluginError, match="postprocess 'twin' is already registered by plugin"):
        registry_of(first, second)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return [object]", "not a subclass of Backend"),
        ("return ['tflite']", "not a subclass of Backend"),
        ("raise ValueError('boom')", "coloi_register_backends failed: ValueError: boom"),
        ("return [Nameless]", "has no name"),
        ("return Nameless", "returned <class 'bad.Nameless'>, not a list of classes"),
    ],
)
def test_invalid_registrations_are_plugin_errors(body: str, message: str) -> None:
    source = f"""
        from coloi import hookimpl
        from coloi.backend import Backend

        class Nameless(Backend):
            def __init__(self, settings):
                pass

            def predict_ab(self, lightness):
                raise AssertionError

        @hookimpl
        def coloi_register_backends():
            {body}
    """
    with pytest.raises(PluginError, match=message):
        registry_of(plugin_module(source, "bad"))


def test_none_registers_nothing() -> None:
    source = """
        from coloi import hookimpl

        @hookimpl
        def coloi_register_preprocessors():
            return None
    """
    registry = registry_of(plugin_module(source, "empty"))
    assert registry.preprocessors == {}


def test_blocked_plugins_are_not_listed_as_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("COLOI_DISABLE_PLUGIN_AUTOLOAD", "COLOI_PLUGINS", "COLOI_BLOCK_PLUGINS"):
        monkeypatch.delenv(env, raising=False)
    registry = get_registry({"tf-gpu"})
    plugins = {plugin["name"]: plugin for plugin in registry.plugins}
    assert "tf-gpu" not in plugins and "tf-gpu" not in registry.backends
    assert plugins["preprocess"]["hooks"] == ["coloi_register_preprocessors"]
    assert plugins["preprocess"]["distribution"] == "coloi"


def test_hooks_are_called_through_pluggy() -> None:
    """pluggy, not coloi, calls each implementation: its hookimpl options are honoured (an
    optional hook a plugin implements for a newer coloi is not an error) and an implementation
    whose arguments the hook does not have, or a misspelt hook, is refused at start-up."""
    source = """
        from coloi import hookimpl
        from coloi.steps import PreprocessStep

        class Same(PreprocessStep):
            name = "same"

            def process(self, grey):
                return grey

        @hookimpl(tryfirst=True)
        def coloi_register_preprocessors():
            return [Same]

        @hookimpl(optionalhook=True)
        def coloi_register_from_the_future():
            raise AssertionError("never called")
    """
    registry = registry_of(plugin_module(source, "modern"))
    assert list(registry.preprocessors) == ["same"]
    assert registry.preprocessors["same"].plugin == "plugin0"

    wrong_argument = """
        from coloi import hookimpl

        @hookimpl
        def coloi_register_backends(no_such_argument):
            return []
    """
    with pytest.raises(PluginError, match=r"plugin 'plugin0': .*no_such_argument"):
        registry_of(plugin_module(wrong_argument, "wrong"))
    misspelt = """
        from coloi import hookimpl

        @hookimpl
        def coloi_register_backend():
            return []
    """
    with pytest.raises(PluginError, match=r"plugin 'plugin0': .*coloi_register_backend"):
        registry_of(plugin_module(misspelt, "misspelt"))


def test_the_manager_keeps_its_state_typed() -> None:
    from coloi.plugin_host import get_plugin_manager

    manager = get_plugin_manager()
    assert isinstance(manager, ColoiPluginManager) and isinstance(manager, pluggy.PluginManager)
    assert manager.sources["tflite"][0] == "coloi"
