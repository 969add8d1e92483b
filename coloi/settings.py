"""Every setting of a command, resolved once, here: defaults < config file < environment <
command line. Nothing else in coloi reads the environment for a setting; what is resolved here
is passed down explicitly.

- **Config file**: ``$COLOI_CONFIG``, else ``$XDG_CONFIG_HOME/coloi/config.toml`` (default
  ``~/.config/coloi/config.toml``). A table per command, holding any of that command's options
  by their long name (``max-pixels`` or ``max_pixels``)::

      [run]
      backend = "tflite"
      quality = 80
      pre = ["autolevels"]

  An unknown table or key, or a value the option refuses, is an error naming it and the file.
- **Environment**: ``COLOI_`` and the option's long name in capitals, dashes as underscores:
  ``COLOI_BACKEND`` for ``--backend``, ``COLOI_MAX_PIXELS`` for ``--max-pixels``. One variable
  serves every command with that option (``COLOI_BACKEND`` sets ``run``, ``watch`` and
  ``eval``). A repeatable option takes a space-separated list (``COLOI_PRE="autolevels
  denoise"``); an empty variable counts as unset.
- **Plugin control** keeps its own comma-separated variables (as pytest's ``PYTEST_PLUGINS``):
  ``COLOI_BLOCK_PLUGINS``, ``COLOI_DISABLE_PLUGIN_AUTOLOAD`` and ``COLOI_PLUGINS``, and
  ``COLOI_PLUGIN_IMPORT_TIMEOUT`` (seconds); see :class:`PluginSettings`.

The command line is parsed by click, which applies exactly this order when each option carries
its variable (:func:`assign_envvars`) and the context its config table (:func:`config_defaults`).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coloi.errors import ColoiError

ENV_PREFIX = "COLOI_"
CONFIG_ENV = "COLOI_CONFIG"
DISABLE_AUTOLOAD_ENV = "COLOI_DISABLE_PLUGIN_AUTOLOAD"
ENABLE_ENV = "COLOI_PLUGINS"
BLOCK_ENV = "COLOI_BLOCK_PLUGINS"
IMPORT_TIMEOUT_ENV = "COLOI_PLUGIN_IMPORT_TIMEOUT"


class ConfigError(ColoiError):
    """The config file is unreadable, or names a table, key or value coloi does not know."""


def option_name(param: Any) -> str | None:
    """An option's long name without its dashes (``max-pixels``), or None for an argument."""
    longs = [opt[2:] for opt in getattr(param, "opts", ()) if opt.startswith("--")]
    return longs[0] if longs and param.param_type_name == "option" else None


def envvar_of(name: str) -> str:
    """The environment variable of the option ``--name``."""
    return ENV_PREFIX + name.upper().replace("-", "_")


def assign_envvars(commands: Mapping[str, Any]) -> None:
    """Give every option of every command its ``COLOI_*`` variable (shown in its help)."""
    for command in commands.values():
        for param in command.params:
            name = option_name(param)
            if name and name != "help":
                param.envvar = envvar_of(name)


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "coloi" / "config.toml"


def read_config(path: Path) -> dict[str, Any]:
    """The parsed config file, or an empty dict when there is none."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as error:  # tomllib decodes the whole file first
        raise ConfigError(
            f"{path}: unreadable config file (not UTF-8: byte "
            f"{error.object[error.start]:#04x} at offset {error.start})"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: unreadable config file ({error})") from None


def config_defaults(
    commands: Mapping[str, Any], ctx: Any, environ: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """The config file as click's ``default_map``: {command: {parameter name: value}}, each
    value checked by the option it sets, so that a mistake names the file and the key."""
    import typer  # the CLI's own parser, whose options check the values

    path = config_path(environ)
    config = read_config(path)
    defaults: dict[str, dict[str, Any]] = {}
    for table, values in config.items():
        if table not in commands:
            raise ConfigError(
                f"{path}: unknown table [{table}] (commands: {', '.join(sorted(commands))})"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {table} must be a table, [{table}]")
        names = {
            param.name: name
            for param in commands[table].params
            if (name := option_name(param)) and name != "help"
        }
        options = {
            name.replace("-", "_"): param
            for param in commands[table].params
            if (name := names.get(param.name))
        }
        defaults[table] = {}
        for key, value in values.items():
            param = options.get(key.replace("-", "_"))
            if param is None:
                raise ConfigError(
                    f"{path}: [{table}] {key}: unknown option of coloi {table} "
                    f"(known: {', '.join(sorted(names.values()))})"
                )
            if param.multiple and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise ConfigError(f"{path}: [{table}] {key} must be a list of strings")
            try:
                param.type_cast_value(ctx, value)
            except typer.BadParameter as error:
                raise ConfigError(f"{path}: [{table}] {key} = {value!r}: {error.message}") from None
            defaults[table][param.name] = value
    return defaults


def _names(value: str | None) -> frozenset[str]:
    return frozenset(n.strip() for n in (value or "").split(",") if n.strip())


@dataclass(frozen=True)
class PluginSettings:
    """Which plugins to load: all installed ones unless ``autoload`` is off (then only coloi's
    own and those in ``enabled``), never those in ``blocked``."""

    blocked: frozenset[str] = field(default_factory=frozenset)
    autoload: bool = True
    enabled: frozenset[str] = field(default_factory=frozenset)
    # Seconds a plugin's import may take before coloi gives it up (0: no limit): a plugin that
    # hangs at import would otherwise hang every command, the daemon's start included.
    import_timeout: float = 30.0

    @classmethod
    def resolve(cls, environ: Mapping[str, str], blocked: Iterable[str] = ()) -> PluginSettings:
        """From ``COLOI_BLOCK_PLUGINS``, ``COLOI_DISABLE_PLUGIN_AUTOLOAD``, ``COLOI_PLUGINS`` and
        ``COLOI_PLUGIN_IMPORT_TIMEOUT``, plus the names of ``--block-plugin``."""
        autoload = environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in (
            "",
            "0",
            "false",
            "no",
            "off",
        )
        timeout = cls.import_timeout
        if environ.get(IMPORT_TIMEOUT_ENV, "").strip():
            try:
                timeout = float(environ[IMPORT_TIMEOUT_ENV])
            except ValueError:
                timeout = math.nan
            if not (math.isfinite(timeout) and timeout >= 0):
                raise ConfigError(
                    f"{IMPORT_TIMEOUT_ENV}={environ[IMPORT_TIMEOUT_ENV]!r}: "
                    f"must be a number of seconds (0: no limit)"
                )
        return cls(
            _names(environ.get(BLOCK_ENV)) | frozenset(blocked),
            autoload,
            _names(environ.get(ENABLE_ENV)),
            timeout,
        )


def under_journald(environ: Mapping[str, str]) -> bool:
    """Whether systemd connected our output to the journal (it sets ``JOURNAL_STREAM``)."""
    return bool(environ.get("JOURNAL_STREAM"))


def environment() -> Mapping[str, str]:
    """The process environment: read here, and only here, for coloi's settings."""
    return os.environ
