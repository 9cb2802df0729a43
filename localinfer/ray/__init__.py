"""localinfer on Ray Serve: the same app and runtime, replicas across machines.

``ray`` is imported only when this package's builder is used (``localinfer --help``
stays fast): ``from localinfer.ray import build_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localinfer.ray.spec import RayAppConfig

if TYPE_CHECKING:
    from ray.serve import Application

__all__ = ["RayAppConfig", "build_app"]


def build_app(config: RayAppConfig | dict[str, Any]) -> Application:
    """See :func:`localinfer.ray.app.build_app`."""
    from localinfer.ray.app import build_app as build

    return build(config)
