"""Answers the server gives before the app runs, as raw HTTP/1.1 in the OpenAI error shape.

hypercorn refuses broken framing itself (h11: headers past ``h11_max_incomplete_size``
→ 431, malformed request lines or headers → 400, …) with an empty body. Its HTTP/1.1
protocol is given a subclass that sends the same status with an OpenAI error body and
logs the refusal; the connection cap uses the same bytes (see :mod:`.connections`).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from localinfer.errors import HeaderFieldsTooLarge, LocalInferError, MalformedRequest
from localinfer.server.errors import error_response

logger = logging.getLogger(__name__)

#: the config attribute that turns the OpenAI-shaped refusals on for one server
CONFIG_FLAG = "localinfer_refusals"


def raw_response(error: LocalInferError, status: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer for ``error`` that closes the connection."""
    response = error_response(error)
    status = status or response.status_code
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    head = [f"HTTP/1.1 {status} {reason}".encode()]
    head += [name + b": " + value for name, value in response.raw_headers]
    head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + bytes(response.body)


def framing_error(status: int) -> LocalInferError:
    """The error for a refusal of hypercorn's (``status``: h11's hint)."""
    if status == 431:
        return HeaderFieldsTooLarge(
            "the request line or headers are larger than this server accepts"
        )
    return MalformedRequest(f"the HTTP request could not be parsed ({status})")


def install() -> bool:
    """Give hypercorn's HTTP/1.1 protocol the shaped refusals (once per process; only
    servers whose config carries :data:`CONFIG_FLAG` use them). ``False`` if this
    hypercorn has no hook for it, and its empty-bodied refusals stay."""
    from hypercorn import protocol
    from hypercorn.events import RawData

    base: Any = getattr(protocol, "H11Protocol")  # noqa: B009 - not exported
    if getattr(base, CONFIG_FLAG, False):
        return True
    if not hasattr(base, "_send_error_response"):
        logger.debug("hypercorn has no _send_error_response: its refusals keep their shape")
        return False

    class ShapedH11Protocol(base):  # type: ignore[misc]
        """hypercorn's HTTP/1.1 protocol whose own refusals carry an OpenAI error body."""

        localinfer_refusals = True

        async def _send_error_response(self, status_code: int) -> None:
            if not getattr(self.config, CONFIG_FLAG, False):
                await super()._send_error_response(status_code)
                return
            error = framing_error(status_code)
            logger.warning(
                "refused a request from %s before it reached the app: %s %s",
                self.client[0] if self.client else "?",
                status_code,
                error.message,
            )
            # h11 is in its ERROR state: these bytes bypass it, and the connection closes
            await self.send(RawData(data=raw_response(error, status_code)))

    setattr(protocol, "H11Protocol", ShapedH11Protocol)  # noqa: B010
    return True
