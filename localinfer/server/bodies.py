"""Reading request bodies within bounds: the limit is enforced while reading, never after.

Both bounds hold while the body arrives: its size (``max_body_bytes``, 413 as soon as it
is known to be exceeded, from ``Content-Length`` before a byte is read) and its time
(``body_timeout_s`` from the first read to the last byte, 408): a sender that trickles
a byte at a time cannot hold a request open for longer than that.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Awaitable, Generator
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive

from localinfer.errors import (
    InvalidRequest,
    RequestBodyTimeout,
    RequestTooLarge,
    UnsupportedMediaType,
)


def _body_timeout_s(request: Request) -> float:
    app = request.scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    timeout: float = getattr(settings, "body_timeout_s", 60.0)
    return timeout


def _content_headers(request: Request) -> tuple[bytes | None, bytes | None]:
    """The raw ``Content-Type`` and ``Content-Length`` (first of each), in one pass."""
    content_type = content_length = None
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            if content_type is None:
                content_type = value
        elif name == b"content-length" and content_length is None:
            content_length = value
    return content_type, content_length


def _check_declared_length(declared: bytes | None, max_bytes: int) -> None:
    if declared is None:
        return
    try:
        declared_bytes = int(declared)
    except ValueError:
        raise InvalidRequest("invalid Content-Length header") from None
    if declared_bytes > max_bytes:
        raise RequestTooLarge(
            f"request body of {declared_bytes} bytes exceeds the limit of {max_bytes} bytes"
        )


def guarded_receive(request: Request, max_bytes: int, timeout_s: float) -> Receive:
    """``request.receive`` that raises ``RequestTooLarge`` past ``max_bytes`` and
    ``RequestBodyTimeout`` once ``timeout_s`` have passed since its first call."""
    receive = request.receive
    received = 0
    deadline: float | None = None

    async def guarded() -> Message:
        nonlocal received, deadline
        now = anyio.current_time()
        if deadline is None:
            deadline = now + timeout_s
        try:
            with anyio.fail_after(max(deadline - now, 0.0)):
                message = await receive()
        except TimeoutError:
            raise RequestBodyTimeout(
                f"the request body did not arrive within {timeout_s:g} s "
                f"({received} bytes received)"
            ) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise RequestTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        return message

    return guarded


@types.coroutine
def _resume(coroutine: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Go on awaiting ``coroutine`` from its first suspension (which yielded ``yielded``),
    exactly as ``await`` would have: what the loop sends or throws goes through."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # cancellation, timeouts: the coroutine handles them
            try:
                yielded = coroutine.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value


def _receive_eagerly(receive: Receive) -> tuple[Message | None, Awaitable[Message] | None]:
    """Call ``receive`` and run it up to its first wait: ``(message, None)`` if it did not
    have to wait, else ``(None, the rest to await)``. A small body usually came with the
    headers: reading it needs no deadline (a cancel scope costs ~7 us per request)."""
    call = receive()
    if not inspect.iscoroutine(call):
        return None, call
    try:
        yielded = call.send(None)
    except StopIteration as stop:
        return stop.value, None
    return None, _resume(call, yielded)


async def read_body(
    request: Request,
    max_bytes: int,
    *,
    timeout_s: float | None = None,
    declared_length: bytes | None = None,
) -> bytes:
    """The body, or ``RequestTooLarge`` / ``RequestBodyTimeout`` as soon as it is known.

    ``declared_length``: the ``Content-Length`` header, if the caller has read it already.
    """
    if declared_length is None:
        declared_length = _content_headers(request)[1]
    _check_declared_length(declared_length, max_bytes)
    receive = request.receive
    chunks: list[bytes] = []
    size = 0

    def take(message: Message) -> bool:
        """Keep the message's bytes; whether the body is complete."""
        nonlocal size
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise RequestTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)
        return not message.get("more_body", False)

    # what has arrived already is read without a deadline (hypercorn queues a small body
    # as two messages, the bytes and an empty last one, usually before the route runs)
    while True:
        message, pending = _receive_eagerly(receive)
        if message is None:
            break
        if take(message):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    timeout = _body_timeout_s(request) if timeout_s is None else timeout_s
    # one deadline for the rest of the body (a cancel scope per message costs 7 us each)
    with anyio.move_on_after(timeout):
        while not take(await (pending if pending is not None else receive())):
            pending = None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    raise RequestBodyTimeout(
        f"the request body did not arrive within {timeout:g} s ({size} bytes received)"
    )


async def read_json(request: Request, max_bytes: int) -> Any:
    """Parse the body as JSON with a message that says what is wrong."""
    content_type, content_length = _content_headers(request)
    if content_type is not None and content_type != b"application/json":
        media = content_type.decode("latin-1").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(f"expected Content-Type application/json, got {media!r}")
    return parse_json(await read_body(request, max_bytes, declared_length=content_length))


def _no_constants(name: str) -> Any:
    raise InvalidRequest(f"the request body is not valid JSON: {name} is not a JSON number")


#: a ``\\uD800``-``\\uDFFF`` escape: only then can a decoded string hold a lone surrogate
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _encoding_of(raw: bytes) -> str:
    """The encoding ``json.loads`` would decode ``raw`` with: UTF-8 unless it starts with
    a byte-order mark or a zero byte (UTF-16/32), which a nonzero ASCII byte rules out."""
    if 0 < raw[0] < 0x80 and (len(raw) == 1 or raw[1]):
        return "utf-8"
    return json.detect_encoding(raw)


#: one decoder for every body (``json.loads`` with an option builds a new one per call)
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no ``NaN``/``Infinity``, no lone surrogates, bounded nesting."""
    if not raw:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        value = _DECODER.decode(raw.decode(_encoding_of(raw), "surrogatepass"))
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise InvalidRequest("the request body holds a number with too many digits") from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise InvalidRequest(
            "the request body is not valid JSON text: a string holds an unpaired UTF-16 "
            "surrogate escape"
        )
    return value


def bounded(request: Request, max_bytes: int, *, timeout_s: float | None = None) -> Request:
    """A view of ``request`` whose body reading stops with ``RequestTooLarge`` past
    ``max_bytes`` and ``RequestBodyTimeout`` past the body timeout.

    For parsers that read the body themselves (multipart forms).
    """
    _check_declared_length(_content_headers(request)[1], max_bytes)
    timeout = _body_timeout_s(request) if timeout_s is None else timeout_s
    return Request(request.scope, guarded_receive(request, max_bytes, timeout))
