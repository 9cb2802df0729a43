"""Plugins: entry points in the ``localinfer.plugins`` group, each naming a :class:`Plugin`.

A plugin lists handlers and CLI commands (by import path, so nothing heavy is imported
until a model that needs it loads or the command runs) and catalog entries. First-party
handlers are registered exactly the same way. A plugin that fails to load, or that was
written for another plugin API, is reported, never fatal to the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from localinfer.errors import ConfigurationError, IncompatiblePlugin
from localinfer.hub.catalog import CatalogEntry
from localinfer.hub.user_catalog import load_user_catalog, user_catalog_path

if TYPE_CHECKING:
    from localinfer.handlers.base import Handler

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

ENTRY_POINT_GROUP = "localinfer.plugins"
#: the key of :attr:`PluginSet.errors` for problems in the user's catalog.toml
USER_CATALOG = "user catalog"

#: The plugin API this localinfer provides, ``MAJOR.MINOR``. A plugin declares the version
#: it was written against; it loads when the majors are equal and its minor is not newer.
#: Minor versions add to the API (new task contracts, new optional hooks); a major version
#: changes or removes something a plugin may rely on.
API_VERSION = "1.0"


def _parse_version(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def check_api_version(plugin_name: str, wanted: str) -> None:
    """Raise :class:`IncompatiblePlugin` unless a plugin for API ``wanted`` can load here."""
    try:
        major, minor = _parse_version(wanted)
    except ValueError:
        raise IncompatiblePlugin(
            f"plugin {plugin_name!r} declares api_version {wanted!r}; expected 'MAJOR.MINOR'"
        ) from None
    ours = _parse_version(API_VERSION)
    if major != ours[0] or minor > ours[1]:
        raise IncompatiblePlugin(
            f"plugin {plugin_name!r} was written for localinfer plugin API {wanted}; "
            f"this localinfer provides {API_VERSION}"
        )


@dataclass(frozen=True)
class HandlerSpec:
    """A handler a plugin provides: its name, its task, and where its class lives."""

    name: str
    task: str
    #: ``"package.module:ClassName"``, imported only when a model using it loads
    target: str
    description: str = ""
    #: advertised by every model this handler serves, next to ``task`` and ``model``
    capabilities: Mapping[str, str] = field(default_factory=dict)
    #: top-level modules the handler imports when it loads (``"llama_cpp"``): a catalog
    #: entry with a ``fallback_handler`` falls back when one is missing
    requires: tuple[str, ...] = ()

    def missing_modules(self) -> list[str]:
        """The :attr:`requires` modules that are not installed (found without importing)."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def load_class(self) -> type[Handler]:
        module_name, _, attribute = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls: type[Handler] = getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                f"handler {self.name!r} ({self.target}) cannot be imported: {exc}"
            ) from exc
        return cls


@dataclass(frozen=True)
class CommandSpec:
    """A ``localinfer <name> ...`` subcommand a plugin adds.

    ``target`` is ``"package.module:function"``, imported only when the command runs; the
    function gets the arguments after the command name and returns the exit status.
    """

    name: str
    help: str
    target: str

    def load(self) -> Callable[[list[str]], int]:
        module_name, _, attribute = self.target.partition(":")
        try:
            run: Callable[[list[str]], int] = getattr(
                importlib.import_module(module_name), attribute
            )
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                f"command {self.name!r} ({self.target}) cannot be imported: {exc}"
            ) from exc
        return run


@dataclass(frozen=True)
class Plugin:
    """What one plugin distribution adds."""

    name: str
    handlers: Sequence[HandlerSpec] = ()
    catalog: Sequence[CatalogEntry] = ()
    version: str = ""
    #: the plugin API version (see :data:`API_VERSION`) the plugin was written against
    api_version: str = API_VERSION
    commands: Sequence[CommandSpec] = ()


@dataclass
class PluginSet:
    """Every discovered plugin, merged; broken plugins kept with their error."""

    plugins: list[Plugin] = field(default_factory=list)
    #: entry point name → the reason it did not load
    errors: dict[str, str] = field(default_factory=dict)
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    catalog: dict[str, CatalogEntry] = field(default_factory=dict)
    commands: dict[str, CommandSpec] = field(default_factory=dict)
    #: plugin name → the distribution that installed it ("name version")
    distributions: dict[str, str] = field(default_factory=dict)

    def add(self, plugin: Plugin, distribution: str = "") -> None:
        """Merge ``plugin``; on a name clash the plugin added first (built-ins) keeps it."""
        self.plugins.append(plugin)
        if distribution:
            self.distributions[plugin.name] = distribution
        for spec in plugin.handlers:
            self._claim(self.handlers, spec.name, spec, plugin.name, "handler")
        for entry in plugin.catalog:
            if entry.origin == "builtin" and plugin.name != "builtin":
                entry = replace(entry, origin=plugin.name)
            self._claim(self.catalog, entry.alias, entry, plugin.name, "catalog entry")
        for command in plugin.commands:
            self._claim(self.commands, command.name, command, plugin.name, "command")

    @staticmethod
    def _claim(table: dict[str, _T], name: str, value: _T, plugin: str, kind: str) -> None:
        if name in table:
            logger.warning("plugin %s: %s %r is already provided; ignored", plugin, kind, name)
            return
        table[name] = value

    def handler(self, name: str) -> HandlerSpec:
        try:
            return self.handlers[name]
        except KeyError:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise ConfigurationError(f"no handler named {name!r}; installed: {known}") from None

    def handler_for_task(self, task: str) -> HandlerSpec:
        """The first-registered handler serving ``task`` (built-ins come first)."""
        for spec in self.handlers.values():
            if spec.task == task:
                return spec
        raise ConfigurationError(f"no installed handler serves the task {task!r}")


def load_plugins(found: Iterable[EntryPoint]) -> PluginSet:
    """Load ``found`` entry points, the built-in plugin first (its handlers are the
    defaults per task); each failure is recorded in :attr:`PluginSet.errors`."""
    result = PluginSet()
    for ep in sorted(found, key=lambda ep: (ep.name != "builtin", ep.name)):
        try:
            plugin = ep.load()
            if not isinstance(plugin, Plugin):
                raise TypeError(f"entry point must name a Plugin, got {type(plugin).__name__}")
            check_api_version(plugin.name, plugin.api_version)
        except Exception as exc:  # a broken plugin must not stop the others
            logger.warning("plugin %s failed to load: %s", ep.name, exc)
            result.errors[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        dist = ep.dist
        result.add(plugin, f"{dist.name} {dist.version}" if dist is not None else "")
    return result


def merge_user_catalog(plugins: PluginSet, path: Path | None = None) -> None:
    """Add the entries of the user's ``catalog.toml``; a user entry replaces a plugin's
    entry of the same alias. A broken file or entry is recorded in :attr:`PluginSet.errors`
    (under ``"user catalog"``) like a broken plugin, never fatal."""
    path = path or user_catalog_path()
    try:
        entries = load_user_catalog(path)
    except ConfigurationError as exc:
        logger.warning("%s", exc.message)
        plugins.errors[USER_CATALOG] = exc.message
        return
    problems = []
    for entry in entries:
        try:
            handler = plugins.handler(entry.handler or plugins.handler_for_task(entry.task).name)
        except ConfigurationError as exc:
            problems.append(f"{path}: [models.{entry.alias}]: {exc.message}")
            continue
        if handler.task != entry.task:
            problems.append(
                f"{path}: [models.{entry.alias}]: handler {handler.name!r} serves "
                f"{handler.task}, not {entry.task}"
            )
            continue
        if entry.alias in plugins.catalog:
            logger.info("user catalog: %r replaces the %s entry", entry.alias, entry.origin)
        plugins.catalog[entry.alias] = replace(entry, handler=handler.name)
    if problems:
        logger.warning("%s", "; ".join(problems))
        plugins.errors[USER_CATALOG] = "; ".join(problems)


@cache
def discover() -> PluginSet:
    """Load every installed plugin, then the user's catalog, once per process."""
    plugins = load_plugins(entry_points(group=ENTRY_POINT_GROUP))
    merge_user_catalog(plugins)
    return plugins
