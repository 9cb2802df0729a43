"""The request headers the middleware looks at, read in one pass."""

from __future__ import annotations

from starlette.types import Scope


def scan_headers(
    scope: Scope,
) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None, bytes | None]:
    """``Host``, ``Origin``, ``X-API-Key``, ``Authorization`` (the last of each) and
    ``X-Request-Id`` (the first), raw, in one pass over the headers."""
    host = origin = api_key = authorization = request_id = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"origin":
            origin = value
        elif name == b"x-request-id":
            if request_id is None:
                request_id = value
        elif name == b"x-api-key":
            api_key = value
        elif name == b"authorization":
            authorization = value
    return host, origin, api_key, authorization, request_id
