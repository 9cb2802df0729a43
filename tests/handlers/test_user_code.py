"""Adapting user objects: argument binding, setup, streaming outputs, LitAPI hooks."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from localinfer.errors import InvalidArguments
from localinfer.handlers import user_code
from localinfer.handlers.base import is_stream
from localinfer.handlers.litapi import LitAPIHandler, is_litapi
from localinfer.handlers.user_code import InferHandler, InferRequest, parse_infer_request
from tests import models


class Recorder:
    """A WorkItem that records what the handler did with it."""

    def __init__(self, payload: Any):
        self.payload = payload
        self.request_id = "r"
        self.cancelled = False
        self.done = False
        self.chunks: list[Any] = []
        self.result: Any = None
        self.error: BaseException | None = None

    def emit(self, chunk: Any) -> None:
        self.chunks.append(chunk)

    def finish(self, result: Any = None) -> None:
        self.done, self.result = True, result

    def fail(self, error: BaseException) -> None:
        self.done, self.error = True, error


def test_parse_infer_request_defaults() -> None:
    assert parse_infer_request({}, None) == InferRequest()
    assert parse_infer_request({"stream": False}, None).stream is False
    with pytest.raises(InvalidArguments, match="'stream' must be true or false"):
        parse_infer_request({"stream": "yes"}, None)


def test_setup_gets_the_device_and_infer_runs() -> None:
    handler = InferHandler(models.Echo())
    handler.load("cuda:3")
    item = Recorder(InferRequest(("hi",), {"repeat": 2}))
    handler.process([item])
    assert item.result["text"] == "hihi" and item.result["device"] == "cuda:3"


def test_generators_are_streamed_and_cancellation_stops_them() -> None:
    handler = InferHandler(models.Words())
    item = Recorder(InferRequest((3,)))
    handler.process([item])
    assert item.chunks == ["w0 ", "w1 ", "w2 "] and item.result is None

    class CancelAfterTwo(Recorder):
        def emit(self, chunk: Any) -> None:
            super().emit(chunk)
            self.cancelled = len(self.chunks) >= 2

    item = CancelAfterTwo(InferRequest((1000,)))
    handler.process([item])
    assert item.chunks == ["w0 ", "w1 "]


def test_wrong_arguments_fail_the_item_not_the_handler() -> None:
    handler = InferHandler(models.Echo())
    item = Recorder(InferRequest((), {"nope": 1}))
    with pytest.raises(InvalidArguments):
        handler.process([item])


def test_is_stream() -> None:
    def gen() -> Iterator[int]:
        yield 1

    assert is_stream(gen()) and is_stream(iter([1]))
    assert not any(is_stream(x) for x in ["abc", b"abc", [1], {"a": 1}, None])


def test_litapi_batch_unbatch_and_response_model() -> None:
    assert is_litapi(models.NormAPI()) and not is_litapi(models.Echo())
    handler = LitAPIHandler(models.NormAPI(), max_batch_size=8)
    handler.load("cpu")
    items = [Recorder(models.Point(x=3, y=4)), Recorder({"x": 6, "y": 8})]
    handler.process(items)
    assert [i.result for i in items] == [{"norm": 5.0}, {"norm": 10.0}]


def test_litapi_stream() -> None:
    handler = LitAPIHandler(models.StreamingAPI(), stream=True)
    item = Recorder({"n": 2})
    handler.process([item])
    assert item.chunks == [{"value": 0}, {"value": 1}]


def test_argument_shapes_are_checked_once_and_each_answer_stays_right() -> None:
    def infer(a: int, b: int = 0, *, c: int = 1, **extra: Any) -> None: ...

    signature = inspect.signature(infer)
    good = {"args": [1], "kwargs": {"c": 2}}
    assert parse_infer_request(good, signature).args == (1,)
    shapes = dict(user_code._binds)
    assert parse_infer_request(good, signature).kwargs == {"c": 2}
    assert user_code._binds == shapes, "a known shape binds without being checked again"
    for bad, message in (
        ({"args": []}, "missing a required argument: 'a'"),
        ({"args": [1, 2, 3]}, "too many positional arguments"),
        ({"args": [1], "kwargs": {"a": 1}}, "multiple values for argument 'a'"),
    ):
        for _ in range(2):  # a wrong shape is refused every time, not remembered as good
            with pytest.raises(InvalidArguments, match=message):
                parse_infer_request(bad, signature)
    # names the signature lacks bind through **extra but are not remembered (unbounded)
    parse_infer_request({"args": [1], "kwargs": {"anything": 1}}, signature)
    assert len(user_code._binds) == len(shapes)

    # another signature with the same shape gets its own verdict
    def strict(a: int) -> None: ...

    with pytest.raises(InvalidArguments, match="unexpected keyword argument 'c'"):
        parse_infer_request(good, inspect.signature(strict))
