"""The hot routes, reached without starlette's router and exception middleware.

Inference requests are the ones a server answers by the thousand per second, and for a
small model the layers starlette puts in front of an endpoint (an exception middleware
that builds a ``Request`` and wraps ``send``, a router that tries each route's regex, a
route that builds a second ``Request`` and wraps ``send`` again) cost more loop time than
the model's own trip through the runtime. This middleware, the innermost one, sends the
hot routes' requests straight to their endpoints. The same endpoints stay in the
router (for ``/openapi.json``, 405s, and any request this does not take), so they are
written once, as ordinary starlette endpoints.

Errors are answered exactly as on the router's path: an endpoint's exception goes up to
:class:`~localinfer.server.middleware.request_context.RequestContextMiddleware`, which
maps it with the same ``error_response_for`` the app's exception handlers use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


def _split(path: str) -> tuple[str, str | None]:
    """``"/v1/infer/{model}"`` → ``("/v1/infer/", "model")``; ``"/v1/x"`` → ``("/v1/x", None)``.

    Only a trailing plain parameter is supported: it matches one non-empty segment, as
    starlette's default ``str`` convertor does.
    """
    head, _, last = path.rpartition("/")
    if last.startswith("{") and last.endswith("}") and "{" not in head and ":" not in last:
        return head + "/", last[1:-1]
    if "{" in path:
        raise ValueError(f"{path!r}: only a trailing {{name}} parameter can be routed directly")
    return path, None


class DirectRoutes:
    """Middleware: requests for one of ``routes`` go straight to its endpoint."""

    def __init__(self, app: ASGIApp, routes: Iterable[Route]):
        self.app = app
        self._exact: dict[tuple[str, str], Endpoint] = {}
        self._prefixed: dict[tuple[str, str], tuple[str, Endpoint]] = {}
        for route in routes:
            fixed, parameter = _split(route.path)
            for method in route.methods or ():
                if parameter is None:
                    self._exact[method, fixed] = route.endpoint
                else:
                    self._prefixed[method, fixed] = (parameter, route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            endpoint = self._exact.get((method, path))
            if endpoint is None and self._prefixed:
                head, _, value = path.rpartition("/")
                found = self._prefixed.get((method, head + "/")) if value else None
                if found is not None:
                    parameter, endpoint = found
                    scope["path_params"] = {parameter: value}
            if endpoint is not None:
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
