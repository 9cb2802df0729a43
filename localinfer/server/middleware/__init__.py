"""Pure ASGI middleware (no response buffering, streaming untouched), one concern per
module: the request context, the host and origin checks, the API key guard, CORS."""

from __future__ import annotations

from localinfer.server.middleware.cors import EXPOSED_HEADERS, CORSMiddleware
from localinfer.server.middleware.guard import Guard, GuardMiddleware
from localinfer.server.middleware.header_limits import HeaderLimits
from localinfer.server.middleware.headers import scan_headers
from localinfer.server.middleware.hosts import LOOPBACK_NAMES, AllowedHosts, split_host
from localinfer.server.middleware.origins import same_origin
from localinfer.server.middleware.request_context import RequestContextMiddleware, RequestIds

__all__ = [
    "EXPOSED_HEADERS",
    "LOOPBACK_NAMES",
    "AllowedHosts",
    "CORSMiddleware",
    "Guard",
    "GuardMiddleware",
    "HeaderLimits",
    "RequestContextMiddleware",
    "RequestIds",
    "same_origin",
    "scan_headers",
    "split_host",
]
