"""Plugins: entry points in the ``localinfer.plugins`` group, each naming a :class:`Plugin`.

A plugin lists handlers (by import path, so nothing heavy is imported until a model
that needs it loads) and catalog entries. First-party handlers are registered exactly
the same way. A plugin that fails to load is reported, never fatal to the others.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from localinfer.errors import ConfigurationError
from localinfer.hub.catalog import CatalogEntry

if TYPE_CHECKING:
    from localinfer.handlers.base import Handler

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "localinfer.plugins"


@dataclass(frozen=True)
class HandlerSpec:
    """A handler a plugin provides: its name, its task, and where its class lives."""

    name: str
    task: str
    #: ``"package.module:ClassName"``, imported only when a model using it loads
    target: str
    description: str = ""

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
class Plugin:
    """What one plugin distribution adds."""

    name: str
    handlers: Sequence[HandlerSpec] = ()
    catalog: Sequence[CatalogEntry] = ()
    version: str = ""


@dataclass
class PluginSet:
    """Every discovered plugin, merged; broken plugins kept with their error."""

    plugins: list[Plugin] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    catalog: dict[str, CatalogEntry] = field(default_factory=dict)

    def add(self, plugin: Plugin) -> None:
        self.plugins.append(plugin)
        for spec in plugin.handlers:
            self.handlers.setdefault(spec.name, spec)
        for entry in plugin.catalog:
            self.catalog.setdefault(entry.alias, entry)

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


def _ordered_entry_points() -> list[object]:
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    # the built-in plugin first, so that its handlers are the defaults per task
    return sorted(found, key=lambda ep: (ep.name != "builtin", ep.name))  # type: ignore[attr-defined]


@cache
def discover() -> PluginSet:
    """Load every plugin entry point once per process."""
    result = PluginSet()
    for ep in _ordered_entry_points():
        name = ep.name  # type: ignore[attr-defined]
        try:
            plugin = ep.load()  # type: ignore[attr-defined]
            if not isinstance(plugin, Plugin):
                raise TypeError(
                    f"entry point must name a Plugin, got {type(plugin).__name__}"
                )
        except Exception as exc:
            logger.warning("plugin %s failed to load: %s", name, exc)
            result.errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        result.add(plugin)
    return result
