"""The HTTP ingress: localinfer's own starlette app (routes, auth, Host/Origin checks,
limits) on a Serve replica, with a registry whose models are deployments elsewhere, or,
for models set ``in_ingress``, worker threads of this very process (one hop less).

Requests reach it through Serve's proxy, or, with ``ray_direct_ingress``, straight from
the clients (:mod:`localinfer.ray.direct`)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localinfer.config import Settings
from localinfer.errors import ConfigurationError
from localinfer.log import configure_logging
from localinfer.ray.direct import answer_directly
from localinfer.ray.remote import RemoteRegistry
from localinfer.ray.spec import RayAppConfig, definition_for
from localinfer.runtime.model import ModelDefinition
from localinfer.server.app import create_app


class Ingress:
    """The body of the ingress deployment; Serve calls :meth:`__serve_build_asgi_app__`
    after the constructor and runs the app's lifespan (which opens the registry)."""

    def __init__(self, config: dict[str, Any], models: dict[str, Any], board: Any) -> None:
        app = RayAppConfig.model_validate(config)
        self._settings = settings = app.load_settings()
        configure_logging(settings.log_level)
        if app.api_key_required and settings.api_key is None:
            raise ConfigurationError(
                "this application requires an API key, and this node has none: set "
                "LOCALINFER_API_KEY in the environment of the Ray nodes"
            )
        # a multiplexed model's calls carry its name: Serve routes them to a replica
        # that has it loaded, if any
        self._models = {
            name: handle.options(multiplexed_model_id=name) if name in app.multiplexed else handle
            for name, handle in models.items()
        }
        #: the settings of the deployment each model's calls go to
        self._deployments = {name: app.deployment_settings(settings, name) for name in models}
        self._board = board
        in_ingress = app.in_ingress(settings)
        self._in_ingress = in_ingress
        self._local: list[ModelDefinition] = [
            definition_for(source, settings)
            for source in app.sources()
            if source.name in in_ingress
        ]

    def _registry(self, settings: Settings) -> RemoteRegistry:
        return RemoteRegistry(
            settings, self._models, self._board, self._in_ingress, self._deployments
        )

    def __serve_build_asgi_app__(self) -> ASGIApp:
        app = create_app(self._local, self._settings, registry_factory=self._registry)
        if self._settings.ray_direct_ingress:
            answer_directly(app, self._settings)
        return ProxiedApp(app)


class ProxiedApp:
    """``app`` as Serve's proxy calls it: without the app's own ``x-request-id`` response
    header, which the proxy adds itself (Serve's ``RequestIdMiddleware``) with the id it
    passed the app: the caller's, or one it made. A response carries one id, the same
    the app logged (the app takes the incoming one when it is sane, as it does on plain
    ``localinfer serve``); requests answered directly keep the app's header."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_once(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k != b"x-request-id"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_once)
