"""Pure ASGI middleware (no response buffering, streaming untouched)."""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
import time

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localinfer.errors import AuthenticationFailed
from localinfer.log import request_id_var
from localinfer.server.errors import error_response

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
            await error_response(exc)(scope, receive, send_with_id)
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
        return hmac.compare_digest(presented.encode(), self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        response = error_response(
            AuthenticationFailed(
                "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)
