"""localinfer: local models behind an OpenAI-compatible API.

Heavy modules are imported on first use so that ``import localinfer`` and
``localinfer --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["LightServer", "__version__"]

if TYPE_CHECKING:
    from localinfer.server.light import LightServer


def __getattr__(name: str) -> Any:
    if name == "LightServer":
        from localinfer.server.light import LightServer

        return LightServer
    raise AttributeError(f"module 'localinfer' has no attribute {name!r}")
