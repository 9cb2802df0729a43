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


class RequestContextMiddleware:
    """Gives every request an id (``x-request-id``, the caller's if it is sane), logs it,
    turns any error that escaped the app into an OpenAI error body carrying that id, and
    runs ``guard``'s checks (one pass over the headers for all of them)."""

    def __init__(self, app: ASGIApp, guard: Guard | None = None):
        self.app = app
        self.guard = guard if guard is not None and guard.checks else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if self.guard is None or (refusal := self.guard.refusal(scope)) is None:
                await self.app(scope, receive, send)
            else:
                await refusal(scope, receive, send)
            return
        host, origin, api_key, authorization, incoming = scan_headers(scope)
        request_id = ""
        if incoming is not None:
            incoming_id = incoming.decode("latin-1")
            if _SAFE_REQUEST_ID.match(incoming_id):
                request_id = incoming_id
        request_id = request_id or _ids.next()
        id_header = (b"x-request-id", request_id.encode())
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            guard = self.guard
            if (
                guard is None
                or (refusal := guard.judge(scope, host, origin, api_key, authorization)) is None
            ):
                await self.app(scope, receive, send_with_id)
            else:
                await refusal(scope, receive, send_with_id)
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


class GuardMiddleware:
    """Runs ``guard``'s checks; for those that sit inside CORS (see ``middleware_for``)."""

    def __init__(self, app: ASGIApp, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (refusal := self.guard.refusal(scope)) is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)


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


#: distinct ``Host`` values whose verdict is remembered (a server sees a handful)
_HOST_VERDICTS = 64


class Guard:
    """The checks a request passes before it reaches a route, read in one pass over its
    headers (each is off when its argument is ``None``):

    - ``allowed_hosts``: the ``Host`` header must be one this server answers to (400).
      A page on ``http://evil.example`` whose DNS name is re-pointed at 127.0.0.1 (DNS
      rebinding) reaches a loopback server as a same-origin request, so the browser lets
      it read the answers; its ``Host`` header still says ``evil.example``, which is what
      this refuses. A request without ``Host`` (HTTP/1.0, not a browser) passes.
    - ``cors_origins``: a state-changing request a browser sent from a page of another
      origin is refused (403). A page may POST to any address without asking first when
      the body looks like a form or text (a "simple" request): it cannot read the answer,
      but the request runs. Browsers send ``Origin`` with every such request; programs
      (the SDKs, curl) do not. So a request whose ``Origin`` is neither this server nor
      one of ``cors_origins`` is refused before it does anything. Safe methods pass.
    - ``api_key``: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (401,
      constant-time comparison).
    """

    def __init__(
        self,
        *,
        allowed_hosts: AllowedHosts | None = None,
        cors_origins: Collection[str] | None = None,
        api_key: str | None = None,
    ):
        self.allowed_hosts = None if allowed_hosts is None or allowed_hosts.any else allowed_hosts
        self.check_origin = cors_origins is not None and "*" not in cors_origins
        self.origins = frozenset(o.rstrip("/") for o in cors_origins or ())
        self._key = api_key.encode() if api_key else None
        self._host_verdicts: dict[bytes, bool] = {}

    @property
    def checks(self) -> bool:
        """Whether there is anything to check."""
        return self.allowed_hosts is not None or self.check_origin or self._key is not None

    def refusal(self, scope: Scope) -> Response | None:
        """The error answer for a request that may not pass, or ``None``."""
        if scope["type"] not in ("http", "websocket"):
            return None
        return self.judge(scope, *scan_headers(scope)[:4])

    def judge(
        self,
        scope: Scope,
        host: bytes | None,
        origin: bytes | None,
        api_key: bytes | None,
        authorization: bytes | None,
    ) -> Response | None:
        """:meth:`refusal`, given the headers it looks at (see :func:`scan_headers`)."""
        kind = scope["type"]
        if self.allowed_hosts is not None and host is not None and not self._host_allowed(host):
            return self._refuse_host(scope, host.decode("latin-1"))
        if kind != "http":
            return None
        if (
            self.check_origin
            and origin is not None
            and scope["method"] not in _SAFE_METHODS
            and not self._origin_allowed(origin.decode("latin-1"), host)
        ):
            return self._refuse_origin(scope, origin.decode("latin-1"))
        if self._key is not None and not self._authorised(api_key, authorization):
            response = error_response_for(
                scope["path"],
                AuthenticationFailed(
                    "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"
                ),
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return None

    def _host_allowed(self, host: bytes) -> bool:
        verdict = self._host_verdicts.get(host)
        if verdict is None:
            assert self.allowed_hosts is not None
            verdict = self.allowed_hosts.allows(host.decode("latin-1"))
            if len(self._host_verdicts) >= _HOST_VERDICTS:
                self._host_verdicts.clear()
            self._host_verdicts[host] = verdict
        return verdict

    def _origin_allowed(self, origin: str, host: bytes | None) -> bool:
        if origin in self.origins:
            return True
        return same_origin(origin, "" if host is None else host.decode("latin-1"))

    def _authorised(self, api_key: bytes | None, authorization: bytes | None) -> bool:
        assert self._key is not None
        presented = api_key
        if presented is None:
            # starlette decodes header bytes as latin-1; the key is compared as the bytes
            # sent, so a key that is not ASCII matches when the client sends it as UTF-8
            scheme, _, credentials = (authorization or b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return False
            presented = credentials.strip().encode("latin-1")
        return hmac.compare_digest(presented, self._key)

    @staticmethod
    def _refuse_host(scope: Scope, host: str) -> Response:
        logger.warning("refused Host header %.100r", host)
        return error_response_for(
            scope["path"],
            HostNotAllowed(
                f"the Host header {host[:100]!r} is not one this server answers to; "
                "add it to allowed_hosts (--allowed-hosts) if it is yours",
                param="host",
            ),
        )

    @staticmethod
    def _refuse_origin(scope: Scope, origin: str) -> Response:
        logger.warning("refused a cross-site %s from origin %.100r", scope["method"], origin)
        return error_response_for(
            scope["path"],
            OriginNotAllowed(
                f"requests from the web page origin {origin[:100]!r} are not allowed; "
                "list it in cors_origins (--cors-origins) if it is yours",
                param="origin",
            ),
        )


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
