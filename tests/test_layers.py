"""The layers of ``docs``/design: imports point only down (faces → server → runtime →
handlers/plugins → hub), and no modules import each other in a circle — type-only
imports and imports inside functions included, since they are circles all the same."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "localinfer"

#: each top-level module or package of localinfer and its layer; a module may import
#: its own layer and those below. -1: the base that every layer shares.
LAYERS: dict[str, int] = {
    # faces
    "__init__": 5,
    "__main__": 5,
    "cli": 5,
    "tui": 5,
    "client": 5,
    "engine": 5,
    "embedded": 5,
    "testing": 5,
    "examples": 5,
    # Ray Serve wraps the server app, as the CLI does
    "ray": 5,
    # the starlette app
    "server": 4,
    # one path for every request, HTTP and Engine alike
    "calls": 3,
    # the runtime and what the in-process faces share of it
    "runtime": 2,
    "inprocess": 2,
    # model code
    "handlers": 1,
    "plugins": 1,
    # models on disk
    "hub": 0,
    # the audio codec the speech handlers and routes decode uploads with
    "audio": 0,
    # refuse a missing capability or take the slower path (handlers and model resolution)
    "slower_path": 0,
    # shared by all
    "errors": -1,
    "config": -1,
    "log": -1,
    "openmp": -1,
    "_version": -1,
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's localinfer imports, as modules (``from a import b`` is ``a.b`` where
    that is a module)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] == "localinfer":
                    targets = [
                        f"{node.module}.{a.name}"
                        if f"{node.module}.{a.name}" in modules
                        else node.module
                        for a in node.names
                    ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "localinfer"]
            for target in targets:
                while target not in modules:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    graph[name].add(target)
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_every_module_has_a_layer() -> None:
    unknown = {m.split(".")[1] for m in _modules() if "." in m} - LAYERS.keys()
    assert not unknown, f"name the layer of {sorted(unknown)} in LAYERS"


def test_imports_point_down() -> None:
    graph = _imports(_modules())
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(source)
    )
    assert not upward


def test_no_import_circles() -> None:
    graph = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for module in list(graph):
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    assert not circles


#: the most lines one module may have (design: one responsibility each, under ~400)
MAX_MODULE_LINES = 420


def test_no_module_is_too_large() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert not {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
