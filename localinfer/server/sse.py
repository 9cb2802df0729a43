"""Server-sent events framing: tiny on purpose, and tested against the ``openai`` client."""

from __future__ import annotations

from typing import Any

from localinfer.server.encoding import dumps

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def sse_event(data: Any) -> bytes:
    """One ``data:`` event holding ``data`` as compact JSON (never spans lines)."""
    return b"data: " + dumps(data) + b"\n\n"
