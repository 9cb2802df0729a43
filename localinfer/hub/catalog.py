"""Catalog entries: a short alias for a model, what task it serves and with which handler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CatalogEntry:
    """``alias`` → a Hugging Face repo (or a local path), its task, handler and defaults."""

    alias: str
    repo: str
    task: str
    handler: str
    description: str = ""
    revision: str | None = None
    #: a single file inside the repo (a ``.gguf`` file, for instance)
    filename: str | None = None
    #: glob patterns of the files the handler needs (downloads fetch only these)
    files: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    #: where the entry came from: "builtin", a plugin name, or "user"
    origin: str = "builtin"
    #: let the model run code from its repo; honoured only in the user's own catalog
    trust_remote_code: bool = False
    #: a copy shipped inside a Python package (``"import_name/path/inside"``, a directory
    #: or a ``.gguf`` file), preferred to ``repo`` whenever that package is installed
    packaged: str | None = None
    #: the handler that serves the entry when ``handler`` is not installed or misses a
    #: module it needs (the llama.cpp engine without llama-cpp-python), only where the
    #: operator allows the slower path (``allow_slow_fallback``): otherwise loading refuses
    fallback_handler: str | None = None
    #: what to ``pip install`` so that ``handler`` serves the entry (named in that refusal)
    install: str | None = None
