"""A model replica: one Ray Serve replica running localinfer's runtime for one model.

Each replica is a process with its own event loop, registry and device-bound worker
threads (on the GPUs Ray gave it, through ``CUDA_VISIBLE_DEVICES``). The ingress calls
:meth:`ModelReplica.stream` or :meth:`ModelReplica.once_many` through a ``DeploymentHandle``;
the job runs here exactly as it would in ``localinfer serve``, so backpressure (429 with
``Retry-After``), deadlines and cancellation keep their meaning.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread

from localinfer.config import Settings
from localinfer.errors import HandlerFailed, LocalInferError, ModelNotFound, ModelNotReady
from localinfer.handlers.base import Handler
from localinfer.log import configure_logging
from localinfer.ray import wire
from localinfer.ray.board import POST_EVERY_S
from localinfer.ray.spec import RayAppConfig, answers_once, definition_for
from localinfer.runtime.job import Chunk, Done
from localinfer.runtime.model import ServedModel
from localinfer.runtime.registry import ModelRegistry
from localinfer.server.app import local_registry
from localinfer.server.telemetry import device_telemetry

logger = logging.getLogger(__name__)


def remote_only(index: int, device: str) -> Handler:
    """The handler factory of a definition sent to the ingress: its models run elsewhere."""
    raise ModelNotReady("this model runs in Ray Serve replicas, not in the ingress")


class ModelReplica:
    """The body of a model's Serve deployment (wrapped by :func:`localinfer.ray.build_app`).

    Serves ``name``; or, given ``multiplexed`` names, whichever of them each call asks
    for (Serve's model multiplexing: a few models loaded per replica, the least recently
    used one unloaded to make room, calls routed to replicas that hold their model).
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self,
        config: dict[str, Any],
        name: str,
        board: Any = None,
        multiplexed: list[str] | None = None,
        models_per_replica: int = 2,
    ) -> None:
        app = RayAppConfig.model_validate(config)
        self._settings = settings = app.load_settings()
        configure_logging(settings.log_level)
        self._sources = {source.name: source for source in app.sources()}
        self._stop = asyncio.Event()
        hosted: asyncio.Future[ModelRegistry] = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._host(settings, hosted))]
        self._registry = await hosted
        self._replica = _replica_id()
        self._load: Any = None
        if multiplexed is None:
            self.model = await self._add(name)
        else:
            from ray import serve

            async def load(model: str) -> LoadedModel:
                if model not in multiplexed:
                    raise ModelNotFound(f"the model {model!r} is not served here", param="model")
                return LoadedModel(self._registry, await self._add(model))

            self._load = serve.multiplexed(max_num_models_per_replica=models_per_replica)(load)
        if board is not None:
            self._tasks.append(asyncio.create_task(self._post_reports(board)))
        logger.info("replica %s of %s ready", self._replica, name or ", ".join(multiplexed or []))

    async def _add(self, name: str) -> ServedModel:
        """Load ``name`` here and wait for its workers."""
        # resolving a catalog model reads files (and may download): off the loop
        definition = await anyio.to_thread.run_sync(
            definition_for, self._sources[name], self._settings
        )
        model = self._registry.add(definition)
        with anyio.fail_after(self._settings.request_timeout_s):
            while not model.ready:
                if not model.can_serve:
                    raise ModelNotReady(f"model {name!r} failed to load on this replica")
                await model.wait_changed()
        return model

    async def _model(self) -> ServedModel:
        """The model this call is for (loaded now if it is multiplexed and not here)."""
        if self._load is None:
            return self.model
        from ray import serve

        loaded: LoadedModel = await self._load(serve.get_multiplexed_model_id())
        return loaded.model

    async def _host(self, settings: Settings, hosted: asyncio.Future[ModelRegistry]) -> None:
        """Keep the registry open (entered and left in this one task) until shutdown."""
        try:
            async with local_registry(settings) as registry:
                hosted.set_result(registry)
                await self._stop.wait()
        except BaseException as exc:
            if not hosted.done():
                hosted.set_exception(exc)
            raise

    async def __del__(self) -> None:
        """Serve's graceful shutdown: drain the models (the registry's drain timeout)."""
        self._stop.set()
        for task in self._tasks[1:]:
            task.cancel()
        with contextlib.suppress(BaseException):
            await self._tasks[0]

    def check_health(self) -> None:
        """Serve restarts a replica whose model can no longer serve (every worker failed)."""
        for model in self._registry:
            if not model.can_serve and not model.draining:
                raise ModelNotReady(f"model {model.name!r} cannot serve on this replica")

    # -- calls from the ingress ------------------------------------------------------------

    async def describe(self) -> wire.Description:
        """The model's definition for the ingress (prepare, task, media type), no handler."""
        model = await self._model()
        unary = await anyio.to_thread.run_sync(
            answers_once, self._sources[model.name], model.definition.task
        )
        definition = dataclasses.replace(model.definition, create_handler=remote_only)
        return wire.Description(definition, unary)

    async def once_many(self, calls: list[tuple[Any, str]]) -> list[list[wire.WireEvent]]:
        """Run jobs sent in one call (see :mod:`localinfer.ray.coalesce`), side by side as
        if each had come alone; each job's events (for most, just the result) together."""
        answers = await asyncio.gather(
            *(self._once(payload, request_id) for payload, request_id in calls),
            return_exceptions=True,
        )
        return [
            [wire.failed(HandlerFailed(f"{type(a).__name__}: {a}"))]
            if isinstance(a, BaseException)
            else a
            for a in answers
        ]

    async def _once(self, payload: Any, request_id: str) -> list[wire.WireEvent]:
        try:
            job = (await self._model()).submit(payload, request_id=request_id)
        except LocalInferError as exc:
            return [wire.failed(exc)]
        events: list[wire.WireEvent] = []
        try:
            while isinstance(event := await job.next_event(), Chunk):
                events.append((wire.CHUNK, event.value))
            events.append(wire.done(event.value, job.queue_ms, job.run_ms))
        except LocalInferError as exc:
            events.append(wire.failed(exc))
        finally:
            job.release("the ingress went away")
        return events

    async def stream(self, payload: Any, request_id: str) -> AsyncIterator[list[wire.WireEvent]]:
        """Run a job, yielding its events in bursts; closing this generator (the ingress
        cancelled the call: its client left, or its deadline passed) cancels the job."""
        try:
            job = (await self._model()).submit(payload, request_id=request_id)
        except LocalInferError as exc:
            yield [wire.failed(exc)]
            return
        try:
            while True:
                burst: list[wire.WireEvent] = []
                try:
                    event = await job.next_event()
                    while isinstance(event, Chunk):
                        burst.append((wire.CHUNK, event.value))
                        ready = job.chunk_nowait()
                        if ready is None:
                            break
                        event = ready
                except LocalInferError as exc:
                    burst.append(wire.failed(exc))
                    yield burst
                    return
                if isinstance(event, Done):
                    burst.append(wire.done(event.value, job.queue_ms, job.run_ms))
                    yield burst
                    return
                yield burst
        finally:
            job.release("the ingress cancelled the call")

    # -- reports ---------------------------------------------------------------------------

    def reports(self) -> dict[str, dict[str, Any]]:
        """This replica's state per model, for the board: health (abandoned workers and
        threads among it), counters, devices (see :mod:`localinfer.ray.reports`)."""
        devices = device_telemetry()
        return {
            model.name: {
                **model.health(),
                "hung_workers": model.hung_workers,
                "stats": model.stats.snapshot(),
                "devices": devices,
            }
            for model in self._registry
        }

    async def _post_reports(self, board: Any) -> None:
        while True:
            try:
                reports = await anyio.to_thread.run_sync(self.reports)
                for name, report in reports.items():
                    await board.post.remote(name, self._replica, report)
            except Exception:  # the board restarting: the next post will do
                logger.debug("replica %s: posting to the board failed", exc_info=True)
            await asyncio.sleep(POST_EVERY_S)


class LoadedModel:
    """A multiplexed model held by Serve's LRU cache; evicted, it is unloaded here."""

    def __init__(self, registry: ModelRegistry, model: ServedModel) -> None:
        self._registry = registry
        self.model = model

    async def __del__(self) -> None:
        if self.model.name in self._registry:
            await self._registry.remove(self.model.name)


def _replica_id() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside Serve (tests calling the class directly)
        return "local"
