"""The plugin host: loads plugins from the ``coloi`` entry-point group and builds the registry
of backends and steps they provide.

Nothing is loaded at import time; commands call :func:`get_registry`. Which plugins load is a
:class:`coloi.settings.PluginSettings`, passed in: autoload of third-party plugins can be
switched off (coloi's own entry points still load, and named third-party ones load anyway), and
any plugin can be blocked by its entry-point name. The CLI resolves these from
``COLOI_DISABLE_PLUGIN_AUTOLOAD=1``, ``COLOI_PLUGINS=a,b``, ``COLOI_BLOCK_PLUGINS=a,b`` and
``--block-plugin``; this module reads no environment.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from coloi import hookspecs
from coloi.backend import Backend
from coloi.errors import BackendUnavailable, PluginError
from coloi.settings import BLOCK_ENV, PluginSettings
from coloi.steps import PostprocessStep, PreprocessStep, Step

ENTRY_POINT_GROUP = "coloi"
OWN_DISTRIBUTION = "coloi"

from coloi import hookimpl  # noqa: E402,F401 - re-exported for plugins


def _plugin_settings(plugins: PluginSettings | Iterable[str] | None) -> PluginSettings:
    """``plugins`` as settings: an iterable of names is the plugins to block."""
    if isinstance(plugins, PluginSettings):
        return plugins
    return PluginSettings(blocked=frozenset(plugins or ()))


@dataclass(frozen=True)
class Registration:
    """Something a plugin registered, and which plugin (entry point) registered it."""

    name: str
    kind: str
    cls: Any  # a Backend, PreprocessStep or PostprocessStep subclass, as ``kind`` says
    plugin: str
    distribution: str
    version: str


@dataclass
class Registry:
    """Name -> registration maps for backends and steps, built once at start-up."""

    backends: dict[str, Registration] = field(default_factory=dict)
    preprocessors: dict[str, Registration] = field(default_factory=dict)
    postprocessors: dict[str, Registration] = field(default_factory=dict)
    plugins: list[dict[str, Any]] = field(default_factory=list)

    def all(self) -> list[Registration]:
        return [
            *self.backends.values(),
            *self.preprocessors.values(),
            *self.postprocessors.values(),
        ]

    def describe(self, options: bool = False) -> list[dict[str, Any]]:
        """Each backend and step as ``coloi plugins --json`` lists it (and ``GET /v1/plugins``
        of ``coloi serve``): name, kind, plugin, distribution, version, description,
        availability, and with ``options`` each one's options."""
        rows: list[dict[str, Any]] = []
        for r in self.all():
            row = {
                "name": r.name,
                "kind": r.kind,
                "plugin": r.plugin,
                "distribution": r.distribution,
                "version": r.version,
                "description": r.cls.description,
                "available": (r.cls.unavailable_reason() or "yes")
                if r.kind == "backend"
                else "yes",
            }
            if options:
                row["options"] = [option.describe(name) for name, option in r.cls.options().items()]
            rows.append(row)
        return rows

    def backend(self, name: str) -> type[Backend]:
        """The backend class called ``name``; ``auto`` picks the best available one here."""
        if name == "auto":
            ranked = sorted(
                (
                    r
                    for r in self.backends.values()
                    if r.cls.auto_priority() >= 0 and r.cls.unavailable_reason() is None
                ),
                key=lambda r: -r.cls.auto_priority(),
            )
            if not ranked:
                raise BackendUnavailable("no backend can run here (--backend auto)")
            return ranked[0].cls
        if name not in self.backends:
            raise BackendUnavailable(
                f"unknown backend {name!r} (installed: {', '.join(sorted(self.backends))})"
            )
        cls = self.backends[name].cls
        reason = cls.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"backend {name!r} cannot run here: {reason}")
        return cls

    def step(self, kind: str, name: str, options: dict[str, Any]) -> Step:
        table = self.preprocessors if kind == "preprocess" else self.postprocessors
        if name not in table:
            raise PluginError(
                f"unknown {kind} step {name!r} (installed: {', '.join(sorted(table)) or 'none'})"
            )
        step: Step = table[name].cls(**options)
        return step


class ColoiPluginManager(pluggy.PluginManager):
    """pluggy's plugin manager with coloi's hookspecs, and what coloi needs to know besides:
    the distribution and version each plugin came from (for ``coloi plugins``)."""

    def __init__(self) -> None:
        super().__init__("coloi")
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)

    def register_plugin(
        self, plugin: object, name: str, distribution: str = "", version: str = ""
    ) -> None:
        """Register ``plugin`` under ``name``; an implementation that does not fit its hook's
        specification (an argument the hook does not have) is a :class:`PluginError`."""
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as error:
            raise PluginError(f"plugin {name!r}: {_one_line(error)}") from None
        self.sources[name] = (distribution, version)

    def check_hooks(self) -> None:
        """Every ``coloi_*`` function a plugin marked as a hook implementation names a real
        hook: a misspelt one would otherwise be silently never called."""
        try:
            self.check_pending()
        except pluggy.PluginValidationError as error:
            name = self.get_name(error.plugin) or repr(error.plugin)
            raise PluginError(f"plugin {name!r}: {_one_line(error)}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def get_plugin_manager(
    plugins: PluginSettings | Iterable[str] | None = None,
) -> ColoiPluginManager:
    """A plugin manager with coloi's hookspecs and every ``coloi`` entry point that ``plugins``
    allows (by default all; an iterable of names blocks those) loaded.

    Each plugin is registered under its entry-point name. A plugin that fails to import, or
    whose hook implementations do not fit coloi's hooks, raises :class:`PluginError` naming it.
    """
    manager = ColoiPluginManager()
    settings = _plugin_settings(plugins)
    blocked, autoload, enabled = settings.blocked, settings.autoload, settings.enabled
    owners: dict[str, str] = {}  # entry-point name -> distribution
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in blocked:
            manager.set_blocked(entry_point.name)
            continue
        dist = entry_point.dist.name if entry_point.dist else ""
        # Plugins are blocked and reported by name, so a second plugin of the same name would
        # silently replace (or hide behind) the first one: coloi's own "tflite", say.
        if entry_point.name in owners:
            raise PluginError(
                f"plugin name {entry_point.name!r} is used by two distributions, "
                f"{owners[entry_point.name]!r} and {dist!r} (uninstall one)"
            )
        owners[entry_point.name] = dist
        if not (autoload or dist == OWN_DISTRIBUTION or entry_point.name in enabled):
            continue
        plugin = _load(entry_point, settings.import_timeout)
        manager.register_plugin(
            plugin, entry_point.name, dist, entry_point.dist.version if entry_point.dist else ""
        )
    manager.check_hooks()
    return manager


class _ImportTimeout(BaseException):
    """Raised into a plugin's import by SIGALRM; a BaseException, so that the plugin's own
    ``except Exception`` cannot swallow it."""


def _load(entry_point: metadata.EntryPoint, timeout: float) -> object:
    """Import a plugin, as one :class:`PluginError` naming it if that fails, exits or takes
    longer than ``timeout`` seconds (0: no limit). The limit needs SIGALRM, so it holds in a
    process's main thread on POSIX, where the CLI loads its plugins; elsewhere it is waived."""
    name = entry_point.name
    unblock = f"(block it with --block-plugin {name} or {BLOCK_ENV}={name})"
    timed = (
        timeout > 0
        and hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
    )
    if timed:

        def expire(signum: int, frame: object) -> None:
            raise _ImportTimeout

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return entry_point.load()
    except _ImportTimeout:
        raise PluginError(
            f"plugin {name!r} ({entry_point.value}) was still importing after "
            f"{timeout:g} s, so coloi gave up {unblock}"
        ) from None
    # SystemExit too: a plugin that calls sys.exit() at import would end coloi with its status
    # (0, for sys.exit()), as if every photo had been done.
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure of a plugin's code
        reason = " ".join(str(error).split())
        raise PluginError(
            f"plugin {name!r} ({entry_point.value}) failed to load: "
            f"{type(error).__name__}: {reason} {unblock}"
        ) from None
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def build_registry(manager: pluggy.PluginManager) -> Registry:
    """Collect every plugin's registrations; a duplicate name is a :class:`PluginError`.

    Hooks are called through pluggy (keyword arguments, each implementation given only those
    it declares), one plugin at a time, so that each class is known by the plugin that
    registered it.
    """
    sources = manager.sources if isinstance(manager, ColoiPluginManager) else {}
    registry = Registry()
    hooks = (
        ("backend", manager.hook.coloi_register_backends, registry.backends, Backend),
        (
            "preprocess",
            manager.hook.coloi_register_preprocessors,
            registry.preprocessors,
            PreprocessStep,
        ),
        (
            "postprocess",
            manager.hook.coloi_register_postprocessors,
            registry.postprocessors,
            PostprocessStep,
        ),
    )
    provided: dict[str, list[str]] = {  # a blocked plugin is listed with None: not loaded
        name: [] for name, plugin in manager.list_name_plugin() if plugin is not None
    }
    for kind, hook, table, base in hooks:
        for impl in reversed(hook.get_hookimpls()):  # in registration order
            provided[impl.plugin_name].append(hook.name)
            dist, version = sources.get(impl.plugin_name, ("", ""))
            others = [plugin for plugin in manager.get_plugins() if plugin is not impl.plugin]
            call = manager.subset_hook_caller(hook.name, remove_plugins=others)
            try:
                results = call()  # a list: this plugin's result, unless it returned None
            except (Exception, SystemExit) as error:  # noqa: BLE001 - a plugin's own code
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: {hook.name} failed: "
                    f"{type(error).__name__}: {error}"
                ) from None
            for result in results:
                if not isinstance(result, list | tuple):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {hook.name} returned "
                        f"{result!r}, not a list of classes"
                    )
            for cls in [cls for result in results for cls in result]:
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {hook.name} returned "
                        f"{cls!r}, not a subclass of {base.__name__}"
                    )
                if not (isinstance(getattr(cls, "name", None), str) and cls.name):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {kind} class {cls.__qualname__} has no name"
                    )
                if cls.name in table:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {kind} {cls.name!r} is "
                        f"already registered by plugin {table[cls.name].plugin!r}"
                    )
                table[cls.name] = Registration(cls.name, kind, cls, impl.plugin_name, dist, version)
    registry.plugins = [
        {
            "name": name,
            "distribution": sources.get(name, ("", ""))[0],
            "version": sources.get(name, ("", ""))[1],
            "hooks": hooks_of,
        }
        for name, hooks_of in provided.items()
    ]
    return registry


def get_registry(plugins: PluginSettings | Iterable[str] | None = None) -> Registry:
    """Load the plugins and build the registry (the one call commands make); ``plugins`` as
    for :func:`get_plugin_manager`."""
    return build_registry(get_plugin_manager(plugins))
