"""Pure ASGI middleware (no response buffering, streaming untouched)."""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import logging
import os
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware import cors
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localinfer.errors import (
    AuthenticationFailed,
    HostNotAllowed,
    InvalidRequest,
    OriginNotAllowed,
)
from localinfer.log import request_id_var
from localinfer.server.errors import error_response, error_response_for

logger = logging.getLogger(__name__)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIds:
    """Unique ids without a system call each: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_ids = RequestIds()


class RequestContextMiddleware:
    """Gives every request an id (``x-request-id``, the caller's if it is sane), logs it,
    and turns any error that escaped the app into an OpenAI error body carrying that id."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else _ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = status or 499  # nginx's "client closed request", for the log line only
        except Exception as exc:
            if status:  # headers already sent: nothing to do but drop the connection
                raise
            await error_response_for(scope["path"], exc)(scope, receive, send_with_id)
        finally:
            logger.info(
                "%s %s -> %s in %.1f ms",
                scope["method"],
                scope["path"],
                status or "-",
                (time.perf_counter() - started) * 1e3,
            )
            request_id_var.reset(token)


class APIKeyMiddleware:
    """Requires ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (constant-time check)."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self._key = api_key.encode()

    def _authorised(self, headers: Headers) -> bool:
        presented = headers.get("x-api-key")
        if presented is None:
            auth = headers.get("authorization", "")
            scheme, _, credentials = auth.partition(" ")
            presented = credentials.strip() if scheme.lower() == "bearer" else None
        if presented is None:
            return False
        # starlette decodes header bytes as latin-1: encoding back gives the bytes sent,
        # so a key that is not ASCII matches when the client sends it as UTF-8
        return hmac.compare_digest(presented.encode("latin-1"), self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        response = error_response_for(
            scope["path"],
            AuthenticationFailed(
                "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            ),
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


# -- browsers: DNS rebinding, cross-site requests, CORS ------------------------------------

#: names that always mean this machine: no web page can be served from them but ours
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: methods a cross-site page may send without a preflight that change nothing
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def split_host(value: str) -> tuple[str, int | None]:
    """``"Example.COM:8000"`` → ``("example.com", 8000)``; ``"[::1]:80"`` → ``("::1", 80)``.

    A value that is not a host (a path, spaces, a port that is not a number) gives ``("", None)``.
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif value.count(":") > 1:  # a bare IPv6 address (a bind address, never a valid Host)
        name, port_text = value, ""
    else:
        name, _, port_text = value.partition(":")
    name = name.rstrip(".")
    if port_text and not port_text.isdigit():
        return "", None
    if not name or any(c in name for c in "/\\ @?#"):
        return "", None
    return name, int(port_text) if port_text else None


def _is_loopback_name(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AllowedHosts:
    """Which ``Host`` headers the server answers: ``None`` patterns means any.

    A pattern is a name (``box.lan``), a name and port (``box.lan:8000``), or a suffix
    wildcard (``*.lan``). Loopback names (any port) are always allowed: no other site's
    page can have them as its origin, so they cannot be used for DNS rebinding.
    """

    patterns: frozenset[tuple[str, int | None]] | None

    @classmethod
    def for_bind(cls, bind_host: str, allowed: Iterable[str] | None) -> AllowedHosts:
        """Loopback names and the bind address, plus ``allowed``; with ``allowed`` unset,
        any host when the bind is not loopback (reachable by name from the LAN)."""
        bind_name = split_host(bind_host)[0]
        if allowed is None:
            if not _is_loopback_name(bind_name):
                return cls(None)
            allowed = ()
        patterns = set()
        for entry in allowed:
            if entry.strip() == "*":
                return cls(None)
            name, port = split_host(entry)
            if name:
                patterns.add((name, port))
        patterns.add((bind_name, None))
        return cls(frozenset(patterns))

    @property
    def any(self) -> bool:
        return self.patterns is None

    def allows(self, host_header: str) -> bool:
        if self.patterns is None:
            return True
        name, port = split_host(host_header)
        if not name:
            return False
        if _is_loopback_name(name):
            return True
        for pattern, pattern_port in self.patterns:
            if pattern_port is not None and pattern_port != port:
                continue
            if pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
                return True
        return False


class HostCheckMiddleware:
    """Answers 400 to a request whose ``Host`` header is not one this server answers to.

    A page on ``http://evil.example`` whose DNS name is re-pointed at 127.0.0.1 (DNS
    rebinding) reaches a loopback server as a same-origin request, so the browser lets
    it read the answers; its ``Host`` header still says ``evil.example``, which is what
    this refuses. A request without ``Host`` (HTTP/1.0, not a browser) passes.
    """

    def __init__(self, app: ASGIApp, allowed: AllowedHosts):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host is None or self.allowed.allows(host):
            await self.app(scope, receive, send)
            return
        logger.warning("refused Host header %.100r", host)
        response = error_response_for(
            scope["path"],
            HostNotAllowed(
                f"the Host header {host[:100]!r} is not one this server answers to; "
                "add it to allowed_hosts (--allowed-hosts) if it is yours",
                param="host",
            ),
        )
        await response(scope, receive, send)


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` names the server the request reached (``Host``)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    name, port = split_host(host)
    return parts.hostname.rstrip(".") == name and (origin_port or default) == (port or default)


class OriginCheckMiddleware:
    """Refuses (403) a state-changing request a browser sent from a page of another origin.

    A page may POST to any address without asking first when the body looks like a
    form or text (a "simple" request): it cannot read the answer, but the request runs.
    Browsers send ``Origin`` with every such request; programs (the SDKs, curl) do not.
    So a request with an ``Origin`` that is neither this server nor one of
    ``cors_origins`` is refused before it does anything. Safe methods pass.
    """

    def __init__(self, app: ASGIApp, cors_origins: Collection[str]):
        self.app = app
        self.any_origin = "*" in cors_origins
        self.origins = frozenset(o.rstrip("/") for o in cors_origins)

    def _allowed(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None or self.any_origin or origin in self.origins:
            return True
        return same_origin(origin, headers.get("host", ""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._allowed(headers):
            await self.app(scope, receive, send)
            return
        origin = headers.get("origin", "")
        logger.warning("refused a cross-site %s from origin %.100r", scope["method"], origin)
        response = error_response_for(
            scope["path"],
            OriginNotAllowed(
                f"requests from the web page origin {origin[:100]!r} are not allowed; "
                "list it in cors_origins (--cors-origins) if it is yours",
                param="origin",
            ),
        )
        await response(scope, receive, send)


#: headers a page may read from a cross-origin answer
EXPOSED_HEADERS = ("x-request-id", "retry-after", "x-queue-ms", "x-run-ms", "location")


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
