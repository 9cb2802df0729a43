"""A served model: its definition, its queue, its worker threads and their supervision.

Workers are kept by index. Scaling up starts new workers (each loads its own handler);
scaling down triggers a worker's :class:`~localinfer.runtime.scheduler.StopSignal`: it
finishes the jobs it holds, gets an empty batch like at shutdown, closes its handler and
is forgotten once it reports itself stopped.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from localinfer.errors import InvalidRequest, ModelNotReady, QueueFull
from localinfer.runtime.job import DEFAULT_STREAM_BUFFER, Job
from localinfer.runtime.loop import LoopHandle
from localinfer.runtime.scheduler import JobQueue, retry_after_seconds
from localinfer.runtime.stats import ModelStats
from localinfer.runtime.worker import DeviceWorker, HandlerFactory, WorkerState

if TYPE_CHECKING:
    from localinfer.handlers.base import Handler, HandlerContext

logger = logging.getLogger(__name__)

_MAX_RESTART_DELAY_S = 10.0
#: the most worker threads one model may be scaled to
MAX_WORKERS = 64


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
    stream_buffer: int = DEFAULT_STREAM_BUFFER
    #: loop-side validation/normalisation of a payload before it is queued (fast, no I/O)
    prepare: Callable[[Any], Any] | None = None
    #: jobs a one-at-a-time worker may take from the queue in one trip (its fair share)
    prefetch: int = 16
    #: content type of binary (bytes) streams
    media_type: str = "application/octet-stream"
    #: what the model offers, for selection by capability; ``task`` and ``model`` are
    #: always added (see :attr:`ServedModel.capabilities`)
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
        context: HandlerContext | None = None,
    ):
        if definition.worker_count < 1:
            raise ValueError("a model needs at least one worker")
        self.definition = definition
        self.name = definition.name
        self.stats = ModelStats()
        self.queue = JobQueue(definition.name, definition.max_queue)
        self.restarts = 0
        self.context = context
        self._workers: dict[int, DeviceWorker] = {}
        self._loop = loop
        self._spawn = spawn
        self._closing = False
        self._all_stopped = anyio.Event()
        self._changed = anyio.Event()
        #: when a request last arrived or finished (``time.monotonic``), for keep-alive
        self.last_used = time.monotonic()
        #: every handler this model's workers created: an unload proves them gone
        self.handler_refs: list[weakref.ref[Any]] = []

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def workers(self) -> list[DeviceWorker]:
        """Every worker, retiring ones included, by index."""
        return [self._workers[index] for index in sorted(self._workers)]

    def start(self) -> None:
        d = self.definition
        slots = [device for device in d.devices for _ in range(d.workers_per_device)]
        for index, device in enumerate(slots):
            self._start_worker(self._new_worker(index, device, generation=0))

    def _start_worker(self, worker: DeviceWorker) -> None:
        if self._all_stopped.is_set():  # every worker had failed; this one may not
            self._all_stopped = anyio.Event()
        self._workers[worker.index] = worker
        worker.start()

    def _new_worker(self, index: int, device: str, generation: int) -> DeviceWorker:
        d = self.definition
        return DeviceWorker(
            model=d.name,
            index=index,
            device=device,
            create_handler=self._create_handler,
            queue=self.queue,
            max_batch_size=d.max_batch_size,
            batch_window_s=d.batch_window_ms / 1e3,
            loop=self._loop,
            prefetch=d.prefetch,
            peers=max(len(self._workers), d.worker_count),
            on_state=self._on_worker_state,
            generation=generation,
            context=self.context,
        )

    def _create_handler(self, index: int, device: str) -> Handler:
        """The definition's factory, keeping a weak reference (called in the worker thread)."""
        handler = self.definition.create_handler(index, device)
        try:
            self.handler_refs.append(weakref.ref(handler))
        except TypeError:
            pass  # an object without weak reference support: it goes uncounted
        return handler

    def _on_worker_state(
        self, worker: DeviceWorker, state: str, error: BaseException | None
    ) -> None:
        if self._workers.get(worker.index) is not worker:
            return  # a replaced worker reporting late
        worker.state = state
        worker.error = None if error is None else f"{type(error).__name__}: {error}"
        if worker.retiring and state != WorkerState.READY:
            self._forget(worker)  # scaled away: stopped, failed to load, or died on its way out
        elif state == WorkerState.DEAD and not self._closing:
            self.restarts += 1
            delay = min(0.1 * 2 ** min(self.restarts - 1, 10), _MAX_RESTART_DELAY_S)
            self._spawn(lambda: self._restart(worker, delay))
        self._check_settled()
        self._notify()

    def _forget(self, worker: DeviceWorker) -> None:
        del self._workers[worker.index]
        for other in self._workers.values():
            other.peers = len(self._workers)

    def _check_settled(self) -> None:
        """Set ``_all_stopped`` once no worker will take another job."""
        settled = {WorkerState.FAILED, WorkerState.STOPPED}
        if self._closing:
            settled.add(WorkerState.DEAD)
        if all(w.state in settled for w in self._workers.values()):
            self._all_stopped.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _restart(self, dead: DeviceWorker, delay: float) -> None:
        await anyio.sleep(delay)
        if self._workers.get(dead.index) is not dead:
            return  # scaled away while it waited
        if self._closing:
            self._on_worker_state(dead, WorkerState.STOPPED, None)
            return
        logger.warning("model %s: restarting worker %d on %s", self.name, dead.index, dead.device)
        self._start_worker(
            self._new_worker(dead.index, dead.device, generation=dead.generation + 1)
        )

    # -- scaling -------------------------------------------------------------------------

    @property
    def target_workers(self) -> int:
        """Workers the model is meant to have: all but those told to stop."""
        return sum(not w.retiring for w in self._workers.values())

    @property
    def capacity(self) -> int:
        """Workers that serve, or soon will: loaded or loading, not retiring."""
        serving = (WorkerState.LOADING, WorkerState.READY, WorkerState.DEAD)
        return sum(not w.retiring and w.state in serving for w in self._workers.values())

    def scale(self, count: int) -> None:
        """Run ``count`` workers: start new ones, or retire the surplus (idle ones first).

        Returns at once; new workers load in their threads, retired ones finish the jobs
        they hold, then stop. :meth:`wait_scaled` waits for both.
        """
        if self._closing:
            raise ModelNotReady(f"model {self.name!r} is shutting down")
        if not 1 <= count <= MAX_WORKERS:
            raise InvalidRequest(
                f"workers must be between 1 and {MAX_WORKERS}, not {count}", param="workers"
            )
        active = [w for w in self._workers.values() if not w.retiring]
        for _ in range(count - len(active)):
            self._start_worker(self._new_worker(self._free_index(), self._least_used_device(), 0))
        surplus = len(active) - count
        if surplus > 0:
            for worker in sorted(active, key=_retire_order)[:surplus]:
                self._retire(worker)
        for worker in self._workers.values():
            worker.peers = count
        logger.info("model %s: scaled to %d worker(s)", self.name, count)
        self._notify()

    def _retire(self, worker: DeviceWorker) -> None:
        worker.stop.trigger()
        if worker.state in (WorkerState.FAILED, WorkerState.DEAD, WorkerState.STOPPED):
            self._forget(worker)  # no thread left to wind down

    def _free_index(self) -> int:
        index = 0
        while index in self._workers:
            index += 1
        return index

    def _least_used_device(self) -> str:
        active = [w.device for w in self._workers.values() if not w.retiring]
        return min(self.definition.devices, key=active.count)

    async def wait_scaled(self) -> None:
        """Wait until retired workers have stopped and new ones have loaded (or failed)."""
        while any(w.retiring or w.state == WorkerState.LOADING for w in self._workers.values()):
            await self._changed.wait()

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking jobs, let workers finish what is queued, then let them exit."""
        if self._closing:
            await self._all_stopped.wait()
            return
        self._closing = True
        self.queue.close()
        self._check_settled()
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

    @property
    def capabilities(self) -> dict[str, str]:
        """What the model offers: its definition's, plus ``task`` and ``model``."""
        return {
            **self.definition.capabilities,
            "task": self.definition.task,
            "model": self.name,
        }

    def health(self) -> dict[str, Any]:
        return {
            "task": self.definition.task,
            "ready": self.ready,
            "restarts": self.restarts,
            "queue_depth": self.queue.depth,
            "target_workers": self.target_workers,
            "capabilities": self.capabilities,
            "workers": [
                {
                    "index": w.index,
                    "device": w.device,
                    "state": w.state,
                    "busy": w.busy_since is not None,
                    "retiring": w.retiring,
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
            on_finished=self._job_finished,
        )
        try:
            self.queue.submit(job)
        except QueueFull as exc:
            self.stats.rejected += 1
            exc.retry_after_s = retry_after_seconds(self.queue.depth, self.stats.throughput()[0])
            raise
        self.stats.submitted += 1
        self.last_used = time.monotonic()
        return job

    def _job_finished(self, job: Job) -> None:
        self.stats.record(job)
        self.last_used = time.monotonic()


def _retire_order(worker: DeviceWorker) -> tuple[bool, bool, int]:
    """Workers that serve nobody go first, then idle ones, the newest first."""
    serving = worker.state in (WorkerState.READY, WorkerState.LOADING)
    return (serving, worker.busy_since is not None, -worker.index)
