"""The worker pool of one served model: starting workers, following their states, and
scaling the pool up or down.

Workers are kept by index. Scaling up starts new workers (each loads its own handler);
scaling down triggers a worker's :class:`~localinfer.runtime.scheduler.StopSignal`: it
finishes the jobs it holds, gets an empty batch like at shutdown, closes its handler and
is forgotten once it reports itself stopped. Supervision (restarts, the watchdog, hung and
abandoned threads) is :class:`~localinfer.runtime.supervision.WorkerSupervisor`'s; taking
jobs, draining and health are :class:`~localinfer.runtime.model.ServedModel`'s.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Required, TypedDict, Unpack

import anyio

from localinfer.errors import InvalidRequest, ModelNotReady
from localinfer.handlers.base import ThreadLedger
from localinfer.runtime.definition import ModelDefinition
from localinfer.runtime.loop import LoopHandle
from localinfer.runtime.scheduler import JobQueue
from localinfer.runtime.supervision import (
    DEFAULT_HANG_GRACE_S,
    DEFAULT_LOAD_TIMEOUT_S,
    DEFAULT_MAX_ABANDONED,
    WorkerSupervisor,
)
from localinfer.runtime.worker import DeviceWorker, WorkerState

if TYPE_CHECKING:
    from localinfer.handlers.base import Handler, HandlerContext

logger = logging.getLogger(__name__)

#: the most worker threads one model may be scaled to
MAX_WORKERS = 64


class PoolOptions(TypedDict, total=False):
    """How a model's workers run and are watched (the registry passes them)."""

    #: the event loop the workers report to
    loop: Required[LoopHandle]
    #: starts a task on that loop (the watchdog, restarts, the drain deadline)
    spawn: Required[Callable[[Callable[[], Coroutine[Any, Any, None]]], None]]
    context: HandlerContext | None
    hang_grace_s: float
    max_abandoned: int
    load_timeout_s: float | None
    #: how much lower than the loop's the worker threads' priority is (runtime.priority)
    worker_nice: int


class ModelPool:
    """A model's workers, by index. Every method runs on the event loop."""

    def __init__(self, definition: ModelDefinition, **options: Unpack[PoolOptions]):
        if definition.worker_count < 1:
            raise ValueError("a model needs at least one worker")
        self.definition = definition
        self.name = definition.name
        self.queue = JobQueue(definition.name, definition.max_queue)
        self.context = options.get("context")
        self.worker_nice = options.get("worker_nice", 0)
        self._workers: dict[int, DeviceWorker] = {}
        self._loop = options["loop"]
        self._spawn = options["spawn"]
        self.supervisor = WorkerSupervisor(
            self,
            spawn=self._spawn,
            hang_grace_s=options.get("hang_grace_s", DEFAULT_HANG_GRACE_S),
            max_abandoned=options.get("max_abandoned", DEFAULT_MAX_ABANDONED),
            load_timeout_s=options.get("load_timeout_s", DEFAULT_LOAD_TIMEOUT_S),
        )
        #: draining: no worker is restarted or started any more
        self._closing = False
        #: the watchdog's loop ends once this is set
        self._stopped = False
        self._all_stopped = anyio.Event()
        self._changed = anyio.Event()
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
            self.start_worker(self.new_worker(index, device, generation=0))
        self._spawn(self._watch)

    def start_worker(self, worker: DeviceWorker) -> None:
        if self._all_stopped.is_set():  # every worker had failed; this one may not
            self._all_stopped = anyio.Event()
        self._workers[worker.index] = worker
        worker.start()

    def new_worker(self, index: int, device: str, generation: int) -> DeviceWorker:
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
            on_state=self.on_worker_state,
            generation=generation,
            context=self.context,
            thread_ledger=ThreadLedger(self.supervisor.may_abandon),
            nice=self.worker_nice,
        )

    def _create_handler(self, index: int, device: str) -> Handler:
        """The definition's factory, keeping a weak reference (called in the worker thread)."""
        handler = self.definition.create_handler(index, device)
        try:
            self.handler_refs.append(weakref.ref(handler))
        except TypeError:
            pass  # an object without weak reference support: it goes uncounted
        return handler

    def on_worker_state(
        self, worker: DeviceWorker, state: str, error: BaseException | None
    ) -> None:
        if worker in self.supervisor.abandoned:
            if state != WorkerState.READY:
                self.supervisor.abandoned_returned(worker, state)
            return
        if self._workers.get(worker.index) is not worker:
            return  # a replaced worker reporting late
        if worker.state == WorkerState.HUNG and state == WorkerState.READY:
            return  # (cannot happen: READY is reported once, before serving)
        worker.state = state
        worker.error = None if error is None else f"{type(error).__name__}: {error}"
        if state == WorkerState.DEAD:
            self.supervisor.on_dead(worker)
        if worker.retiring and state != WorkerState.READY:
            self._forget(worker)  # scaled away: stopped, failed to load, or died on its way out
        elif state == WorkerState.DEAD and not self._closing:
            self.supervisor.schedule_restart(worker)
        self.settle()

    def _forget(self, worker: DeviceWorker) -> None:
        del self._workers[worker.index]
        for other in self._workers.values():
            other.peers = len(self._workers)

    def _check_settled(self) -> None:
        """Set ``_all_stopped`` once no worker will take another job."""
        settled = {WorkerState.FAILED, WorkerState.STOPPED}
        if self._closing:
            settled |= {WorkerState.DEAD, WorkerState.HUNG}
        if all(w.state in settled for w in self._workers.values()):
            self._all_stopped.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def settle(self) -> None:
        self._check_settled()
        self._notify()

    @property
    def slots(self) -> dict[int, DeviceWorker]:
        """The current worker of each index (retiring ones included)."""
        return self._workers

    async def _watch(self) -> None:
        await self.supervisor.watch(lambda: self._stopped)

    def check_workers(self) -> None:
        """One watchdog pass (on the loop)."""
        self.supervisor.check_workers()

    @property
    def draining(self) -> bool:
        """Shutting down: no new jobs; those queued and running may finish."""
        return self._closing

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
            self.start_worker(self.new_worker(self._free_index(), self._least_used_device(), 0))
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
        elif worker.state == WorkerState.HUNG:
            self.supervisor.on_hung(worker, worker.stuck_for(time.perf_counter()) or 0.0)

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

    async def wait_changed(self) -> None:
        """Wait for the next worker state change (used by readiness waits)."""
        await self._changed.wait()


def _retire_order(worker: DeviceWorker) -> tuple[bool, bool, int]:
    """Workers that serve nobody go first, then idle ones, the newest first."""
    serving = worker.state in (WorkerState.READY, WorkerState.LOADING)
    return (serving, worker.busy_since is not None, -worker.index)
