"""The one place where errors become HTTP: status code + OpenAI (or KServe v2) error body."""

from __future__ import annotations

import logging
import math

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from localinfer import errors as e
from localinfer.server.protocol.kserve import KServeError

logger = logging.getLogger(__name__)

#: most specific first; (status, OpenAI error "type")
STATUS: list[tuple[type[e.LocalInferError], int, str]] = [
    (e.InvalidArguments, 422, "invalid_request_error"),
    (e.RequestTooLarge, 413, "invalid_request_error"),
    (e.RequestBodyTimeout, 408, "invalid_request_error"),
    (e.HeaderFieldsTooLarge, 431, "invalid_request_error"),
    (e.HostNotAllowed, 400, "invalid_request_error"),
    (e.UnsupportedMediaType, 415, "invalid_request_error"),
    (e.InvalidRequest, 400, "invalid_request_error"),
    (e.AuthenticationFailed, 401, "authentication_error"),
    (e.OriginNotAllowed, 403, "permission_error"),
    (e.ModelNotFound, 404, "invalid_request_error"),
    (e.DownloadNotFound, 404, "invalid_request_error"),
    (e.OfflineModeEnabled, 503, "service_unavailable"),
    (e.DiskFull, 507, "server_error"),
    (e.DownloadFailed, 502, "server_error"),
    (e.QueueFull, 429, "rate_limit_error"),
    (e.ModelNotReady, 503, "service_unavailable"),
    (e.ResourceExhausted, 503, "service_unavailable"),
    (e.TooManyConnections, 503, "service_unavailable"),
    (e.RequestTimeout, 504, "timeout_error"),
    (e.NotSupportedHere, 501, "invalid_request_error"),
    (e.LocalInferError, 500, "server_error"),
]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def status_of(exc: e.LocalInferError) -> tuple[int, str]:
    for cls, status, kind in STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "server_error"  # pragma: no cover - LocalInferError is last in STATUS


def error_body(
    message: str, kind: str, code: str | None, param: str | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(exc: BaseException) -> JSONResponse:
    """The response for any exception; unknown ones are logged and answered vaguely."""
    headers: dict[str, str] = {}
    if isinstance(exc, e.LocalInferError):
        status, kind = status_of(exc)
        body = error_body(exc.message, kind, exc.code, exc.param)
        if isinstance(exc, e.QueueFull | e.TooManyConnections):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        if isinstance(exc, e.NoCapabilityMatch):
            body["error"]["known_capabilities"] = exc.known  # type: ignore[index]
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = error_body(str(exc.detail), kind, _HTTP_CODES.get(status))
        headers.update(exc.headers or {})
    else:
        logger.error("unhandled error", exc_info=exc)
        status = 500
        body = error_body("internal server error", "server_error", "internal_error")
    return JSONResponse(body, status_code=status, headers=headers)


def kserve_error_response(exc: BaseException) -> JSONResponse:
    """The same statuses in the KServe v2 shape, ``{"error": "..."}``."""
    response = error_response(exc)
    if isinstance(exc, e.LocalInferError):
        message = exc.message
    elif isinstance(exc, HTTPException):
        message = str(exc.detail)
    else:
        message = "internal server error"
    retry = response.headers.get("retry-after")
    headers = {"Retry-After": retry} if retry else None
    body = KServeError(error=message).model_dump()
    return JSONResponse(body, status_code=response.status_code, headers=headers)


def error_response_for(path: str, exc: BaseException) -> JSONResponse:
    """The error in the shape of the protocol ``path`` belongs to: KServe's under ``/v2``."""
    if path == "/v2" or path.startswith("/v2/"):
        return kserve_error_response(exc)
    return error_response(exc)
