"""Server-sent events framing: tiny on purpose, and tested against the ``openai`` client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from localinfer.server.encoding import dumps

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"

#: a JSON string the way pydantic writes one: UTF-8, not ``\\u`` escapes
_STRING = json.JSONEncoder(ensure_ascii=False)


def sse_event(data: Any) -> bytes:
    """One ``data:`` event holding ``data`` as compact JSON (never spans lines)."""
    return b"data: " + dumps(data) + b"\n\n"


def sse_model(model: BaseModel) -> bytes:
    """One ``data:`` event holding a response model (every field, ``null`` included)."""
    return b"data: " + model.model_dump_json(exclude_none=False).encode() + b"\n\n"


class TextFrames:
    """The events of one stream's plain text deltas, with the model serialised once.

    A streamed reply sends a chunk per token that differs from the one before only in
    its text. Building and dumping the pydantic chunk took ~15 us, and several times that
    right after a decode has flushed the caches, all of it on the event loop beside the
    decode's threads. So the chunk is dumped once, by the model itself, around a marker
    text; each delta is the part before the marker, its text as a JSON string, and the part
    after it. The shape stays the model's.
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, chunk_with_text: Callable[[str], BaseModel]) -> None:
        marker = f"localinfer-text-{uuid.uuid4().hex}"
        framed = sse_model(chunk_with_text(marker))
        quoted = _STRING.encode(marker).encode()
        head, found, tail = framed.partition(quoted)
        if not found or quoted in tail:
            raise ValueError("the chunk must hold its text exactly once")
        self._head, self._tail = head, tail

    def frame(self, text: str) -> bytes:
        """The event of a chunk holding ``text``."""
        return self._head + _STRING.encode(text).encode() + self._tail
