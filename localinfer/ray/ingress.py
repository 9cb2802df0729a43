"""The HTTP ingress: localinfer's own starlette app (routes, auth, Host/Origin checks,
limits) on a Serve replica, with a registry whose models are deployments elsewhere."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from localinfer.config import Settings
from localinfer.log import configure_logging
from localinfer.ray.remote import RemoteRegistry
from localinfer.ray.spec import RayAppConfig
from localinfer.server.app import create_app


class Ingress:
    """The body of the ingress deployment; Serve calls :meth:`__serve_build_asgi_app__`
    after the constructor and runs the app's lifespan (which opens the registry)."""

    def __init__(self, config: dict[str, Any], models: dict[str, Any], board: Any) -> None:
        app = RayAppConfig.model_validate(config)
        self._settings = app.load_settings()
        configure_logging(self._settings.log_level)
        # a multiplexed model's calls carry its name: Serve routes them to a replica
        # that has it loaded, if any
        self._models = {
            name: handle.options(multiplexed_model_id=name) if name in app.multiplexed else handle
            for name, handle in models.items()
        }
        self._board = board

    def _registry(self, settings: Settings) -> RemoteRegistry:
        return RemoteRegistry(settings, self._models, self._board)

    def __serve_build_asgi_app__(self) -> Starlette:
        return create_app([], self._settings, registry_factory=self._registry)
