"""Model outputs to response bodies."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_jsonable_python

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


def dumps(value: Any) -> bytes:
    try:  # plain JSON data (the common case) needs no conversion pass
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return text.encode()
