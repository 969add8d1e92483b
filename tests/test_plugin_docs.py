"""docs/plugins.md keeps up with the code: every hook, every built-in step and each of its
options is documented, and the guide's example code works."""

from __future__ import annotations

import inspect
import re
import types

import numpy as np
import pytest

from coloi import hookspecs
from coloi.backend import Backend, BackendSettings
from coloi.plugin_host import get_registry
from coloi.steps import PreprocessStep, Step
from tests.conftest import REPO

DOCS = REPO / "docs" / "plugins.md"

HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("coloi_") and inspect.isfunction(value)
)


@pytest.fixture(scope="module")
def docs() -> str:
    return DOCS.read_text()


@pytest.fixture(scope="module")
def builtin_steps() -> list[tuple[str, type]]:
    """(name, class) of every step coloi itself registers."""
    registry = get_registry()
    return [
        (r.name, r.cls) for r in registry.all() if r.kind != "backend" and r.distribution == "coloi"
    ]


def section(docs: str, heading: str) -> str:
    """The text under a ``### `heading` `` up to the next heading of that level or above."""
    match = re.search(
        rf"^### `{re.escape(heading)}`\n(.*?)(?=^#{{1,3}} |\Z)", docs, re.MULTILINE | re.DOTALL
    )
    assert match, f"docs/plugins.md has no section ### `{heading}`"
    return match.group(1)


def test_there_are_hooks_and_steps_to_check(builtin_steps: list[tuple[str, type]]) -> None:
    assert len(HOOKS) >= 3
    assert len(builtin_steps) >= 6


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(docs: str, hook: str) -> None:
    text = section(docs, hook)
    assert f"def {hook}(" in text  # with its signature


def test_every_builtin_step_and_option_is_documented(
    docs: str, builtin_steps: list[tuple[str, type]]
) -> None:
    for name, cls in builtin_steps:
        text = section(docs, name)
        assert issubclass(cls, Step)
        for option in cls.options():
            assert f"| `{option}` |" in text, f"option {option} of {name} is not documented"


def test_plugin_control_is_documented(docs: str) -> None:
    for word in (
        "COLOI_DISABLE_PLUGIN_AUTOLOAD=1",
        "COLOI_PLUGINS=a,b",
        "COLOI_BLOCK_PLUGINS=a,b",
        "--block-plugin NAME",
        "[project.entry-points.coloi]",
        "## Trust model",
    ):
        assert word in docs


def code_after(docs: str, marker: str) -> str:
    """The first ```python block after ``marker``."""
    start = docs.index(marker)
    match = re.search(r"```python\n(.*?)```", docs[start:], re.DOTALL)
    assert match
    return match.group(1)


def as_module(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def test_the_guide_example_step_works(docs: str) -> None:
    module = as_module(code_after(docs, "`coloi_gamma.py`:"), "coloi_gamma")
    (gamma,) = module.coloi_register_preprocessors()
    assert issubclass(gamma, PreprocessStep) and gamma.name == "gamma"
    grey = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1)
    out = gamma(value="2").process(grey)
    assert out.dtype == np.float32 and out[0, 25] == pytest.approx(0.5)


def test_the_guide_example_backend_works(docs: str) -> None:
    module = as_module(code_after(docs, "A minimal\nbackend:"), "flat")
    (flat,) = module.coloi_register_backends()
    assert issubclass(flat, Backend)
    ab = flat(BackendSettings()).predict_ab(np.zeros((4, 4), np.float32))
    assert ab.shape[2] == 2 and np.allclose(ab, (10.0, 22.0))
