"""Error bodies back into the one error hierarchy of :mod:`localinfer.errors`.

The server answers ``{"error": {"message", "type", "param", "code"}}``; the client raises
the same class the server raised (``ModelNotFound``, ``QueueFull`` with its
``Retry-After``, ...), so code written against the :class:`~localinfer.Engine` catches
the same exceptions over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from localinfer import errors as e


def _classes_by_code() -> dict[str, type[e.LocalInferError]]:
    """Every class of the hierarchy by its code, read from :mod:`localinfer.errors` itself
    so that a class added there is mapped here without a second list to keep."""
    found: dict[str, type[e.LocalInferError]] = {}
    for value in vars(e).values():
        if isinstance(value, type) and issubclass(value, e.LocalInferError) and value.code:
            found.setdefault(value.code, value)
    return found


BY_CODE = _classes_by_code()

#: a code the client does not know (a newer server): judged by the HTTP status
BY_STATUS: dict[int, type[e.LocalInferError]] = {
    400: e.InvalidRequest,
    401: e.AuthenticationFailed,
    403: e.AuthenticationFailed,
    413: e.RequestTooLarge,
    415: e.UnsupportedMediaType,
    422: e.InvalidArguments,
    429: e.QueueFull,
    503: e.ModelNotReady,
    501: e.NotSupportedHere,
    504: e.RequestTimeout,
}

#: a code that names a network failure seen by the client, not by the server
CONNECTION_ERROR = "connection_error"


def error_from_body(
    body: object, *, status: int | None = None, headers: Mapping[str, str] | None = None
) -> e.LocalInferError:
    """The exception an error body stands for (an unknown code keeps its code)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, str):  # the KServe v2 shape: {"error": "message"}
        return _by_status(status)(error)
    if not isinstance(error, Mapping):
        text = body if isinstance(body, str) and body else f"HTTP {status}"
        return _by_status(status)(str(text)[:2000])
    message = str(error.get("message") or f"HTTP {status}")
    code = error.get("code")
    code = str(code) if code is not None else None
    param = error.get("param")
    param = str(param) if param is not None else None
    cls = BY_CODE.get(code or "") or _by_status(status)
    return _build(cls, message, param=param, code=code, error=error, headers=headers)


def _build(
    cls: type[e.LocalInferError],
    message: str,
    *,
    param: str | None,
    code: str | None,
    error: Mapping[str, object],
    headers: Mapping[str, str] | None,
) -> e.LocalInferError:
    """An instance of ``cls`` with what its constructor needs, found in the body."""
    if issubclass(cls, e.QueueFull):
        return cls(message, retry_after_s=_retry_after(headers), param=param, code=code)
    extra: dict[str, Any] = {}
    if issubclass(cls, e.NoCapabilityMatch):
        known = error.get("known_capabilities")
        extra["known"] = dict(known) if isinstance(known, Mapping) else {}
    if issubclass(cls, e.ModelNotDownloaded):
        extra["model"] = str(error.get("model") or param or "")
    for candidate in cls.__mro__:  # a constructor that needs more than we know: a base class
        if not (isinstance(candidate, type) and issubclass(candidate, e.LocalInferError)):
            continue
        try:
            return candidate(message, param=param, code=code, **extra)
        except TypeError:
            extra = {}
    return e.LocalInferError(message, param=param, code=code)  # pragma: no cover


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes
) -> e.LocalInferError:
    """The exception for a non-2xx response, whatever its body holds."""
    try:
        body: object = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", "replace").strip()
    return error_from_body(body, status=status, headers=headers)


def _by_status(status: int | None) -> type[e.LocalInferError]:
    if status is None:
        return e.LocalInferError
    return BY_STATUS.get(status, e.LocalInferError)


def _retry_after(headers: Mapping[str, str] | None) -> float:
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0
