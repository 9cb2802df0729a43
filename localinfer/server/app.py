"""The starlette application: routes, middleware, error mapping, and the model lifecycle."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from localinfer.config import Settings
from localinfer.errors import LocalInferError
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.registry import ModelRegistry
from localinfer.server.errors import error_response
from localinfer.server.metrics import routes as metrics_routes
from localinfer.server.middleware import APIKeyMiddleware, RequestContextMiddleware
from localinfer.server.routes import (
    audio,
    embeddings,
    generation,
    infer,
    kserve,
    management,
    operations,
    workers,
)


async def _handle_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def create_app(definitions: Sequence[ModelDefinition], settings: Settings) -> Starlette:
    """An app that loads ``definitions`` at startup and stops them (draining) at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with ModelRegistry(
            # a handler's call to another model gets the deadline a request would
            drain_timeout_s=settings.drain_timeout_s,
            call_timeout_s=settings.request_timeout_s,
        ) as registry:
            for definition in definitions:
                registry.add(definition)
            app.state.registry = registry
            async with management.management_state(app, registry, settings):
                yield

    middleware = [Middleware(RequestContextMiddleware)]
    if settings.api_key_value:
        middleware.append(Middleware(APIKeyMiddleware, api_key=settings.api_key_value))

    app = Starlette(
        routes=[
            *workers.routes,  # before operations' GET /v1/models/{model:path}
            *management.routes,
            *operations.routes,
            *metrics_routes,
            *generation.routes,
            *embeddings.routes,
            *audio.routes,
            *infer.routes,
            *kserve.routes,
        ],
        middleware=middleware,
        exception_handlers={LocalInferError: _handle_error, HTTPException: _handle_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.embedding_caches = {}
    return app
