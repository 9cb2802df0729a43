"""Serve a user's own object that has an ``infer`` method.

``infer(*args, **kwargs)`` gets the request's ``args`` and ``kwargs``; a return value
is the response, a generator streams (text as SSE, bytes as a chunked body).
Arguments are bound to ``infer``'s signature before the call, so a mismatch is the
caller's error (422), never a crash of the model's code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localinfer.errors import InvalidArguments
from localinfer.handlers.base import Handler

_REQUEST_KEYS = {"args", "kwargs", "stream", "model"}


@dataclass(frozen=True, slots=True)
class InferRequest:
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: None: stream if ``infer`` yields; False: collect a generator's items into one reply
    stream: bool | None = None
    #: the signature the arguments were checked against on the loop, if they were
    bound_to: inspect.Signature | None = field(default=None, compare=False, repr=False)


def parse_infer_request(body: Any, signature: inspect.Signature | None) -> InferRequest:
    """Validate ``{"args": [...], "kwargs": {...}, "stream": bool}``; bind it to ``signature``."""
    if not isinstance(body, dict):
        raise InvalidArguments("the request body must be a JSON object with 'args' and/or 'kwargs'")
    if not body.keys() <= _REQUEST_KEYS:
        unknown = set(body) - _REQUEST_KEYS
        raise InvalidArguments(
            f"unknown field(s) {', '.join(sorted(unknown))}; expected args, kwargs, stream",
            param=sorted(unknown)[0],
        )
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    stream = body.get("stream")
    if not isinstance(args, list):
        raise InvalidArguments("'args' must be a JSON array", param="args")
    if not isinstance(kwargs, dict):
        raise InvalidArguments("'kwargs' must be a JSON object", param="kwargs")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidArguments("'stream' must be true or false", param="stream")
    if signature is None:
        return InferRequest(tuple(args), kwargs, stream)
    check_arguments(signature, args, kwargs)
    return InferRequest(tuple(args), kwargs, stream, bound_to=signature)


class MethodSignature(inspect.Signature):
    """A method's signature without its receiver, which it still names: ``self`` sent as a
    keyword to ``infer(self, **kwargs)`` binds here but fails the call."""

    __slots__ = ("receiver",)

    def __init__(self, signature: inspect.Signature, receiver: str):
        super().__init__(
            list(signature.parameters.values()),
            return_annotation=signature.return_annotation,
        )
        self.receiver = receiver

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its receiver (a model's definition crosses to Ray Serve's ingress)."""
        plain = inspect.Signature(
            list(self.parameters.values()), return_annotation=self.return_annotation
        )
        return (MethodSignature, (plain, self.receiver))

    def replace(self, **changes: Any) -> MethodSignature:
        plain = inspect.Signature(
            list(self.parameters.values()), return_annotation=self.return_annotation
        )
        return MethodSignature(plain.replace(**changes), self.receiver)


def bind_arguments(signature: inspect.Signature, request: InferRequest) -> None:
    check_arguments(signature, request.args, request.kwargs)


#: argument shapes known to bind: (id of the signature, number of positional arguments,
#: keyword names) -> the signature. Whether arguments bind depends on their count and
#: names only, and requests to one model send the same shape again and again. Only names
#: the signature has are kept (a bounded set); the entry holds its signature, so an id
#: is never mistaken for a later signature's.
_binds: dict[tuple[int, int, tuple[str, ...]], inspect.Signature] = {}
_MAX_SHAPES = 4096


def check_arguments(
    signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Raise ``InvalidArguments`` unless ``args`` and ``kwargs`` bind to ``signature``."""
    key = (id(signature), len(args), tuple(kwargs))
    if _binds.get(key) is signature:
        return
    error = _binding_error(signature, len(args), kwargs)
    if error is not None:
        raise error
    if kwargs.keys() <= signature.parameters.keys():
        if len(_binds) >= _MAX_SHAPES:
            _binds.clear()
        _binds[key] = signature


def _binding_error(
    signature: inspect.Signature, positional: int, kwargs: Mapping[str, Any]
) -> InvalidArguments | None:
    receiver = getattr(signature, "receiver", None)
    if receiver is not None and receiver in kwargs:
        return InvalidArguments(
            f"{receiver!r} is not an argument of infer{signature}", param=receiver
        )
    try:
        signature.bind(*([None] * positional), **dict.fromkeys(kwargs))
    except TypeError as exc:
        return InvalidArguments(f"arguments do not match infer{signature}: {exc}")
    return None


def infer_signature(target: Any) -> inspect.Signature | None:
    """``infer``'s signature without ``self``, from a class or an instance; None if unknown."""
    infer = getattr(target, "infer", None)
    if infer is None:
        return None
    try:
        signature = inspect.signature(infer)
    except (TypeError, ValueError):
        return None
    function = getattr(infer, "__func__", infer)  # a bound method's function
    if inspect.isclass(target) and not isinstance(
        inspect.getattr_static(target, "infer", None), staticmethod | classmethod
    ):  # unbound function: drop self
        receiver, *params = signature.parameters.values()
        return MethodSignature(signature.replace(parameters=params), receiver.name)
    if inspect.ismethod(infer):
        try:
            receiver_name = next(iter(inspect.signature(function).parameters))
        except (TypeError, ValueError, StopIteration):
            return signature
        return MethodSignature(signature, receiver_name)
    return signature


def call_setup(obj: Any, device: str) -> None:
    """Call ``obj.setup(device)`` (or ``setup()``) if the object has one."""
    setup = getattr(obj, "setup", None)
    if not callable(setup):
        return
    try:
        params = inspect.signature(setup).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if params:
        setup(device)
    else:
        setup()


def instantiate(target: Callable[..., Any], device: str) -> Any:
    """Build an object from a class or factory, passing ``device=`` if it takes one."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "device" in params:
        return target(device=device)
    return target()


class InferHandler(Handler):
    """Adapts an object with ``infer`` to the handler API, one request at a time."""

    task = "infer"

    def __init__(self, obj: Any):
        if not callable(getattr(obj, "infer", None)):
            raise TypeError(f"{type(obj).__name__} has no callable 'infer' method")
        self.obj = obj
        self._signature = infer_signature(obj)
        #: a loop-side signature found equal to ``_signature``: its checks hold here
        self._trusted: inspect.Signature | None = None

    def load(self, device: str) -> None:
        call_setup(self.obj, device)

    def run_batch(self, inputs: list[InferRequest]) -> list[Any]:
        return [self._call(request) for request in inputs]

    def _call(self, request: InferRequest) -> Any:
        signature = self._signature
        bound_to = request.bound_to
        if signature is not None and (bound_to is None or bound_to is not self._trusted):
            if bound_to is not None and bound_to == signature:
                self._trusted = bound_to  # checked on the loop already
            else:
                bind_arguments(signature, request)
        return self.obj.infer(*request.args, **request.kwargs)

    def close(self) -> None:
        teardown = getattr(self.obj, "teardown", None)
        if callable(teardown):
            teardown()
        del self.obj
