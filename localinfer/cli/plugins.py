"""``localinfer plugins``, and the subcommands plugins add.

``localinfer plugins`` lists each installed plugin — its distribution, plugin API version,
handlers, catalog entries and commands — and every plugin that failed to load, with its
error; it exits with 1 when one did, so a setup script can check. A plugin's command
(``localinfer <name> ...``) gets the rest of the command line as its own arguments.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from localinfer.plugins import API_VERSION, PluginSet, discover

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_plugins_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "plugins",
        help="list installed plugins, and those that failed to load",
        description="List installed plugins (entry points in the 'localinfer.plugins' group): "
        "their handlers, catalog entries and commands, and every plugin that failed to load "
        "with its error (exit status 1 then).",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_plugin_commands(sub: SubParsers, taken: set[str]) -> None:
    """List plugin commands in ``--help`` (they are run before argument parsing)."""
    for name, spec in sorted(discover().commands.items()):
        if name not in taken:
            sub.add_parser(name, help=f"{spec.help} [plugin]", add_help=False)


def run_plugin_command(name: str, argv: Sequence[str]) -> int | None:
    """Run the plugin command ``name`` with ``argv``; ``None`` if no plugin provides it."""
    spec = discover().commands.get(name)
    if spec is None:
        return None
    return int(spec.load()(list(argv)))


def report(found: PluginSet) -> dict[str, Any]:
    """What ``localinfer plugins --json`` prints."""
    return {
        "api_version": API_VERSION,
        "plugins": [
            {
                "name": plugin.name,
                "version": plugin.version,
                "distribution": found.distributions.get(plugin.name, ""),
                "api_version": plugin.api_version,
                "handlers": [
                    {"name": h.name, "task": h.task, "target": h.target} for h in plugin.handlers
                ],
                "catalog": [entry.alias for entry in plugin.catalog],
                "commands": [command.name for command in plugin.commands],
            }
            for plugin in found.plugins
        ],
        "errors": dict(found.errors),
    }


def _text(data: dict[str, Any]) -> str:
    lines = [f"plugin API {data['api_version']}"]
    for plugin in data["plugins"]:
        source = plugin["distribution"] or "not from a distribution"
        lines.append(f"\n{plugin['name']}  ({source}; plugin API {plugin['api_version']})")
        for handler in plugin["handlers"]:
            lines.append(f"  handler  {handler['name']}  [{handler['task']}]  {handler['target']}")
        if plugin["catalog"]:
            lines.append(f"  catalog  {', '.join(plugin['catalog'])}")
        if plugin["commands"]:
            lines.append(f"  commands {', '.join(plugin['commands'])}")
    if data["errors"]:
        lines.append("\nfailed to load:")
        lines += [f"  {name}: {error}" for name, error in sorted(data["errors"].items())]
    return "\n".join(lines)


def plugins_command(args: argparse.Namespace) -> int:
    found = discover()
    data = report(found)
    print(json.dumps(data, indent=2) if args.json else _text(data))
    return 1 if found.errors else 0
