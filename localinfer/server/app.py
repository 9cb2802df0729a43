"""The starlette application: routes, middleware, error mapping, and the model lifecycle."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from localinfer import openmp
from localinfer.calls.calls import Calls
from localinfer.config import Settings
from localinfer.errors import LocalInferError
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.registry import ModelRegistry
from localinfer.server.connections import ConnectionLimit
from localinfer.server.direct_routes import DirectRoutes
from localinfer.server.errors import error_response_for
from localinfer.server.heap import freeze_when_ready, trim_periodically
from localinfer.server.job_io import JobWatch
from localinfer.server.metrics import routes as metrics_routes
from localinfer.server.middleware import (
    AllowedHosts,
    CORSMiddleware,
    Guard,
    GuardMiddleware,
    HeaderLimits,
    RequestContextMiddleware,
)
from localinfer.server.openapi import routes as openapi_routes
from localinfer.server.routes import (
    audio,
    embeddings,
    generation,
    infer,
    kserve,
    management,
    operations,
    rerank,
    speech,
    workers,
)


async def _handle_error(request: Request, exc: Exception) -> Response:
    return error_response_for(request.url.path, exc)


#: the routes a busy server answers by the thousand per second (see DirectRoutes)
HOT_ROUTES = [*infer.routes, *generation.routes, *embeddings.routes, *rerank.routes]


class LocalInferApp(Starlette):
    """Starlette without its outermost ``ServerErrorMiddleware``.

    :class:`RequestContextMiddleware`, outermost instead, already answers every error
    that escapes the app (logged, with the request id, in the OpenAI shape) and lets one
    raised after the headers went out reach the server, which drops the connection. A
    second catch-all layer would only cost every request an extra call per message.
    """

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {
            key: handler
            for key, handler in self.exception_handlers.items()
            if key not in (500, Exception)
        }
        app: ASGIApp = self.router
        for cls, args, kwargs in reversed(
            [*self.user_middleware, Middleware(ExceptionMiddleware, handlers=handlers)]
        ):
            app = cls(app, *args, **kwargs)
        return app


def create_app(
    definitions: Sequence[ModelDefinition],
    settings: Settings,
    *,
    owns_process: bool = False,
    registry_factory: Callable[[Settings], ModelRegistry] | None = None,
) -> Starlette:
    """An app that loads ``definitions`` at startup and stops them (draining) at shutdown.

    ``owns_process``: the server is the process's only job (``localinfer serve``), so its
    heap may be frozen once the models have loaded (see :mod:`localinfer.server.heap`).
    ``registry_factory``: the registry the routes use, if not a local one (Ray Serve's
    ingress passes one whose models run in replicas elsewhere: :mod:`localinfer.ray`).
    """
    # the models run in this process (not in Ray replicas): its OpenMP wait is theirs
    models_run_here = registry_factory is None
    if owns_process and models_run_here:
        # how its OpenMP threads wait, decided before a model loads (localinfer.openmp)
        openmp.fit_to_engines([d.capabilities.get("engine") for d in definitions])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (registry_factory or local_registry)(settings) as registry:
            for definition in definitions:
                registry.add(definition)
            app.state.registry = registry
            app.state.calls = Calls(registry, settings)
            async with (
                JobWatch() as app.state.job_watch,
                management.management_state(app, registry, settings),
                anyio.create_task_group() as background,
            ):
                if owns_process:
                    # The loop needs the GIL back after every socket call; a model thread
                    # running Python keeps it up to this long each time (5 ms by default).
                    sys.setswitchinterval(settings.gil_switch_interval_ms / 1e3)
                    background.start_soon(freeze_when_ready, registry)
                    background.start_soon(trim_periodically)
                yield
                background.cancel_scope.cancel()

    app = LocalInferApp(
        routes=[
            # inference first: starlette tries routes in order, one regex each
            *HOT_ROUTES,
            *audio.routes,
            *speech.routes,
            *kserve.routes,
            *workers.routes,  # before operations' GET /v1/models/{model:path}
            *management.routes,
            *operations.routes,
            *metrics_routes,
            *openapi_routes,
        ],
        middleware=[
            *middleware_for(settings),
            # innermost: past every check, the hot routes skip the router
            Middleware(DirectRoutes, routes=HOT_ROUTES),
        ],
        exception_handlers={LocalInferError: _handle_error, HTTPException: _handle_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.models_run_here = models_run_here
    app.state.connections = ConnectionLimit(settings.max_connections)
    app.state.embedding_caches = {}
    return app


def local_registry(settings: Settings) -> ModelRegistry:
    """The registry whose models run here, in this process's worker threads."""
    return ModelRegistry(**registry_options(settings))


def registry_options(settings: Settings) -> dict[str, Any]:
    """A registry's keyword arguments, from the settings."""
    return {
        "drain_timeout_s": settings.drain_timeout_s,
        # a handler's call to another model gets the deadline a request would
        "call_timeout_s": settings.request_timeout_s,
        "hang_grace_s": settings.hang_grace_s,
        "max_abandoned_workers": settings.max_abandoned_workers,
        "load_timeout_s": settings.load_timeout_s,
        "worker_nice": settings.worker_nice,
    }


def middleware_for(settings: Settings) -> list[Middleware]:
    """Outermost first: request ids and header limits (431), the Host check, CORS, the
    Origin check, the API key.

    CORS sits outside the key check: a preflight carries no key, and a listed page can
    read a 401. The Host check comes first: a rebound name learns nothing, not even CORS.
    Without CORS, all checks run in the request-id middleware, in that order, reading
    the headers once.
    """
    allowed_hosts = AllowedHosts.for_bind(settings.host, settings.allowed_hosts)
    api_key = settings.api_key_value or None
    limits = HeaderLimits.for_settings(settings)
    if not settings.cors_origins:
        guard = Guard(allowed_hosts=allowed_hosts, cors_origins=(), api_key=api_key)
        return [Middleware(RequestContextMiddleware, guard=guard, limits=limits)]
    inner = Guard(cors_origins=settings.cors_origins, api_key=api_key)
    return [
        Middleware(
            RequestContextMiddleware, guard=Guard(allowed_hosts=allowed_hosts), limits=limits
        ),
        Middleware(CORSMiddleware, origins=settings.cors_origins),
        *([Middleware(GuardMiddleware, guard=inner)] if inner.checks else []),
    ]
