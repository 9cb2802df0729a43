"""localinfer: local models behind an OpenAI-compatible API.

Heavy modules are imported on first use so that ``import localinfer`` and
``localinfer --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localinfer import openmp as _openmp
from localinfer._version import __version__

# before any handler loads torch or llama.cpp (and with them libgomp): see openmp.py
_openmp.apply_once()

__all__ = ["Client", "Engine", "LightServer", "Server", "SyncClient", "__version__", "pull"]

if TYPE_CHECKING:
    from localinfer.client import Client, SyncClient
    from localinfer.embedded import Server
    from localinfer.engine import Engine
    from localinfer.hub.download import DownloadResult
    from localinfer.server.light import LightServer

#: public names and the module each is imported from on first use
_LAZY = {
    "Client": "localinfer.client",
    "SyncClient": "localinfer.client",
    "Engine": "localinfer.engine",
    "Server": "localinfer.embedded",
}


def pull(spec: str, **options: Any) -> DownloadResult:
    """Download a model of the catalog (built-ins, plugins, your catalog.toml) or a repo id
    into the Hugging Face cache, with a progress bar; see ``localinfer.hub.download.pull``."""
    from localinfer.hub.download import pull as pull_into_cache
    from localinfer.plugins import discover

    return pull_into_cache(spec, catalog=discover().catalog, **options)


def __getattr__(name: str) -> Any:
    if name == "LightServer":
        from localinfer.server.light import LightServer

        return LightServer
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'localinfer' has no attribute {name!r}")
