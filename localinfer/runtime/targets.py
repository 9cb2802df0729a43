"""Build a :class:`ModelDefinition` from a user's own code.

Accepted targets: a class (instantiated once per worker, inside the worker thread), a
factory function (called once per worker: per-worker initialisation), an instance
(copied for extra workers), or a list of instances (one worker per instance). The
object is either a :class:`~localinfer.handlers.base.Handler`, has an ``infer`` method,
or is LitAPI-style (``setup``/``predict``…).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from localinfer.config import IsolatedPriority
from localinfer.errors import ConfigurationError
from localinfer.handlers.base import Handler
from localinfer.handlers.litapi import (
    LitAPIHandler,
    is_litapi,
    request_model,
    validate_request,
)
from localinfer.handlers.user_code import (
    InferHandler,
    infer_signature,
    instantiate,
    parse_infer_request,
)
from localinfer.runtime.isolation import isolated
from localinfer.runtime.job import DEFAULT_STREAM_BUFFER
from localinfer.runtime.model import ModelDefinition


def import_target(spec: str) -> Any:
    """Import ``module:attribute`` (``module.path:Outer.inner`` too), with the cwd importable."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"{spec!r} is not of the form module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None
    return obj


def wrap_handler(obj: Any, *, max_batch_size: int, stream: bool) -> Handler:
    """Adapt a user object to the handler API."""
    if isinstance(obj, Handler):
        return obj
    if is_litapi(obj):
        return LitAPIHandler(obj, max_batch_size=max_batch_size, stream=stream)
    if callable(getattr(obj, "infer", None)):
        return InferHandler(obj)
    raise ConfigurationError(
        f"{type(obj).__name__} has neither an 'infer' method nor LitAPI hooks "
        "(setup, decode_request, predict, encode_response)"
    )


def _kind(sample: Any) -> str:
    """'handler', 'litapi', 'infer' or 'unknown' (a factory, known only once called)."""
    if (inspect.isclass(sample) and issubclass(sample, Handler)) or isinstance(sample, Handler):
        return "handler"
    if is_litapi(sample):
        return "litapi"
    if callable(getattr(sample, "infer", None)):
        return "infer"
    return "unknown"


def default_name(target: Any) -> str:
    sample = target[0] if isinstance(target, list | tuple) else target
    name = getattr(sample, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = sample if inspect.isclass(sample) or inspect.isfunction(sample) else type(sample)
    return cls.__name__


def user_code_definition(
    target: Any,
    *,
    name: str | None = None,
    devices: Sequence[str] = ("cpu",),
    workers_per_device: int = 1,
    factory: bool | None = None,
    max_batch_size: int | None = None,
    batch_timeout_s: float | None = None,
    max_queue: int = 256,
    stream_buffer: int = DEFAULT_STREAM_BUFFER,
    media_type: str | None = None,
) -> ModelDefinition:
    """Describe how to serve ``target`` (see module doc for the accepted forms)."""
    devices = tuple(devices)
    instances: list[Any] | None = None
    if isinstance(target, list | tuple):
        if not target:
            raise ConfigurationError("an empty list of model instances")
        instances = list(target)
        sample: Any = instances[0]
        worker_count_devices, per_device = devices, 1
    else:
        sample = target
        worker_count_devices, per_device = devices, workers_per_device
    if factory is None:
        factory = inspect.isfunction(sample) or (
            callable(sample) and not inspect.isclass(sample) and _kind(sample) == "unknown"
        )
    kind = "unknown" if factory else _kind(sample)
    if kind == "unknown" and not factory:
        raise ConfigurationError(
            f"{default_name(target)!r} has neither an 'infer' method nor LitAPI hooks"
        )

    batch = max_batch_size or int(getattr(sample, "max_batch_size", 1) or 1)
    window_s = (
        batch_timeout_s
        if batch_timeout_s is not None
        else float(getattr(sample, "batch_timeout", 0.0) or 0.0)
    )
    stream = bool(getattr(sample, "stream", False)) if kind == "litapi" else False

    def create(index: int, device: str) -> Handler:
        if instances is not None:
            obj = instances[index]
        elif factory or inspect.isclass(target):
            obj = instantiate(target, device)
        else:  # one instance: the first worker gets it, the others a copy
            obj = target if index == 0 else copy.deepcopy(target)
        return wrap_handler(obj, max_batch_size=batch, stream=stream)

    if kind == "infer":
        prepare: Any = partial(parse_infer_request, signature=infer_signature(sample))
    elif kind == "unknown":  # a factory: the worker binds arguments once it knows the object
        prepare = partial(_prepare_unknown, signature=None)
    elif kind == "litapi" and (model := request_model(sample)) is not None:
        prepare = partial(validate_request, model)
    else:
        prepare = None

    if instances is not None:
        worker_devices = tuple(devices[i % len(devices)] for i in range(len(instances)))
        worker_count_devices, per_device = worker_devices, 1

    return ModelDefinition(
        name=name or default_name(target),
        create_handler=create,
        task=getattr(sample, "task", None) or "infer",
        devices=worker_count_devices,
        workers_per_device=per_device,
        max_batch_size=batch,
        batch_window_ms=window_s * 1e3,
        max_queue=max_queue,
        stream_buffer=stream_buffer,
        prepare=prepare,
        media_type=media_type or getattr(sample, "media_type", None) or "application/octet-stream",
    )


def _prepare_unknown(body: Any, signature: Any) -> Any:
    """For factories: an infer-shaped body is parsed, anything else passes through."""
    if isinstance(body, dict) and set(body) <= {"args", "kwargs", "stream", "model"}:
        return parse_infer_request(body, signature)
    return body


@dataclass(frozen=True)
class TargetRecipe:
    """A user code target, imported again in a process of its own by its import path."""

    target: str
    factory: bool | None = None
    max_batch_size: int | None = None
    batch_timeout_s: float | None = None

    @property
    def name(self) -> str:
        return self.target

    def build(self, index: int, device: str) -> Handler:
        definition = user_code_definition(
            import_target(self.target),
            devices=(device,),
            factory=self.factory,
            max_batch_size=self.max_batch_size,
            batch_timeout_s=self.batch_timeout_s,
        )
        return definition.create_handler(index, device)


def target_definition(
    target: str,
    *,
    isolation_of: Callable[[str], IsolatedPriority | None] = lambda name: None,
    factory: bool | None = None,
    max_batch_size: int | None = None,
    batch_timeout_s: float | None = None,
    **options: Any,
) -> ModelDefinition:
    """The definition of the user code at ``target`` (``module:attribute``); served from
    processes of its own when ``isolation_of`` (the ``isolate`` setting) names it."""
    definition = user_code_definition(
        import_target(target),
        factory=factory,
        max_batch_size=max_batch_size,
        batch_timeout_s=batch_timeout_s,
        **options,
    )
    priority = isolation_of(definition.name)
    if priority is None:
        return definition
    recipe = TargetRecipe(target, factory, max_batch_size, batch_timeout_s)
    return isolated(definition, recipe, priority)
