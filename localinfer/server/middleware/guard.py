"""The checks a request passes before it reaches a route: host, origin, API key."""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from localinfer.errors import AuthenticationFailed, HostNotAllowed, OriginNotAllowed
from localinfer.server.errors import error_response_for
from localinfer.server.middleware.api_key import key_matches
from localinfer.server.middleware.headers import scan_headers
from localinfer.server.middleware.hosts import AllowedHosts
from localinfer.server.middleware.origins import SAFE_METHODS, same_origin

logger = logging.getLogger(__name__)

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
            and scope["method"] not in SAFE_METHODS
            and not self._origin_allowed(origin.decode("latin-1"), host)
        ):
            return self._refuse_origin(scope, origin.decode("latin-1"))
        if self._key is not None and not key_matches(self._key, api_key, authorization):
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
