"""Reading request bodies within bounds: the limit is enforced while reading, never after."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import Message

from localinfer.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, or ``RequestTooLarge`` as soon as it is known to exceed ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise InvalidRequest("invalid Content-Length header") from None
        if declared_bytes > max_bytes:
            raise RequestTooLarge(
                f"request body of {declared_bytes} bytes exceeds the limit of {max_bytes} bytes"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """Parse the body as JSON with a message that says what is wrong."""
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";")[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {media!r}")
    raw = await read_body(request, max_bytes)
    if not raw:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None


def bounded(request: Request, max_bytes: int) -> Request:
    """A view of ``request`` whose body reading stops with ``RequestTooLarge`` past ``max_bytes``.

    For parsers that read the body themselves (multipart forms).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestTooLarge(
            f"request body of {declared} bytes exceeds the limit of {max_bytes} bytes"
        )
    received = 0
    receive = request.receive

    async def counting_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise RequestTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        return message

    return Request(request.scope, counting_receive)
