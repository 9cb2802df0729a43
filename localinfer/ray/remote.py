"""Models whose workers run in Ray Serve replicas, seen by the routes as local ones.

:class:`RemoteModel` is a :class:`~localinfer.runtime.model.ServedModel` with no worker
of its own: :meth:`RemoteModel.submit` returns an ordinary :class:`Job` on the ingress's
loop and a task feeds it from the replica's events (``DeploymentHandle`` calls). The
routes, the deadlines, the disconnect watch and the error mapping stay as they are; a
job cancelled here (client gone, deadline) cancels the call, and so the job on its
replica.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from localinfer.config import ReplicaSettings, Settings
from localinfer.errors import (
    HandlerFailed,
    LocalInferError,
    NotSupportedHere,
    QueueFull,
    ReplicaLost,
    ShuttingDown,
)
from localinfer.ray import reports, wire
from localinfer.ray.coalesce import Call, CallCoalescer, CallLimits
from localinfer.runtime.job import Chunk, Done, Failure, Job
from localinfer.runtime.loop import LoopHandle
from localinfer.runtime.model import ModelDefinition, ServedModel
from localinfer.runtime.registry import ModelRegistry
from localinfer.server.app import registry_options

logger = logging.getLogger(__name__)

#: tasks whose jobs change nothing, so running one twice is safe: a call whose replica
#: dies under it is retried on another
RETRIED_TASKS = frozenset({"embeddings", "rerank"})
#: tries of a retried call whose replica dies under it
UNARY_TRIES = 3
#: how often the ingress reads the replicas' board
READ_BOARD_EVERY_S = 1.0


def as_call_error(exc: BaseException) -> LocalInferError:
    """A failed ``DeploymentHandle`` call, in the error hierarchy (mapped to HTTP once)."""
    if isinstance(exc, LocalInferError):
        return exc
    from ray import exceptions as ray_errors
    from ray.serve import exceptions as serve_errors

    if isinstance(exc, serve_errors.BackPressureError):
        return QueueFull(f"every replica is busy and Serve's queue is full: {exc}")
    if isinstance(exc, ray_errors.RayTaskError):
        cause = exc.as_instanceof_cause()  # type: ignore[no-untyped-call]
        if isinstance(cause, LocalInferError):
            return cause
    if isinstance(
        exc,
        (
            ray_errors.RayActorError,
            ray_errors.ActorUnavailableError,
            serve_errors.ReplicaUnavailableError,
            serve_errors.DeploymentUnavailableError,
        ),
    ):
        return ReplicaLost(
            "the replica serving this request died or became unreachable; Ray Serve "
            f"restarts it, retry the request ({type(exc).__name__})"
        )
    return HandlerFailed(f"{type(exc).__name__}: {exc}")


def _is_replica_lost(exc: BaseException) -> bool:
    return isinstance(as_call_error(exc), ReplicaLost)


class RemoteModel(ServedModel):
    """A model served by a Serve deployment; every method runs on the ingress's loop."""

    def __init__(
        self,
        description: wire.Description,
        handle: Any,
        *,
        loop: LoopHandle,
        spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
        start_soon: Callable[..., object],
        deployment: ReplicaSettings,
    ):
        super().__init__(description.definition, loop=loop, spawn=spawn)
        #: one round trip per job (no stream generator): the model never streams
        self._unary = description.unary
        self._stream = handle.options(method_name="stream", stream=True)
        self._once = handle.options(method_name="once_many")
        self._start_soon = start_soon
        #: unary jobs share calls when they pile up
        self.unary_calls = CallCoalescer(
            self._send_once,
            CallLimits.of(deployment),
            replicas=lambda: sum(1 for r in self.replicas if r.get("ready")),
            start_soon=lambda *args: _unlinked(start_soon, *args),
            model=self.name,
        )
        #: a cancel scope per job whose call is in flight
        self._calls: dict[Job, anyio.CancelScope] = {}
        #: the replicas' reports (see :mod:`localinfer.ray.board`)
        self.replicas: list[dict[str, Any]] = []

    def start(self) -> None:
        """Nothing to start: the replicas are Serve's."""

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking jobs; calls in flight may finish within the drain timeout."""
        self._closing = True
        with anyio.move_on_after(drain_timeout_s):
            while self._live:
                await anyio.sleep(0.05)
        for job in list(self._live):
            job.abort(ShuttingDown(f"model {self.name!r}: the ingress is shutting down"))
        self._stopped = True

    def begin_drain(self, drain_timeout_s: float = 30.0) -> None:
        self._closing = True

    # -- state -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Not draining, and a replica is ready (Serve starts the ingress after one is)."""
        if self._closing:
            return False
        return not self.replicas or any(r.get("ready") for r in self.replicas)

    @property
    def can_serve(self) -> bool:
        return not self._closing

    @property
    def engine(self) -> str | None:
        """What its replicas serve it with (``/v1/models``, ``/health``, ``/v1/stats``)."""
        return reports.engine(self.replicas)

    def health(self) -> dict[str, Any]:
        """As a local model's, from its replicas' reports: ``ready`` only while every
        replica is (a replica degraded makes ``/health`` say so, as a worker does on plain
        ``localinfer serve``); ``/ready`` asks :attr:`ready` (some replica can serve)."""
        replicas = reports.model_health(self.replicas)
        return {
            "task": self.definition.task,
            "ready": self.ready and not replicas["degraded_replicas"],
            "draining": self._closing,
            "capabilities": self.capabilities,
            "engine": self.engine,
            **replicas,
        }

    def replica_stats(self) -> dict[str, Any]:
        stats = reports.model_stats(self.replicas)
        if self._unary:  # how well its jobs shared calls (see localinfer.ray.coalesce)
            stats["unary_calls"] = {
                "calls": self.unary_calls.calls,
                "jobs": self.unary_calls.jobs,
            }
        return stats

    # -- requests --------------------------------------------------------------------------

    def submit(self, payload: Any, *, request_id: str | None = None) -> Job:
        if self._closing:
            raise ShuttingDown(f"model {self.name!r} is shutting down")
        job = Job(
            payload,
            model=self.name,
            request_id=request_id or f"{self.name}-{time.perf_counter_ns()}",
            stream_buffer=self.definition.stream_buffer,
            stall_s=self.definition.stream_stall_s,
            on_finished=self._remote_job_finished,
        )
        self.stats.submitted += 1
        self._live.add(job)
        self.last_used = time.monotonic()
        scope = self._calls[job] = anyio.CancelScope()
        # the task in an empty context, as its handle calls (see _unlinked): nothing of
        # Serve's request context ties it to the HTTP request that submitted the job
        _unlinked(self._start_soon, self._call, job, scope)
        return job

    def _remote_job_finished(self, job: Job) -> None:
        self._job_finished(job)
        scope = self._calls.pop(job, None)
        if scope is not None and job.cancelled:
            scope.cancel()  # the call ends, and Serve cancels it on its replica

    async def _call(self, job: Job, scope: anyio.CancelScope) -> None:
        """Feed ``job`` from its replica. Never raises, cancelled or not: this task shares
        the registry's task group, which an escaping error would tear down with every
        model in it, and so would a cancellation not its own scope's (anyio cancels a
        group whose child ends cancelled)."""
        try:
            with scope:
                await self._feed(job, scope)
        except asyncio.CancelledError:
            # cancelled from outside as well as by its job (or by the registry's shutdown,
            # which waits for nothing more from this task): this call ends, nothing else
            job.deliver(Failure(HandlerFailed("the call was cancelled")))
        self._calls.pop(job, None)

    async def _feed(self, job: Job, scope: anyio.CancelScope) -> None:
        try:
            if self._unary:
                await self._call_once(job)
            else:
                await self._call_stream(job)
        except Exception as exc:
            error = as_call_error(exc)
            if isinstance(error, ReplicaLost):
                logger.warning("request %s: %s", job.request_id, error.message)
            job.deliver(Failure(error))
        except asyncio.CancelledError:
            if scope.cancel_called:
                raise  # ours (the job was cancelled): the scope ends it
            # Serve cancelled the call itself: it ties calls made while a request is
            # served to that request, and cancels them when its client disconnects
            job.deliver(Failure(HandlerFailed("the call was cancelled by Ray Serve")))

    async def _call_once(self, job: Job) -> None:
        """One round trip: the job's events come back together (a Ray streaming call
        costs several actor messages; most jobs of a non-streaming model are one event)."""
        tries = UNARY_TRIES if self.definition.task in RETRIED_TASKS else 1
        for attempt in range(1, tries + 1):
            try:
                events = await self.unary_calls.call(job.payload, job.request_id)
            except Exception as exc:
                if attempt < tries and _is_replica_lost(exc):
                    logger.warning("request %s: replica lost (%s); retrying", job.request_id, exc)
                    continue
                raise
            for event in events:
                self._deliver(job, event)
            return

    async def _send_once(self, calls: list[Call]) -> list[list[wire.WireEvent]]:
        """One handle call for ``calls``; cancelled, it is cancelled on its replica."""
        response = _unlinked(self._once.remote, calls)
        try:
            events: list[list[wire.WireEvent]] = await response
        except Exception:
            raise
        except BaseException:
            response.cancel()
            raise
        return events

    async def _call_stream(self, job: Job) -> None:
        generator = _unlinked(self._stream.remote, job.payload, job.request_id)
        finished = False
        try:
            async for burst in generator:
                for event in burst:
                    finished = self._deliver(job, event)
            if not finished:
                raise ReplicaLost("the replica's stream ended without a result")
        finally:
            if not finished:
                generator.cancel()

    def _deliver(self, job: Job, event: wire.WireEvent) -> bool:
        """Hand one replica event to the job; ``True`` once it is the final one."""
        kind = event[0]
        if kind == wire.CHUNK:
            if job.first_output_at is None:
                job.started_at = job.first_output_at = time.perf_counter()
            job.deliver(Chunk(event[1]))
            return False
        if kind == wire.DONE:
            queue_ms = event[2]
            if job.started_at is None:
                job.started_at = job.submitted_at + (queue_ms or 0.0) / 1e3
            job.deliver(Done(event[1]))
            return True
        job.deliver(Failure(event[1]))
        return True


def _cannot_load(name: str) -> NotSupportedHere:
    return NotSupportedHere(
        f"cannot load {name!r}: on Ray Serve the served models are set by the "
        "application's config (localinfer serve --ray --models ..., or a serve config "
        "file); redeploy the application to change them"
    )


def _unlinked(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` in an empty context: Serve does not tie the handle call to the
    HTTP request being served (it would cancel it, natively, when that client leaves).
    The job's own cancellation (disconnect, deadline) cancels the call instead."""
    return contextvars.Context().run(call, *args)


class RemoteRegistry(ModelRegistry):
    """The ingress's registry: one :class:`RemoteModel` per model deployment, and the
    models configured to run in the ingress itself (``in_ingress``) as local ones."""

    def __init__(
        self,
        settings: Settings,
        handles: dict[str, Any],
        board: Any = None,
        in_ingress: frozenset[str] = frozenset(),
        deployments: dict[str, ReplicaSettings] | None = None,
    ):
        super().__init__(**registry_options(settings))
        self._settings = settings
        #: the settings of the deployment serving each model (its own unless multiplexed)
        self._deployments = deployments or {}
        self._handles = handles
        self._board = board
        self._in_ingress = in_ingress
        self._calls_group: TaskGroup | None = None

    async def __aenter__(self) -> RemoteRegistry:
        await super().__aenter__()
        assert self._task_group is not None and self._loop is not None
        for name, handle in self._handles.items():
            # waits for a replica to be up: the definition comes from where the model runs
            description: wire.Description = await handle.options(method_name="describe").remote()
            self._models[name] = RemoteModel(
                description,
                handle,
                loop=self._loop,
                spawn=self._spawn,
                start_soon=self._task_group.start_soon,
                deployment=self._deployments.get(name) or self._settings.replica_settings(name),
            )
        if self._board is not None:
            self._task_group.start_soon(self._read_board)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await super().__aexit__(exc_type, exc, tb)

    def add(self, definition: ModelDefinition) -> ServedModel:
        """Only the ingress's own models, at startup: the rest are Serve deployments."""
        if definition.name in self._in_ingress and definition.name not in self:
            return super().add(definition)
        raise _cannot_load(definition.name)

    def check_can_load(self, name: str) -> None:
        if name not in self:
            raise _cannot_load(name)

    async def remove(self, name: str) -> None:
        self.get(name)  # 404 for a model not served
        raise NotSupportedHere(
            f"cannot unload {name!r}: on Ray Serve the served models are set by the "
            "application's config, and Serve scales their replicas (min_replicas: 0 "
            "lets an idle model's replicas go); redeploy the application to change them"
        )

    async def _read_board(self) -> None:
        while True:
            try:
                posted: dict[str, list[dict[str, Any]]] = await self._board.read.remote()
            except Exception:
                logger.debug("reading the replicas' board failed", exc_info=True)
            else:
                for model in self._models.values():
                    if isinstance(model, RemoteModel):
                        model.replicas = posted.get(model.name, [])
            await anyio.sleep(READ_BOARD_EVERY_S)
