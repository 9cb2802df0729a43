"""Serve a LitAPI-style object: ``setup / decode_request / predict / encode_response``.

Same hooks as LitServe's ``LitAPI`` (``batch`` / ``unbatch`` optional), so existing
LitServe APIs run unchanged. When ``decode_request`` is annotated with a pydantic
model the request is validated on the event loop before it is queued (a bad body is a
422 and never reaches a worker); when ``encode_response`` is annotated with one, the
response is validated too.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from localinfer.errors import InvalidArguments
from localinfer.handlers.base import Handler, is_stream

LITAPI_HOOKS = ("setup", "predict")


def is_litapi(obj: Any) -> bool:
    """Duck-typed: anything with ``setup`` and ``predict`` and no ``infer``."""
    return all(callable(getattr(obj, hook, None)) for hook in LITAPI_HOOKS) and not callable(
        getattr(obj, "infer", None)
    )


def _pydantic_model(annotation: Any) -> type | None:
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return None
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def request_model(api: Any) -> type | None:
    """The pydantic model ``decode_request``'s first parameter is annotated with, if any."""
    decode = getattr(api, "decode_request", None)
    if decode is None:
        return None
    hints = _hints(decode)
    params = [p for p in inspect.signature(decode).parameters.values() if p.name != "self"]
    if not params:
        return None
    return _pydantic_model(hints.get(params[0].name))


def response_model(api: Any) -> type | None:
    encode = getattr(api, "encode_response", None)
    return None if encode is None else _pydantic_model(_hints(encode).get("return"))


def validate_request(model: type, body: Any) -> Any:
    """Validate ``body`` against ``model``; a mismatch is the caller's error (422)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(body)  # type: ignore[attr-defined]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InvalidArguments(
            f"request does not match {model.__name__}: {exc.error_count()} error(s); "
            f"first: {where or 'body'}: {first.get('msg')}",
            param=where,
        ) from None


def _default_batch(inputs: list[Any]) -> Any:
    first = inputs[0]
    module = type(first).__module__
    if module.startswith("torch"):
        import torch

        return torch.stack(inputs)
    if module.startswith("numpy"):
        import numpy

        return numpy.stack(inputs)
    return inputs


class LitAPIHandler(Handler):
    """Runs the LitAPI hooks in the worker thread."""

    task = "infer"

    def __init__(self, api: Any, *, max_batch_size: int = 1, stream: bool = False):
        self.api = api
        self.max_batch_size = max_batch_size
        self.stream = stream
        self._request_model = request_model(api)
        self._response_model = response_model(api)

    def load(self, device: str) -> None:
        self.api.setup(device)

    def _decode(self, request: Any) -> Any:
        if self._request_model is not None and not isinstance(request, self._request_model):
            request = validate_request(self._request_model, request)  # built by a factory
        decode = getattr(self.api, "decode_request", None)
        return request if decode is None else decode(request)

    def _encode(self, output: Any) -> Any:
        encode = getattr(self.api, "encode_response", None)
        encoded = output if encode is None else encode(output)
        if is_stream(encoded):
            return encoded
        return self._check_response(encoded)

    def _check_response(self, encoded: Any) -> Any:
        model = self._response_model
        if model is None:
            return encoded
        if not isinstance(encoded, model):
            encoded = model.model_validate(encoded)  # type: ignore[attr-defined]
        return encoded.model_dump(mode="json")

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        decoded = [self._decode(request) for request in inputs]
        if self.max_batch_size <= 1 or self.stream:
            return [self._encode(self.api.predict(x)) for x in decoded]
        batch_hook = getattr(self.api, "batch", None)
        unbatch_hook = getattr(self.api, "unbatch", None)
        batched = batch_hook(decoded) if callable(batch_hook) else _default_batch(decoded)
        output = self.api.predict(batched)
        outputs = unbatch_hook(output) if callable(unbatch_hook) else list(output)
        return [self._encode(y) for y in outputs]

    def close(self) -> None:
        teardown = getattr(self.api, "teardown", None)
        if callable(teardown):
            teardown()
        del self.api
