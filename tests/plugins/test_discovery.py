"""Plugin discovery: entry points, lazy imports, API versions, broken plugins, CLI commands.

Needs the example plugin installed (``scripts/install.sh`` installs it, editable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from localinfer.cli.main import main
from localinfer.errors import IncompatiblePlugin
from localinfer.plugins import (
    API_VERSION,
    ENTRY_POINT_GROUP,
    HandlerSpec,
    Plugin,
    check_api_version,
    discover,
    load_plugins,
)
from localinfer.testing import catalog_definition

#: a plugin written for a plugin API this localinfer does not provide
FUTURE = Plugin(name="future", api_version="2.0")
#: a second plugin claiming a name the example plugin already has
CLASH = Plugin(name="clash", handlers=[HandlerSpec("example-parrot", "chat", "tests.models:Echo")])


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_the_example_plugin_is_installed_and_discovered() -> None:
    found = discover()
    names = [p.name for p in found.plugins]
    assert names[0] == "builtin"  # built-ins first: their handlers are the task defaults
    assert "example" in names, "install it: pip install -e plugins/localinfer-plugin-example"
    assert found.distributions["example"] == "localinfer-plugin-example 0.1.0"
    assert found.handlers["example-parrot"].task == "chat"
    assert found.catalog["example-parrot"].origin == "example"
    assert "parrot" in found.commands
    assert found.handler_for_task("chat").name == "transformers-chat"


def test_handler_capabilities_reach_the_model_definition() -> None:
    definition = catalog_definition("example-parrot")
    assert definition.capabilities == {
        "lang": "en",
        "family": "parrot",
        "task": "chat",
        "model": "example-parrot",
        "handler": "example-parrot",
    }


def test_discovery_imports_no_handler_until_a_model_loads() -> None:
    script = textwrap.dedent(
        """
        import sys
        from localinfer.plugins import discover
        found = discover()
        heavy = ["localinfer_plugin_example.parrot", "localinfer_plugin_example.pipeline",
                 "localinfer.handlers.transformers_chat", "torch", "transformers"]
        before = [m for m in heavy if m in sys.modules]
        found.handler("example-parrot").load_class()
        print(before, "localinfer_plugin_example.parrot" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def test_broken_plugins_are_recorded_and_the_others_load() -> None:
    found = load_plugins(
        [
            entry_point("missing", "no_such_module_for_localinfer:plugin"),
            entry_point("wrong", "tests.models:Echo"),
            entry_point("future", "tests.plugins.test_discovery:FUTURE"),
            entry_point("example", "localinfer_plugin_example:plugin"),
            entry_point("clash", "tests.plugins.test_discovery:CLASH"),
        ]
    )
    assert [p.name for p in found.plugins] == ["clash", "example"]
    assert found.errors["missing"].startswith("ModuleNotFoundError")
    assert found.errors["wrong"] == "TypeError: entry point must name a Plugin, got type"
    assert "written for localinfer plugin API 2.0" in found.errors["future"]
    # on a name clash the first plugin (built-ins, then by entry point name) keeps the name
    assert found.handlers["example-parrot"].target == "tests.models:Echo"
    assert found.handlers["example-transcript-summary"].target.startswith("localinfer_plugin")


def test_api_version_compatibility() -> None:
    check_api_version("p", API_VERSION)
    check_api_version("p", "1")
    for wanted in ("1.99", "2.0", "0.9", "one"):
        with pytest.raises(IncompatiblePlugin):
            check_api_version("p", wanted)


def _fake_distribution(root: Path) -> None:
    """Three broken plugins in a dist-info of their own, as `pip install` would leave them."""
    (root / "broken_plugin.py").write_text("raise ImportError('needs libfoo, not installed')\n")
    (root / "future_plugin.py").write_text(
        "from localinfer.plugins import Plugin\nplugin = Plugin('future', api_version='2.0')\n"
    )
    (root / "odd_plugin.py").write_text("plugin = 42\n")
    info = root / "localinfer_broken_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: localinfer-broken-plugins\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[localinfer.plugins]\nbroken = broken_plugin:plugin\n"
        "future = future_plugin:plugin\nodd = odd_plugin:plugin\n"
    )


def test_localinfer_plugins_reports_broken_plugins(tmp_path: Path) -> None:
    _fake_distribution(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    run = subprocess.run(
        [sys.executable, "-m", "localinfer.cli.main", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert report["errors"] == {
        "broken": "ImportError: needs libfoo, not installed",
        "future": "IncompatiblePlugin: plugin 'future' was written for localinfer plugin API "
        f"2.0; this localinfer provides {API_VERSION}",
        "odd": "TypeError: entry point must name a Plugin, got int",
    }
    assert {"builtin", "example"} <= {p["name"] for p in report["plugins"]}
    # the text listing says the same, and the healthy plugins still serve
    text = subprocess.run(
        [sys.executable, "-m", "localinfer.cli.main", "plugins"],
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    assert "failed to load:\n  broken: ImportError: needs libfoo" in text
    served = subprocess.run(
        [
            sys.executable,
            "-c",
            "from localinfer.testing import catalog_definition as d; "
            "print(d('example-parrot').name)",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert served.stdout.strip() == "example-parrot"


def test_plugin_commands_run_and_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parrot", "--greeting", "Hi!", "--max-tokens", "3", "a", "b", "c"]) == 0
    assert capsys.readouterr().out == "Hi! a b\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "parrot    talk to the example parrot" in capsys.readouterr().out
    assert main(["plugins"]) == (1 if discover().errors else 0)
    assert "example  (localinfer-plugin-example 0.1.0; plugin API 1.0)" in capsys.readouterr().out
