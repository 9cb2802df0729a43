"""A model replica: one Ray Serve replica running localinfer's runtime for one model.

Each replica is a process with its own event loop, registry and device-bound worker
threads (on the GPUs Ray gave it, through ``CUDA_VISIBLE_DEVICES``). The ingress calls
:meth:`ModelReplica.stream` or :meth:`ModelReplica.once` through a ``DeploymentHandle``;
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
from localinfer.errors import LocalInferError, ModelNotReady
from localinfer.handlers.base import Handler
from localinfer.log import configure_logging
from localinfer.ray import wire
from localinfer.ray.board import POST_EVERY_S
from localinfer.ray.spec import RayAppConfig, definition_for
from localinfer.runtime.job import Chunk, Done
from localinfer.runtime.model import ModelDefinition, ServedModel
from localinfer.runtime.registry import ModelRegistry
from localinfer.server.app import local_registry
from localinfer.server.telemetry import device_telemetry

logger = logging.getLogger(__name__)


def remote_only(index: int, device: str) -> Handler:
    """The handler factory of a definition sent to the ingress: its models run elsewhere."""
    raise ModelNotReady("this model runs in Ray Serve replicas, not in the ingress")


class ModelReplica:
    """The body of a model's Serve deployment (wrapped by :func:`localinfer.ray.build_app`)."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, config: dict[str, Any], name: str, board: Any = None
    ) -> None:
        app = RayAppConfig.model_validate(config)
        settings = app.load_settings()
        configure_logging(settings.log_level)
        source = next(s for s in app.sources() if s.name == name)
        # resolving a catalog model reads files (and may download): off the loop
        definition = await anyio.to_thread.run_sync(definition_for, source, settings)
        self._definition = definition
        self._stop = asyncio.Event()
        self._hosted: asyncio.Future[ServedModel] = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._host(definition, settings))]
        self.model = await self._hosted
        await self._registry.wait_ready(settings.request_timeout_s)
        self._replica = _replica_id()
        if board is not None:
            self._tasks.append(asyncio.create_task(self._post_reports(board)))
        logger.info("replica %s of %s ready", self._replica, name)

    async def _host(self, definition: ModelDefinition, settings: Settings) -> None:
        """Keep the registry open (entered and left in this one task) until shutdown."""
        try:
            async with local_registry(settings) as registry:
                self._registry: ModelRegistry = registry
                self._hosted.set_result(registry.add(definition))
                await self._stop.wait()
        except BaseException as exc:
            if not self._hosted.done():
                self._hosted.set_exception(exc)
            raise

    async def __del__(self) -> None:
        """Serve's graceful shutdown: drain the model (the registry's drain timeout)."""
        self._stop.set()
        for task in self._tasks[1:]:
            task.cancel()
        with contextlib.suppress(BaseException):
            await self._tasks[0]

    def check_health(self) -> None:
        """Serve restarts a replica whose model can no longer serve (every worker failed)."""
        if not self.model.can_serve and not self.model.draining:
            raise ModelNotReady(f"model {self.model.name!r} cannot serve on this replica")

    # -- calls from the ingress ------------------------------------------------------------

    async def describe(self) -> ModelDefinition:
        """The model's definition for the ingress (prepare, task, media type), no handler."""
        return dataclasses.replace(self._definition, create_handler=remote_only)

    async def once(self, payload: Any, request_id: str) -> wire.WireEvent:
        """Run a job that answers once (embeddings, rerank): one round trip."""
        try:
            job = self.model.submit(payload, request_id=request_id)
        except LocalInferError as exc:
            return wire.failed(exc)
        try:
            while not isinstance(event := await job.next_event(), Done):
                pass
            return wire.done(event.value, job.queue_ms, job.run_ms)
        except LocalInferError as exc:
            return wire.failed(exc)
        finally:
            job.release("the ingress went away")

    async def stream(self, payload: Any, request_id: str) -> AsyncIterator[list[wire.WireEvent]]:
        """Run a job, yielding its events in bursts; closing this generator (the ingress
        cancelled the call: its client left, or its deadline passed) cancels the job."""
        try:
            job = self.model.submit(payload, request_id=request_id)
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

    def report(self) -> dict[str, Any]:
        """This replica's state, for the board: the model's health, counters, devices."""
        model = self.model
        return {
            **model.health(),
            "stats": model.stats.snapshot(),
            "devices": device_telemetry(),
        }

    async def _post_reports(self, board: Any) -> None:
        name = self.model.name
        while True:
            try:
                report = await anyio.to_thread.run_sync(self.report)
                await board.post.remote(name, self._replica, report)
            except Exception:  # the board restarting: the next post will do
                logger.debug("replica %s: posting to the board failed", exc_info=True)
            await asyncio.sleep(POST_EVERY_S)


def _replica_id() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside Serve (tests calling the class directly)
        return "local"
