"""A served model: its definition, its queue, its worker threads and their supervision.

Workers are kept by index. Scaling up starts new workers (each loads its own handler);
scaling down triggers a worker's :class:`~localinfer.runtime.scheduler.StopSignal`: it
finishes the jobs it holds, gets an empty batch like at shutdown, closes its handler and
is forgotten once it reports itself stopped.

Supervision (every change is made on the loop):

- A worker whose thread dies is restarted with backoff; the job it was running has
  already been failed by the thread, the jobs it had taken but not started go back to
  the queue. A thread that ends without even reporting is found by the watchdog.
- A worker stuck in its handler ``hang_grace_s`` after every job it runs there ended
  (timed out, cancelled) is hung. A thread cannot be killed: it is abandoned — it takes
  no further job and exits if it ever returns — and a new worker (the next generation,
  loading a fresh handler) takes its place. At most ``max_abandoned`` abandoned threads
  per model; past that a hung worker stays in place, reported, and the model is degraded.
- Stopping drains: no new jobs, queued and running ones may finish until the drain
  deadline; then every job still unanswered gets :class:`ShuttingDown` (503).
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

from localinfer.errors import (
    InvalidRequest,
    LocalInferError,
    ModelNotReady,
    QueueFull,
    ShuttingDown,
    WorkerCrashed,
)
from localinfer.runtime.job import DEFAULT_STREAM_BUFFER, DEFAULT_STREAM_STALL_S, Failure, Job
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
#: how long a worker may stay in its handler after every job it runs there ended
DEFAULT_HANG_GRACE_S = 30.0
#: abandoned (hung) threads a model may leave behind before it stops replacing them
DEFAULT_MAX_ABANDONED = 1
#: the watchdog's tick bounds, seconds
_WATCH_MIN_S, _WATCH_MAX_S = 0.02, 1.0


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
    #: items a stream may hold for its reader at most (then the reader is cut off)
    stream_buffer: int = DEFAULT_STREAM_BUFFER
    #: a reader that reads nothing for this long while items pile up is cut off
    stream_stall_s: float = DEFAULT_STREAM_STALL_S
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
        hang_grace_s: float = DEFAULT_HANG_GRACE_S,
        max_abandoned: int = DEFAULT_MAX_ABANDONED,
    ):
        if definition.worker_count < 1:
            raise ValueError("a model needs at least one worker")
        self.definition = definition
        self.name = definition.name
        self.stats = ModelStats()
        self.queue = JobQueue(definition.name, definition.max_queue)
        self.restarts = 0
        self.context = context
        self.hang_grace_s = hang_grace_s
        self.max_abandoned = max_abandoned
        #: workers found hung so far (replaced or not)
        self.hangs = 0
        self._workers: dict[int, DeviceWorker] = {}
        #: hung workers given up on, whose threads have not returned (yet)
        self._abandoned: list[DeviceWorker] = []
        #: jobs submitted and not answered yet: none is left unanswered at shutdown
        self._live: set[Job] = set()
        self._loop = loop
        self._spawn = spawn
        self._closing = False
        #: ``anyio.current_time()`` by which a drain gives up on unanswered jobs
        self._drain_deadline: float | None = None
        self._stopped = False
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
        self._spawn(self._watch)

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
        if worker in self._abandoned:
            if state != WorkerState.READY:
                self._abandoned_returned(worker, state)
            return
        if self._workers.get(worker.index) is not worker:
            return  # a replaced worker reporting late
        if worker.state == WorkerState.HUNG and state == WorkerState.READY:
            return  # (cannot happen: READY is reported once, before serving)
        worker.state = state
        worker.error = None if error is None else f"{type(error).__name__}: {error}"
        if state == WorkerState.DEAD:
            # its running jobs were failed by the thread; those it had not started go back
            self._requeue(worker.take_back(), "died")
            self._fail_running(worker, "died")
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
            settled |= {WorkerState.DEAD, WorkerState.HUNG}
        if all(w.state in settled for w in self._workers.values()):
            self._all_stopped.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- supervision: dead, silent and hung workers ----------------------------------------

    async def _watch(self) -> None:
        """The watchdog: finds hung workers, workers back from a hang, and threads that
        ended without a word. Runs until the model has stopped."""
        tick = min(max(self.hang_grace_s / 4, _WATCH_MIN_S), _WATCH_MAX_S)
        while not self._stopped:
            await anyio.sleep(tick)
            self.check_workers()

    def check_workers(self) -> None:
        """One watchdog pass (on the loop)."""
        now = time.perf_counter()
        changed = False
        for worker in list(self._workers.values()):
            if worker.state not in (WorkerState.LOADING, WorkerState.READY, WorkerState.HUNG):
                continue
            if not worker.thread.is_alive():
                # a report may still be on its way: judge at the second tick in a row
                worker.silent_checks += 1
                if worker.silent_checks >= 2:
                    logger.critical(
                        "model %s worker %d: its thread ended without reporting",
                        self.name,
                        worker.index,
                    )
                    self._on_worker_state(
                        worker,
                        WorkerState.DEAD,
                        WorkerCrashed("the worker thread ended without reporting"),
                    )
                continue
            stuck = worker.stuck_for(now)
            if worker.state == WorkerState.HUNG and stuck is None:
                logger.warning(
                    "model %s worker %d: back from its handler after %.1f s hung",
                    self.name,
                    worker.index,
                    time.monotonic() - (worker.hung_since or time.monotonic()),
                )
                worker.state, worker.hung_since, worker.error = WorkerState.READY, None, None
                changed = True
            elif (
                worker.state == WorkerState.READY
                and stuck is not None
                and stuck >= self.hang_grace_s
            ):
                self._on_hung(worker, stuck)
                changed = True
        if changed:
            self._check_settled()
            self._notify()

    def _on_hung(self, worker: DeviceWorker, stuck_s: float) -> None:
        """``worker`` stays in its handler although every job it runs there ended."""
        if worker.state != WorkerState.HUNG:
            self.hangs += 1
            worker.hung_since = time.monotonic()
        running = ", ".join(job.request_id for job in worker.running_jobs())
        retiring = worker.retiring
        replace = not self._closing and len(self._abandoned) < self.max_abandoned
        if replace or retiring:
            self._requeue(worker.take_back(abandon=True), "hung")
            worker.state = WorkerState.ABANDONED
            worker.error = f"stuck in the handler {stuck_s:.1f} s after request {running} ended"
            del self._workers[worker.index]
            self._abandoned.append(worker)
            logger.error(
                "model %s worker %d.%d: %s; abandoning its thread%s",
                self.name,
                worker.index,
                worker.generation,
                worker.error,
                "" if retiring else " and starting a replacement",
            )
            if retiring:
                for other in self._workers.values():
                    other.peers = len(self._workers)
            else:
                self._start_worker(
                    self._new_worker(worker.index, worker.device, worker.generation + 1)
                )
        else:
            self._requeue(worker.take_back(), "hung")
            worker.state = WorkerState.HUNG
            worker.error = (
                f"stuck in the handler {stuck_s:.1f} s after request {running} ended; "
                f"not replaced ({len(self._abandoned)} abandoned thread(s) already)"
            )
            logger.error("model %s worker %d: %s", self.name, worker.index, worker.error)

    def _abandoned_returned(self, worker: DeviceWorker, state: str) -> None:
        """An abandoned thread came back from its handler and ended."""
        self._abandoned.remove(worker)
        logger.warning(
            "model %s worker %d.%d: abandoned thread returned after %.1f s and ended (%s)",
            self.name,
            worker.index,
            worker.generation,
            time.monotonic() - (worker.hung_since or time.monotonic()),
            state,
        )
        now = time.perf_counter()
        for hung in list(self._workers.values()):  # room again for one left in place
            if hung.state == WorkerState.HUNG and len(self._abandoned) < self.max_abandoned:
                self._on_hung(hung, hung.stuck_for(now) or 0.0)
        self._check_settled()
        self._notify()

    def _requeue(self, jobs: list[Job], why: str) -> None:
        """Queue again jobs a worker took but never started; answer those that do not fit."""
        for job in jobs:
            if job.outcome is not None:
                continue
            try:
                self.queue.submit(job)
            except LocalInferError as exc:
                _fail(
                    job,
                    ModelNotReady(
                        f"model {self.name!r}: the worker holding this request {why} and it "
                        f"could not be queued again ({exc.message})"
                    ),
                )

    def _fail_running(self, worker: DeviceWorker, why: str) -> None:
        """Answer any job still live in a worker that will not answer it."""
        for job in worker.running_jobs():
            if job.outcome is None:
                _fail(job, WorkerCrashed(f"the worker serving this request {why}; it restarts"))

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
        elif worker.state == WorkerState.HUNG:
            self._on_hung(worker, worker.stuck_for(time.perf_counter()) or 0.0)

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

    def begin_drain(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking jobs; queued and running ones may finish within ``drain_timeout_s``,
        then each one still unanswered gets :class:`ShuttingDown`. Returns at once; a
        second call keeps the first deadline."""
        if self._closing:
            return
        self._closing = True
        self._drain_deadline = anyio.current_time() + drain_timeout_s
        self.queue.close()
        self._check_settled()
        self._notify()
        self._spawn(self._enforce_drain_deadline)

    async def _enforce_drain_deadline(self) -> None:
        assert self._drain_deadline is not None
        with anyio.move_on_after(max(self._drain_deadline - anyio.current_time(), 0)):
            await self._all_stopped.wait()
        self._fail_live()

    def _fail_live(self) -> None:
        """Answer every job still unanswered (the drain is over): 503, the worker stops it."""
        if not self._live:
            return
        logger.warning(
            "model %s: %d request(s) unanswered at the drain deadline; answering 503",
            self.name,
            len(self._live),
        )
        for job in list(self._live):
            job.abort(  # cancelled (a running one stops at its next item) and answered
                ShuttingDown(
                    f"model {self.name!r} is shutting down and could not finish this "
                    "request within the drain timeout"
                )
            )

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking jobs, let workers finish what is queued, then let them exit.

        Bounded by the drain deadline (set by :meth:`begin_drain`, here if not yet):
        past it, unanswered jobs get :class:`ShuttingDown` and busy workers are left.
        """
        self.begin_drain(drain_timeout_s)
        assert self._drain_deadline is not None
        with anyio.move_on_after(max(self._drain_deadline - anyio.current_time(), 0)) as scope:
            await self._all_stopped.wait()
        self._fail_live()  # (also if the deadline task could not be started)
        self._stopped = True
        if scope.cancelled_caught:
            logger.warning(
                "model %s: workers still busy after the %.0f s drain; leaving them",
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
    def draining(self) -> bool:
        """Shutting down: no new jobs; those queued and running may finish."""
        return self._closing

    @property
    def abandoned_workers(self) -> list[DeviceWorker]:
        """Hung workers given up on whose threads have not returned."""
        return list(self._abandoned)

    @property
    def hung_workers(self) -> int:
        """Workers stuck in their handler now: left in place, or abandoned."""
        return len(self._abandoned) + sum(
            w.state == WorkerState.HUNG for w in self._workers.values()
        )

    @property
    def can_serve(self) -> bool:
        """Some worker is, or may soon be, able to take jobs."""
        return not self._closing and any(w.state in _MAY_SERVE for w in self._workers.values())

    @property
    def capabilities(self) -> dict[str, str]:
        """What the model offers: its definition's, plus ``task`` and ``model``."""
        return {
            **self.definition.capabilities,
            "task": self.definition.task,
            "model": self.name,
        }

    def replica_stats(self) -> dict[str, Any]:
        """Stats of the processes serving this model elsewhere (Ray Serve replicas: see
        :mod:`localinfer.ray.remote`); none for a model served here."""
        return {}

    def health(self) -> dict[str, Any]:
        return {
            "task": self.definition.task,
            "ready": self.ready,
            "draining": self._closing,
            "restarts": self.restarts,
            "hangs": self.hangs,
            "queue_depth": self.queue.depth,
            "target_workers": self.target_workers,
            "capabilities": self.capabilities,
            "workers": [_worker_health(w) for w in self.workers],
            # threads stuck in a handler and replaced; they end if they ever return
            "abandoned_workers": [_worker_health(w) for w in self._abandoned],
        }

    # -- requests ------------------------------------------------------------------------

    def submit(self, payload: Any, *, request_id: str | None = None) -> Job:
        """Queue a job, or raise at once (``QueueFull``, ``ModelNotReady``)."""
        if self._closing:
            raise ShuttingDown(f"model {self.name!r} is shutting down")
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
            stall_s=self.definition.stream_stall_s,
            on_finished=self._job_finished,
        )
        try:
            self.queue.submit(job)
        except QueueFull as exc:
            self.stats.rejected += 1
            exc.retry_after_s = retry_after_seconds(self.queue.depth, self.stats.throughput()[0])
            raise
        self.stats.submitted += 1
        self._live.add(job)
        self.last_used = time.monotonic()
        return job

    def _job_finished(self, job: Job) -> None:
        self._live.discard(job)
        self.stats.record(job)
        self.last_used = time.monotonic()


#: worker states that are, or may soon be, able to take jobs
_MAY_SERVE = frozenset({WorkerState.LOADING, WorkerState.READY, WorkerState.DEAD})


def _fail(job: Job, error: LocalInferError) -> None:
    """Answer ``job`` with ``error`` from the loop (a no-op once it has ended)."""
    job.deliver(Failure(error))


def _worker_health(worker: DeviceWorker) -> dict[str, Any]:
    return {
        "index": worker.index,
        "device": worker.device,
        "state": worker.state,
        "busy": worker.busy_since is not None,
        "retiring": worker.retiring and worker.state != WorkerState.ABANDONED,
        "generation": worker.generation,
        "error": worker.error,
        "hung_s": None
        if worker.hung_since is None
        else round(time.monotonic() - worker.hung_since, 3),
    }


def _retire_order(worker: DeviceWorker) -> tuple[bool, bool, int]:
    """Workers that serve nobody go first, then idle ones, the newest first."""
    serving = worker.state in (WorkerState.READY, WorkerState.LOADING)
    return (serving, worker.busy_since is not None, -worker.index)
