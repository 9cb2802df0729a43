"""Model outputs to response bodies."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_jsonable_python
from starlette.responses import Response

from localinfer.errors import HandlerFailed


def _fallback(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and torch tensors
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from pydantic models, dataclasses, arrays, tensors and the like."""
    try:
        return to_jsonable_python(value, fallback=_fallback)
    except Exception as exc:
        raise HandlerFailed(
            f"the model returned a value that cannot be sent as JSON: {exc}"
        ) from exc


#: one encoder for every answer (``json.dumps`` with options builds a new one per call)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    try:  # plain JSON data (the common case) needs no conversion pass
        text = _ENCODER.encode(value)
    except (TypeError, ValueError):
        text = _ENCODER.encode(to_jsonable(value))
    return text.encode()


class RawResponse(Response):
    """A response built from the body and raw header pairs as they go on the wire.

    For the inference routes' answers: starlette's ``Response`` normalises its headers
    on every request (a measurable share of a no-op request's cost); here the caller
    gives them ready-made, lower-case, and ``content-length`` is added.
    """

    def __init__(
        self,
        body: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        status_code: int = 200,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-length", b"%d" % len(body)), *raw_headers]


JSON_CONTENT_TYPE = (b"content-type", b"application/json")
