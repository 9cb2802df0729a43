"""A served model: its definition, its queue, its worker threads and their supervision."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from localinfer.errors import ModelNotReady, QueueFull
from localinfer.runtime.job import Job
from localinfer.runtime.loop import LoopHandle
from localinfer.runtime.scheduler import JobQueue, retry_after_seconds
from localinfer.runtime.stats import ModelStats
from localinfer.runtime.worker import DeviceWorker, HandlerFactory, WorkerState

logger = logging.getLogger(__name__)

_MAX_RESTART_DELAY_S = 10.0


@dataclass(frozen=True)
class ModelDefinition:
    """Everything the runtime needs to serve a model. Built by the faces, not by handlers."""

    name: str
    #: ``(worker_index, device) -> Handler``; called inside the worker thread
    create_handler: HandlerFactory
    task: str = "infer"
    devices: tuple[str, ...] = ("cpu",)
    workers_per_device: int = 1
    max_batch_size: int = 1
    batch_window_ms: float = 0.0
    max_queue: int = 256
    #: items a stream may run ahead of its reader before the reader is cut off
    stream_buffer: int = 1024
    #: loop-side validation/normalisation of a payload before it is queued (fast, no I/O)
    prepare: Callable[[Any], Any] | None = None
    #: jobs a one-at-a-time worker may take from the queue in one trip (its fair share)
    prefetch: int = 16
    #: content type of binary (bytes) streams
    media_type: str = "application/octet-stream"
    capabilities: Mapping[str, str] = field(default_factory=dict)

    @property
    def worker_count(self) -> int:
        return len(self.devices) * self.workers_per_device


class ServedModel:
    """A running model. Every method runs on the event loop."""

    def __init__(
        self,
        definition: ModelDefinition,
        *,
        loop: LoopHandle,
        spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
    ):
        if definition.worker_count < 1:
            raise ValueError("a model needs at least one worker")
        self.definition = definition
        self.name = definition.name
        self.stats = ModelStats()
        self.queue = JobQueue(definition.name, definition.max_queue)
        self.workers: list[DeviceWorker] = []
        self.restarts = 0
        self._loop = loop
        self._spawn = spawn
        self._closing = False
        self._all_stopped = anyio.Event()
        self._settled_workers = 0  # workers that failed to load or stopped for good
        self._changed = anyio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        d = self.definition
        slots = [device for device in d.devices for _ in range(d.workers_per_device)]
        for index, device in enumerate(slots):
            worker = self._new_worker(index, device, generation=0)
            self.workers.append(worker)
            worker.start()

    def _new_worker(self, index: int, device: str, generation: int) -> DeviceWorker:
        d = self.definition
        return DeviceWorker(
            model=d.name,
            index=index,
            device=device,
            create_handler=d.create_handler,
            queue=self.queue,
            max_batch_size=d.max_batch_size,
            batch_window_s=d.batch_window_ms / 1e3,
            loop=self._loop,
            prefetch=d.prefetch,
            peers=d.worker_count,
            on_state=self._on_worker_state,
            generation=generation,
        )

    def _on_worker_state(
        self, worker: DeviceWorker, state: str, error: BaseException | None
    ) -> None:
        if self.workers[worker.index] is not worker:
            return  # a replaced worker reporting late
        worker.state = state
        worker.error = None if error is None else f"{type(error).__name__}: {error}"
        if state == WorkerState.DEAD and not self._closing:
            self.restarts += 1
            delay = min(0.1 * 2 ** min(self.restarts - 1, 10), _MAX_RESTART_DELAY_S)
            self._spawn(lambda: self._restart(worker, delay))
        elif state in (WorkerState.FAILED, WorkerState.STOPPED, WorkerState.DEAD):
            self._settled_workers += 1
            if self._settled_workers >= len(self.workers):
                self._all_stopped.set()
        self._changed.set()
        self._changed = anyio.Event()

    async def _restart(self, dead: DeviceWorker, delay: float) -> None:
        await anyio.sleep(delay)
        if self._closing:
            self._on_worker_state(dead, WorkerState.STOPPED, None)
            return
        logger.warning("model %s: restarting worker %d on %s", self.name, dead.index, dead.device)
        worker = self._new_worker(dead.index, dead.device, generation=dead.generation + 1)
        self.workers[dead.index] = worker
        worker.start()

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking jobs, let workers finish what is queued, then let them exit."""
        if self._closing:
            await self._all_stopped.wait()
            return
        self._closing = True
        self.queue.close()
        if all(w.state in (WorkerState.FAILED, WorkerState.STOPPED) for w in self.workers):
            self._all_stopped.set()
        with anyio.move_on_after(drain_timeout_s) as scope:
            await self._all_stopped.wait()
        if scope.cancelled_caught:
            logger.warning(
                "model %s: workers still busy after %.0f s; leaving them",
                self.name,
                drain_timeout_s,
            )

    async def wait_changed(self) -> None:
        """Wait for the next worker state change (used by readiness waits)."""
        await self._changed.wait()

    # -- state ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Every worker has loaded and none is down."""
        return not self._closing and all(w.state == WorkerState.READY for w in self.workers)

    @property
    def can_serve(self) -> bool:
        """Some worker is, or may soon be, able to take jobs."""
        return not self._closing and any(
            w.state in (WorkerState.LOADING, WorkerState.READY, WorkerState.DEAD)
            for w in self.workers
        )

    def health(self) -> dict[str, Any]:
        return {
            "task": self.definition.task,
            "ready": self.ready,
            "restarts": self.restarts,
            "queue_depth": self.queue.depth,
            "workers": [
                {
                    "index": w.index,
                    "device": w.device,
                    "state": w.state,
                    "busy": w.busy_since is not None,
                    "generation": w.generation,
                    "error": w.error,
                }
                for w in self.workers
            ],
        }

    # -- requests ------------------------------------------------------------------------

    def submit(self, payload: Any, *, request_id: str | None = None) -> Job:
        """Queue a job, or raise at once (``QueueFull``, ``ModelNotReady``)."""
        if not self.can_serve:
            errors = "; ".join(sorted({w.error for w in self.workers if w.error}))
            raise ModelNotReady(
                f"model {self.name!r} cannot serve: " + (errors or "it is shutting down")
            )
        job = Job(
            payload,
            model=self.name,
            request_id=request_id or uuid.uuid4().hex,
            stream_buffer=self.definition.stream_buffer,
            on_finished=self.stats.record,
        )
        try:
            self.queue.submit(job)
        except QueueFull as exc:
            self.stats.rejected += 1
            exc.retry_after_s = retry_after_seconds(self.queue.depth, self.stats.throughput()[0])
            raise
        self.stats.submitted += 1
        return job
