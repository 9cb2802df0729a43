"""CORS for the listed origins, refusals in the OpenAI error shape."""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.middleware import cors
from starlette.responses import Response
from starlette.types import ASGIApp

from localinfer.errors import InvalidRequest, OriginNotAllowed
from localinfer.server.errors import error_response

#: headers a page may read from a cross-origin answer
EXPOSED_HEADERS = ("x-request-id", "retry-after", "server-timing", "location")


class CORSMiddleware(cors.CORSMiddleware):
    """Starlette's CORS for the origins in ``cors_origins``, whose refused preflights answer
    in the OpenAI error shape (403 for an origin not listed, 400 for a method or header)."""

    def __init__(self, app: ASGIApp, origins: Collection[str]):
        super().__init__(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials=False,  # keys travel in headers, never cookies
            allow_private_network=True,  # a listed public origin may reach this local server
            expose_headers=EXPOSED_HEADERS,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        origin = request_headers["origin"]
        if not self.is_allowed_origin(origin):
            error: Exception = OriginNotAllowed(
                f"CORS preflight refused: the origin {origin[:100]!r} is not in cors_origins",
                param="origin",
            )
        else:
            reason = bytes(response.body).decode().removeprefix("Disallowed CORS ")
            error = InvalidRequest(
                f"CORS preflight refused: {reason} not allowed", code="cors_preflight_refused"
            )
        refused = error_response(error)
        for name, value in response.headers.items():
            if name.lower().startswith(("access-control-", "vary")):
                refused.headers[name] = value
        return refused
