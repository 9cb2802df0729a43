"""What the in-process faces share: turning ``models=`` into definitions, and running a
service in a task of its own so that it outlives the notebook cell that started it.

``Server`` (HTTP in the running loop) and ``Engine`` (no HTTP) both accept the same
``models=``: catalog aliases, cached repo ids and local paths (``resolve.py``), a user's
objects and classes (``targets.py``), or ready :class:`ModelDefinition` s; a mapping
names them.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypeAlias

from localinfer.config import Settings
from localinfer.errors import ConfigurationError
from localinfer.runtime.devices import resolve_devices
from localinfer.runtime.loop import running_backend
from localinfer.runtime.model import ModelDefinition

#: one model: an alias / repo id / path, a user's class, instance, factory or a list of
#: instances (replicas), or a ready definition
ModelSpec: TypeAlias = object
#: one model, several, or several by name (``{"chat": "qwen2.5-0.5b-instruct", ...}``)
Models: TypeAlias = "ModelSpec | Sequence[ModelSpec] | Mapping[str, ModelSpec]"


def _entries(models: Models) -> list[tuple[str | None, object]]:
    if isinstance(models, Mapping):
        return [(str(name), spec) for name, spec in models.items()]
    if isinstance(models, list | tuple):
        return [(None, spec) for spec in models]
    return [(None, models)]


def model_definitions(
    models: Models, *, device: str, workers: int, settings: Settings
) -> list[ModelDefinition]:
    """A definition per model; names are checked for clashes before anything loads."""
    devices = resolve_devices(device)
    definitions = [
        _definition(spec, name, devices=devices, workers=workers, settings=settings)
        for name, spec in _entries(models)
    ]
    clashes = [name for name, count in Counter(d.name for d in definitions).items() if count > 1]
    if clashes:
        raise ConfigurationError(
            f"two models are named {', '.join(map(repr, clashes))}: name them with "
            "models={'name': ...}, or pass replicas of one model as one list inside the list"
        )
    return definitions


def _definition(
    spec: object,
    name: str | None,
    *,
    devices: Sequence[str],
    workers: int,
    settings: Settings,
) -> ModelDefinition:
    if isinstance(spec, ModelDefinition):
        return spec if name is None else replace(spec, name=name)
    if isinstance(spec, str | os.PathLike):
        from localinfer.plugins import discover
        from localinfer.runtime.resolve import model_definition, resolve

        resolved = resolve(os.fspath(spec), discover())
        if name is not None:
            resolved = replace(resolved, name=name)
        return model_definition(
            resolved,
            devices=devices,
            workers_per_device=workers,
            max_queue=settings.max_queue,
            stream_buffer=settings.stream_buffer,
            isolation=settings.isolation(resolved.name),
        )
    from localinfer.runtime.targets import user_code_definition

    return user_code_definition(
        spec,
        name=name,
        devices=devices,
        workers_per_device=workers,
        max_queue=settings.max_queue,
        stream_buffer=settings.stream_buffer,
    )


class Background:
    """Keeps an async context open in a task of its own until :meth:`stop`.

    ``async with`` ties a service to one block, hence to one notebook cell; Jupyter's
    loop keeps running between cells, so a task started on it can hold the service open
    while later cells use it. asyncio only (a trio program has its nursery for this).
    """

    def __init__(self, open_context: Callable[[], AbstractAsyncContextManager[object]]):
        self._open_context = open_context
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if running_backend() != "asyncio":
            raise RuntimeError("start() needs an asyncio loop; under trio use 'async with'")
        if self.running:
            return
        started, self._stop = asyncio.Event(), asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._hold(started, self._stop))
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the starting cell was interrupted: give everything back
            waiter.cancel()
            await self._cancel()
            raise
        waiter.cancel()
        if self._task.done():
            task, self._task = self._task, None
            task.result()  # raises what failed the start

    async def _hold(self, started: asyncio.Event, stop: asyncio.Event) -> None:
        async with self._open_context():
            started.set()
            await stop.wait()

    async def stop(self) -> None:
        """Leave the context (its cleanup runs) and wait until it has."""
        task, self._task = self._task, None
        if task is None:
            return
        assert self._stop is not None
        self._stop.set()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:  # this caller was interrupted: finish the cleanup anyway
            await asyncio.shield(task)
            raise

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def unwrap_group(exc: BaseException) -> BaseException:
    """The single error inside (nested) exception groups: what a notebook user should see."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class InProcessService:
    """The lifecycle ``Engine`` and ``Server`` share: ``async with`` for a block, or
    :meth:`start` / :meth:`stop` to keep running across notebook cells.

    Subclasses provide ``_running()``, the context manager that holds the service up.
    """

    #: what the service is called in messages ("engine", "server")
    kind = "service"

    def __init__(self) -> None:
        self._context: AbstractAsyncContextManager[Any] | None = None
        self._background = Background(self._running)

    def _running(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self._context is not None or self._background.running:
            raise RuntimeError(f"the {self.kind} is already running")
        context = self._running()
        service: Self = await context.__aenter__()
        self._context = context
        return service

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        context, self._context = self._context, None
        assert context is not None
        return await context.__aexit__(exc_type, exc, tb)

    async def start(self) -> Self:
        """Run in a background task until :meth:`stop` (asyncio: Jupyter's loop)."""
        if self._context is not None:
            raise RuntimeError(f"the {self.kind} is already running")
        await self._background.start()
        return self

    async def stop(self) -> None:
        await self._background.stop()
