"""What every ``Engine`` call stands on: settings and model definitions, the registry and the
call layer while running, loading and unloading models, and submitting a job and reading
its events against the deadline.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager

import anyio

from localinfer import openmp
from localinfer.calls.calls import Calls
from localinfer.calls.deadline import events_within
from localinfer.client.results import (
    ModelInfo,
    ModelList,
    Stats,
    statistics_from,
)
from localinfer.config import Settings, load_settings
from localinfer.errors import ConfigurationError
from localinfer.inprocess import InProcessService, Models, model_definitions
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.runtime.model import ServedModel
from localinfer.runtime.registry import ModelRegistry


class EngineBase(InProcessService):
    """The engine's running registry and call layer, and the jobs every call submits."""

    kind = "engine"

    def __init__(
        self,
        models: Models = (),
        *,
        device: str = "auto",
        workers: int = 1,
        request_timeout_s: float | None = None,
        ready_timeout_s: float = 300.0,
        settings: Settings | None = None,
        **setting_overrides: object,
    ):
        self.settings = settings or load_settings(**setting_overrides)
        self.device, self.workers = device, workers
        self.definitions = model_definitions(
            models, device=device, workers=workers, settings=self.settings
        )
        #: deadline of one call (``None``: none; an interrupted cell cancels anyway)
        self.request_timeout_s = request_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self._registry: ModelRegistry | None = None
        self._calls: Calls | None = None
        super().__init__()

    def __repr__(self) -> str:
        state = "running" if self._registry is not None else "stopped"
        return f"Engine({', '.join(d.name for d in self.definitions)}, {state})"

    # -- lifecycle -----------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[EngineBase]:
        async with ModelRegistry(
            drain_timeout_s=self.settings.drain_timeout_s,
            hang_grace_s=self.settings.hang_grace_s,
            max_abandoned_workers=self.settings.max_abandoned_workers,
            load_timeout_s=self.settings.load_timeout_s,
        ) as registry:
            for definition in self.definitions:
                registry.add(definition)
            try:
                await registry.wait_ready(self.ready_timeout_s)
            except TimeoutError:
                raise TimeoutError(
                    f"the models did not load within {self.ready_timeout_s:g} s"
                ) from None
            self._registry, self._calls = registry, Calls(registry, self.settings)
            try:
                yield self
            finally:
                self._registry = self._calls = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise RuntimeError(
                "the engine is not running: use 'async with Engine(...)' or 'await engine.start()'"
            )
        return self._registry

    @property
    def calls(self) -> Calls:
        """The call layer the HTTP routes use too: limits, defaults, model choice."""
        if self._calls is None:
            self.registry  # noqa: B018 -- raises, saying how to start the engine
        assert self._calls is not None
        return self._calls

    # -- models --------------------------------------------------------------------------

    def models(self) -> ModelList:
        return ModelList(tuple(ModelInfo(m.name, m.definition.task) for m in self.registry))

    def stats(self) -> Stats:
        """The same numbers ``/v1/stats`` reports."""
        models = {name: statistics_from(raw) for name, raw in self.calls.stats().items()}
        return Stats(models, openmp=openmp.describe())

    async def load(
        self,
        model: object,
        *,
        name: str | None = None,
        device: str | None = None,
        workers: int | None = None,
    ) -> ModelInfo:
        """Start serving one more model (any ``models=`` form) and wait until it has loaded."""
        (definition,) = model_definitions(
            {name: model} if name else [model],
            device=device or self.device,
            workers=workers or self.workers,
            settings=self.settings,
        )
        served = self.registry.add(definition)
        try:
            with anyio.fail_after(self.ready_timeout_s):
                while not served.ready:
                    if not served.can_serve:
                        errors = sorted({w.error for w in served.workers if w.error})
                        raise ConfigurationError(
                            f"model {served.name!r} failed to load: {'; '.join(errors)}"
                        )
                    await served.wait_changed()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.registry.remove(served.name)
            raise
        return ModelInfo(served.name, definition.task)

    async def unload(self, name: str) -> None:
        """Stop serving ``name``; its handlers are closed in their threads."""
        await self.registry.remove(name)

    def _model(self, name: str | None, task: str) -> ServedModel:
        return self.calls.model(name, task)

    # -- jobs ----------------------------------------------------------------------------

    def _events(self, job: Job) -> AsyncGenerator[Chunk | Done, None]:
        """The job's events against the deadline; leaving early cancels the job."""
        return events_within(job, self.request_timeout_s)

    async def _run(self, model: ServedModel, payload: object) -> tuple[Job, object, list[object]]:
        """Submit ``payload``; its final value and any chunks streamed before it."""
        job = Calls.submit(model, payload)
        chunks: list[object] = []
        async with aclosing(self._events(job)) as events:
            async for event in events:
                if isinstance(event, Done):
                    return job, event.value, chunks
                chunks.append(event.value)
        raise AssertionError("a job's events end with Done")  # pragma: no cover

    async def _stream(
        self, name: str, payload: Callable[[ServedModel], object]
    ) -> AsyncGenerator[object, None]:
        served = self.registry.get(name)
        async with aclosing(self._events(served.submit(payload(served)))) as events:
            async for event in events:
                if isinstance(event, Chunk) or event.value is not None:
                    yield event.value
