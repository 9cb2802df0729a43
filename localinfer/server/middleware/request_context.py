"""The outermost middleware: a request id, one log line, and errors that escaped the app
answered in the OpenAI shape (pure ASGI: no buffering, streaming untouched)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localinfer.log import request_id_var
from localinfer.server.errors import error_response, error_response_for
from localinfer.server.middleware.guard import Guard
from localinfer.server.middleware.header_limits import HeaderLimits
from localinfer.server.middleware.headers import scan_headers

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
    turns any error that escaped the app into an OpenAI error body carrying that id, and
    runs ``limits`` (431) and ``guard``'s checks (one pass over the headers for all of them)."""

    def __init__(
        self, app: ASGIApp, guard: Guard | None = None, limits: HeaderLimits | None = None
    ):
        self.app = app
        self.guard = guard if guard is not None and guard.checks else None
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if (
                scope["type"] == "websocket"
                and self.limits is not None
                and self.limits.violation(scope) is not None
            ):
                return  # a websocket refused: closed before it is accepted
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
            if self.limits is not None and (too_large := self.limits.violation(scope)):
                logger.warning("refused: %s", too_large.message)
                await error_response(too_large)(scope, receive, send_with_id)
            elif (
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
