"""The user's own catalog: ``catalog.toml`` in localinfer's config dir.

Aliases for models the built-in and plugin catalogs do not list, or different settings
for ones they do (a user entry wins over a plugin's of the same alias)::

    [models.bge-base]
    repo = "BAAI/bge-base-en-v1.5"
    task = "embeddings"
    description = "BGE base English"
    files = ["*.json", "*.safetensors", "*.txt"]    # optional: what to download
    options = { pooling = "cls" }                  # optional: handler settings

``handler`` defaults to the first installed handler of the task. ``repo`` may also be a
local directory (this is the user's own file). ``trust_remote_code = true`` is honoured
only here, never in a plugin's entries.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from localinfer.errors import ConfigurationError
from localinfer.hub.catalog import CatalogEntry
from localinfer.hub.dirs import config_dir
from localinfer.hub.model_ids import is_alias, is_repo_id

USER_ORIGIN = "user"


def user_catalog_path() -> Path:
    """``LOCALINFER_CATALOG``, else ``catalog.toml`` in the user config dir."""
    explicit = os.environ.get("LOCALINFER_CATALOG")
    return Path(explicit).expanduser() if explicit else config_dir() / "catalog.toml"


#: field -> (accepted types, default); checked by hand: pydantic would slow ``--help``
_FIELDS: dict[str, tuple[type, Any]] = {
    "repo": (str, None),
    "task": (str, None),
    "handler": (str, ""),
    "description": (str, ""),
    "revision": (str, None),
    "filename": (str, None),
    "files": (list, []),
    "options": (dict, {}),
    "trust_remote_code": (bool, False),
}
_REQUIRED = ("repo", "task")


def load_user_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The entries of the user catalog (none if the file does not exist).

    An entry's ``handler`` may be empty: the plugin set fills in the task's default.
    Raises :class:`ConfigurationError` naming the file and the entry when it is wrong.
    """
    path = path or user_catalog_path()
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the catalog: {exc}") from exc
    models = data.get("models", {})
    unknown = sorted(set(data) - {"models"})
    if unknown or not isinstance(models, dict):
        raise ConfigurationError(
            f"{path}: expected only [models.<alias>] tables, found {', '.join(unknown)}"
        )
    return [_entry(path, alias, fields) for alias, fields in models.items()]


def _entry(path: Path, alias: str, fields: Any) -> CatalogEntry:
    where = f"{path}: [models.{alias}]"
    if not is_alias(alias):
        raise ConfigurationError(f"{where}: {alias!r} is not a valid alias")
    if not isinstance(fields, dict):
        raise ConfigurationError(f"{where}: expected a table")
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
        )
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise ConfigurationError(f"{where}: missing {', '.join(missing)}")
    values: dict[str, Any] = {}
    for name, (kind, default) in _FIELDS.items():
        value = fields.get(name, default)
        if value is not None and not isinstance(value, kind):
            raise ConfigurationError(f"{where}: {name} must be a {_type_name(kind)}")
        values[name] = value
    if not all(isinstance(pattern, str) for pattern in values["files"]):
        raise ConfigurationError(f"{where}: files must be a list of glob patterns")
    repo = values["repo"]
    if not is_repo_id(repo):
        local = Path(repo).expanduser()
        if not local.is_absolute():
            raise ConfigurationError(
                f"{where}: repo must be an 'org/name' repo id or an absolute local path"
            )
        repo = str(local)
    return CatalogEntry(
        alias=alias,
        repo=repo,
        task=values["task"],
        handler=values["handler"],
        description=values["description"],
        revision=values["revision"],
        filename=values["filename"],
        files=tuple(values["files"]),
        options=dict(values["options"]),
        origin=USER_ORIGIN,
        trust_remote_code=values["trust_remote_code"],
    )


def _type_name(kind: type) -> str:
    return {str: "string", list: "list", dict: "table", bool: "boolean"}.get(kind, kind.__name__)
