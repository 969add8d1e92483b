"""The user's configuration file: ``$XDG_CONFIG_HOME/coloi/config.toml`` (or the file named by
``COLOI_CONFIG``). Command-line options win over it.

Example::

    [run]
    pre = ["autolevels", "denoise:strength=8"]
    post = ["saturation:amount=1.2"]
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from coloi.errors import ColoiError

CONFIG_ENV = "COLOI_CONFIG"


def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "coloi" / "config.toml"


def load_config() -> dict[str, Any]:
    """The parsed config file, or an empty dict when there is none."""
    path = config_path()
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ColoiError(f"{path}: unreadable config file ({error})") from None


def step_specs(pre: list[str] | None, post: list[str] | None) -> tuple[list[str], list[str]]:
    """The step specs to use: each list from the command line if given, else from the config."""
    run = load_config().get("run", {})
    chosen = []
    for given, key in ((pre, "pre"), (post, "post")):
        if given:
            chosen.append(list(given))
            continue
        value = run.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ColoiError(f"{config_path()}: [run] {key} must be a list of strings")
        chosen.append(value)
    return chosen[0], chosen[1]
