"""What every response parser reads: ``usage`` and ``performance`` bodies, and server-sent
events (decoded line by line, an ``{"error": ...}`` event raised as its error).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from localinfer.client.errors import error_from_body
from localinfer.client.results import (
    Timing,
    Usage,
)


def usage_of(raw: object) -> Usage:
    raw = raw if isinstance(raw, Mapping) else {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens", 0)),
        completion_tokens=int(raw.get("completion_tokens", 0)),
        total_tokens=int(raw.get("total_tokens", 0)),
    )


def timing_of(raw: object, total_ms: float, first_token_ms: float | None = None) -> Timing:
    raw = raw if isinstance(raw, Mapping) else {}
    return Timing(
        queue_ms=float(raw.get("queue_ms", 0.0)),
        prefill_ms=float(raw.get("prefill_ms", 0.0)),
        decode_ms=float(raw.get("decode_ms", 0.0)),
        tokens_per_second=float(raw.get("tokens_per_second", 0.0)),
        total_ms=total_ms,
        first_token_ms=first_token_ms,
    )


class SSEDecoder:
    """Server-sent events, line by line: ``feed`` returns an event's data once it is complete."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # comments, event:, id:, retry: carry nothing we use


def event_payload(data: str) -> object:
    """An SSE event's JSON; an ``{"error": ...}`` event is raised as its error."""
    payload: object = json.loads(data)
    if isinstance(payload, Mapping) and _is_error(payload):
        raise error_from_body(payload)
    return payload


def _is_error(payload: Mapping[str, object]) -> bool:
    error = payload.get("error")
    return len(payload) == 1 and isinstance(error, Mapping) and "message" in error
