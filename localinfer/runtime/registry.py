"""The set of served models, and the task group that supervises their workers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from localinfer.errors import (
    ConfigurationError,
    InvalidRequest,
    ModelNotFound,
    NoCapabilityMatch,
    ShuttingDown,
)
from localinfer.runtime.context import DEFAULT_CALL_TIMEOUT_S, CallContext, CallGraph
from localinfer.runtime.loop import LoopHandle
from localinfer.runtime.model import ModelDefinition, ServedModel
from localinfer.runtime.supervision import (
    DEFAULT_HANG_GRACE_S,
    DEFAULT_LOAD_TIMEOUT_S,
    DEFAULT_MAX_ABANDONED,
)


class ModelRegistry:
    """Models by name. Use as ``async with ModelRegistry() as registry:`` on the loop."""

    def __init__(
        self,
        *,
        drain_timeout_s: float = 30.0,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        hang_grace_s: float = DEFAULT_HANG_GRACE_S,
        max_abandoned_workers: int = DEFAULT_MAX_ABANDONED,
        load_timeout_s: float | None = DEFAULT_LOAD_TIMEOUT_S,
        worker_nice: int = 0,
    ):
        self._models: dict[str, ServedModel] = {}
        self._task_group: TaskGroup | None = None
        self._loop: LoopHandle | None = None
        self.drain_timeout_s = drain_timeout_s
        self.call_timeout_s = call_timeout_s
        #: a worker still in its handler this long after its requests ended is replaced
        self.hang_grace_s = hang_grace_s
        #: per model, how many such stuck threads may be left behind
        self.max_abandoned_workers = max_abandoned_workers
        #: a worker whose load() runs longer has failed (its thread is abandoned)
        self.load_timeout_s = load_timeout_s
        #: how much lower than the loop's the worker threads' priority is (see runtime.priority)
        self.worker_nice = worker_nice
        self.draining = False
        #: handler → model calls in progress, to refuse those that would deadlock
        self.calls = CallGraph()
        #: for a request naming a model that is not loaded: its definition, to load it
        #: now, or None (see :meth:`acquire`; installed by the run-time lifecycle)
        self.loader: Callable[[str], ModelDefinition | None] | None = None

    async def __aenter__(self) -> ModelRegistry:
        self._loop = LoopHandle.current()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._spawn_send, spawn_receive = anyio.create_memory_object_stream[
            Callable[[], Coroutine[Any, Any, None]]
        ](1024)
        self._task_group.start_soon(self._supervise, spawn_receive)
        return self

    async def _supervise(
        self, requests: MemoryObjectReceiveStream[Callable[[], Coroutine[Any, Any, None]]]
    ) -> None:
        """Start background work asked for from plain loop callbacks (which cannot start tasks)."""
        assert self._task_group is not None
        async with requests:
            async for fn in requests:
                self._task_group.start_soon(fn)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.stop_all()
        finally:
            self._task_group.cancel_scope.cancel()
            result = await self._task_group.__aexit__(exc_type, exc, tb)
            self._task_group = None
        return result

    def _spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``fn`` as a task; callable from worker-state callbacks on the loop."""
        try:
            self._spawn_send.send_nowait(fn)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # shutting down, or a restart storm: the supervisor has enough to do

    def check_can_load(self, name: str) -> None:
        """Raise if ``name`` cannot be loaded here at run time (checked before resolving
        it); a local registry can load anything."""

    def add(self, definition: ModelDefinition) -> ServedModel:
        """Start serving a model: its workers start loading at once."""
        if self._loop is None:
            raise RuntimeError("ModelRegistry used outside 'async with'")
        if self.draining:
            raise ShuttingDown(f"cannot load {definition.name!r}: the server is shutting down")
        if definition.name in self._models:
            raise ConfigurationError(f"a model named {definition.name!r} is already served")
        context = CallContext(
            definition.name,
            lookup=self.get,
            graph=self.calls,
            loop=self._loop,
            default_timeout_s=self.call_timeout_s,
        )
        model = ServedModel(
            definition,
            loop=self._loop,
            spawn=self._spawn,
            context=context,
            hang_grace_s=self.hang_grace_s,
            max_abandoned=self.max_abandoned_workers,
            load_timeout_s=self.load_timeout_s,
            worker_nice=self.worker_nice,
        )
        self._models[definition.name] = model
        model.start()
        return model

    async def remove(self, name: str) -> None:
        """Stop a model and forget it; its handlers are closed in their threads."""
        model = self.get(name)
        del self._models[name]
        await model.stop(self.drain_timeout_s)

    def begin_drain(self) -> None:
        """Shutdown begins: every model stops taking jobs and finishes those it has within
        ``drain_timeout_s``; past that, those still unanswered get a 503. Returns at once."""
        self.draining = True
        for model in self._models.values():
            model.begin_drain(self.drain_timeout_s)

    async def stop_all(self) -> None:
        """Drain every model (within what is left of the drain, if it has begun) and stop it."""
        self.draining = True
        models = list(self._models.values())
        self._models.clear()
        async with anyio.create_task_group() as tg:
            for model in models:
                tg.start_soon(model.stop, self.drain_timeout_s)

    def get(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(
                f"the model {name!r} does not exist; served models: {known}", param="model"
            ) from None

    def acquire(self, name: str, task: str | None = None) -> ServedModel:
        """The model to serve a request for ``name``, loading it if the loader knows it
        (and, given a ``task``, only if it serves that task).

        A model loaded here is returned at once, its workers still loading: the request
        waits in its queue, so the load time shows in the request's ``queue_ms``.
        """
        model = self._models.get(name)
        if model is not None:
            _check_task(name, model.definition.task, task)
            return model
        definition = self.loader(name) if self.loader is not None else None
        if definition is None:
            model = self.get(name)
            _check_task(name, model.definition.task, task)
            return model
        _check_task(name, definition.task, task)
        return self.add(definition)

    def select(self, wanted: Mapping[str, str]) -> ServedModel:
        """The model whose capabilities include every ``key=value`` in ``wanted``.

        Of several, one that can serve with the shortest queue (then by name).
        """
        matches = [
            m
            for m in self._models.values()
            if all(m.capabilities.get(k) == v for k, v in wanted.items())
        ]
        if not matches:
            asked = ",".join(f"{k}={v}" for k, v in wanted.items())
            known = {m.name: m.capabilities for m in self._models.values()}
            listing = "; ".join(
                f"{name}: " + ",".join(f"{k}={v}" for k, v in caps.items())
                for name, caps in sorted(known.items())
            )
            raise NoCapabilityMatch(
                f"no served model offers {asked}; served: {listing or 'none'}",
                param="capability",
                known=known,
            )
        return min(matches, key=lambda m: (not m.can_serve, m.queue.depth, m.name))

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(list(self._models.values()))

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    @property
    def ready(self) -> bool:
        return all(model.ready for model in self._models.values())

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until every model's workers have loaded (raise TimeoutError after ``timeout_s``)."""
        with anyio.fail_after(timeout_s):
            while not self.ready:
                pending = [m for m in self._models.values() if not m.ready]
                if any(not m.can_serve for m in pending):
                    broken = [m.name for m in pending if not m.can_serve]
                    raise ConfigurationError(f"model(s) failed to load: {', '.join(broken)}")
                await pending[0].wait_changed()

    def health(self) -> dict[str, Any]:
        return {model.name: model.health() for model in self._models.values()}


def _check_task(name: str, serves: str, task: str | None) -> None:
    """The one rule: a request for ``task`` sent to a model of another task is refused."""
    if task is not None and serves != task:
        raise InvalidRequest(f"the model {name!r} serves {serves}, not {task}", param="model")
