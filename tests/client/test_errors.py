"""Error bodies back into the server's own exception classes."""

from __future__ import annotations

import json

import pytest

from localinfer import errors as e
from localinfer.client.errors import BY_CODE, error_from_body, error_from_response
from localinfer.server.errors import error_response


def body(code: str | None, message: str = "boom", param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": "x", "param": param, "code": code}}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("model_not_found", e.ModelNotFound),
        ("queue_full", e.QueueFull),
        ("timeout", e.RequestTimeout),
        ("invalid_request", e.InvalidRequest),
        ("invalid_arguments", e.InvalidArguments),
        ("request_too_large", e.RequestTooLarge),
        ("resource_exhausted", e.ResourceExhausted),
        ("model_not_ready", e.ModelNotReady),
        ("handler_error", e.HandlerFailed),
        ("worker_crashed", e.WorkerCrashed),
        ("invalid_api_key", e.AuthenticationFailed),
        ("slow_consumer", e.SlowConsumer),
    ],
)
def test_each_code_is_its_class(code: str, cls: type[e.LocalInferError]) -> None:
    error = error_from_body(body(code, param="model"), status=500)
    assert type(error) is cls
    assert (error.message, error.param, error.code) == ("boom", "model", code)


def test_every_class_of_the_hierarchy_round_trips_through_the_server_mapping() -> None:
    """What server/errors.py writes, the client reads back as the same class."""
    for code, cls in BY_CODE.items():
        try:
            original = cls("it failed", param="p")
        except TypeError:  # needs more arguments than a message: built as the server would
            original = error_from_body(body(code, "it failed", "p"))
        response = error_response(original)
        rebuilt = error_from_response(response.status_code, response.headers, bytes(response.body))
        assert type(rebuilt) is type(original), code
        assert rebuilt.message == "it failed" and rebuilt.code == code


def test_queue_full_keeps_retry_after() -> None:
    error = error_from_body(body("queue_full"), status=429, headers={"Retry-After": "7"})
    assert isinstance(error, e.QueueFull) and error.retry_after_s == 7.0


def test_unknown_code_is_judged_by_status_and_keeps_its_code() -> None:
    error = error_from_body(body("brand_new_code"), status=503)
    assert type(error) is e.ModelNotReady and error.code == "brand_new_code"
    error = error_from_body(body("not_found"), status=404)
    assert type(error) is e.LocalInferError and error.code == "not_found"


def test_bodies_that_are_not_openai_errors() -> None:
    kserve = error_from_response(404, {}, json.dumps({"error": "no model"}).encode())
    assert type(kserve) is e.LocalInferError and kserve.message == "no model"
    text = error_from_response(502, {}, b"Bad Gateway")
    assert type(text) is e.LocalInferError and text.message == "Bad Gateway"
    assert isinstance(error_from_response(413, {}, b""), e.RequestTooLarge)
