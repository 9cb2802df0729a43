"""Worker supervision: restarts, the watchdog, hung and abandoned threads.

Every change is made on the loop:

- A worker whose thread dies is restarted with backoff; the job it was running has
  already been failed by the thread, the jobs it had taken but not started go back to
  the queue. A thread that ends without even reporting is found by the watchdog.
- A worker stuck in its handler ``hang_grace_s`` after every job it runs there ended
  (timed out, cancelled) is hung. A thread cannot be killed: it is abandoned — it takes
  no further job and exits if it ever returns — and a new worker (the next generation,
  loading a fresh handler) takes its place. At most ``max_abandoned`` abandoned threads
  per model; past that a hung worker stays in place, reported, and the model is degraded.
- A handler's own thread that it gave up on (a stalled continuous-batching loop) counts
  as abandoned too: the handler asks :meth:`WorkerSupervisor.may_abandon` first, and one
  refused keeps its worker hung in place (reported through its ``ThreadLedger``).
- A worker whose ``load()`` runs past ``load_timeout_s`` (its turn to load counted, not
  the wait for it) has failed: its thread is abandoned (it ends if the load ever returns),
  its turn to load goes to the next model, and the model reports the reason.
- Either way the handler is told (``Handler.on_abandoned``, on the loop): one that can
  free its work without the thread does — a model in a process of its own kills that
  process, so its memory comes back and the thread returns at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio

from localinfer.errors import LocalInferError, ModelNotReady, WorkerCrashed
from localinfer.handlers.base import AbandonedThread
from localinfer.runtime.job import Failure, Job
from localinfer.runtime.loading import LOADS
from localinfer.runtime.scheduler import JobQueue
from localinfer.runtime.worker import DeviceWorker, WorkerState

logger = logging.getLogger(__name__)

_MAX_RESTART_DELAY_S = 10.0
#: how long a worker may stay in its handler after every job it runs there ended
DEFAULT_HANG_GRACE_S = 30.0
#: abandoned (hung) threads a model may leave behind before it stops replacing them
DEFAULT_MAX_ABANDONED = 1
#: how long one ``load()`` may take
DEFAULT_LOAD_TIMEOUT_S = 600.0
#: the watchdog's tick bounds, seconds
_WATCH_MIN_S, _WATCH_MAX_S = 0.02, 1.0


class WorkerPool(Protocol):
    """What the supervisor needs of the model whose workers it watches."""

    name: str
    queue: JobQueue

    @property
    def slots(self) -> dict[int, DeviceWorker]:
        """The current worker of each index (retiring ones included)."""
        ...

    @property
    def draining(self) -> bool: ...

    def new_worker(self, index: int, device: str, generation: int) -> DeviceWorker: ...

    def start_worker(self, worker: DeviceWorker) -> None: ...

    def on_worker_state(
        self, worker: DeviceWorker, state: str, error: BaseException | None
    ) -> None: ...

    def settle(self) -> None:
        """Re-check whether every worker has stopped, and wake those waiting for a change."""
        ...


class WorkerSupervisor:
    """Restarts dead workers, finds silent and hung ones, keeps count of abandoned threads."""

    def __init__(
        self,
        pool: WorkerPool,
        *,
        spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
        hang_grace_s: float = DEFAULT_HANG_GRACE_S,
        max_abandoned: int = DEFAULT_MAX_ABANDONED,
        load_timeout_s: float | None = DEFAULT_LOAD_TIMEOUT_S,
    ):
        self.pool = pool
        self._spawn = spawn
        self.hang_grace_s = hang_grace_s
        self.max_abandoned = max_abandoned
        self.load_timeout_s = load_timeout_s
        self.restarts = 0
        #: workers found hung so far (replaced or not)
        self.hangs = 0
        #: hung workers given up on, whose threads have not returned (yet)
        self.abandoned: list[DeviceWorker] = []

    # -- dead workers --------------------------------------------------------------------

    def on_dead(self, worker: DeviceWorker) -> None:
        """``worker``'s thread died: queue again the jobs it had not started, answer the rest."""
        # its running jobs were failed by the thread; those it had not started go back
        self.requeue(worker.take_back(), "died")
        self.fail_running(worker, "died")

    def schedule_restart(self, worker: DeviceWorker) -> None:
        self.restarts += 1
        delay = min(0.1 * 2 ** min(self.restarts - 1, 10), _MAX_RESTART_DELAY_S)
        self._spawn(lambda: self._restart(worker, delay))

    async def _restart(self, dead: DeviceWorker, delay: float) -> None:
        await anyio.sleep(delay)
        pool = self.pool
        if pool.slots.get(dead.index) is not dead:
            return  # scaled away while it waited
        if pool.draining:
            pool.on_worker_state(dead, WorkerState.STOPPED, None)
            return
        logger.warning("model %s: restarting worker %d on %s", pool.name, dead.index, dead.device)
        pool.start_worker(pool.new_worker(dead.index, dead.device, generation=dead.generation + 1))

    # -- the watchdog --------------------------------------------------------------------

    async def watch(self, stopped: Callable[[], bool]) -> None:
        """Finds hung workers, workers back from a hang, and threads that ended without a
        word. Runs until ``stopped()``."""
        shortest = min(self.hang_grace_s, self.load_timeout_s or self.hang_grace_s)
        tick = min(max(shortest / 4, _WATCH_MIN_S), _WATCH_MAX_S)
        while not stopped():
            await anyio.sleep(tick)
            self.check_workers()

    def check_workers(self) -> None:
        """One watchdog pass (on the loop)."""
        pool = self.pool
        now = time.perf_counter()
        changed = False
        for worker in list(pool.slots.values()):
            if worker.state not in (WorkerState.LOADING, WorkerState.READY, WorkerState.HUNG):
                continue
            if not worker.thread.is_alive():
                # a report may still be on its way: judge at the second tick in a row
                worker.silent_checks += 1
                if worker.silent_checks >= 2:
                    logger.critical(
                        "model %s worker %d: its thread ended without reporting",
                        pool.name,
                        worker.index,
                    )
                    pool.on_worker_state(
                        worker,
                        WorkerState.DEAD,
                        WorkerCrashed("the worker thread ended without reporting"),
                    )
                continue
            if worker.state == WorkerState.LOADING:
                loading = worker.loading_for(time.monotonic())
                if self.load_timeout_s is not None and (loading or 0.0) >= self.load_timeout_s:
                    self.on_load_timeout(worker)
                    changed = True
                continue
            stuck = worker.stuck_for(now)
            held = worker.thread_ledger.stuck_reason  # a handler's own thread, stuck in place
            if worker.state == WorkerState.READY and held:
                self.hangs += 1
                worker.state, worker.hung_since, worker.error = (
                    WorkerState.HUNG,
                    time.monotonic(),
                    held,
                )
                logger.error("model %s worker %d: %s", pool.name, worker.index, held)
                changed = True
            elif worker.state == WorkerState.HUNG and stuck is None and not held:
                logger.warning(
                    "model %s worker %d: back from its handler after %.1f s hung",
                    pool.name,
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
                self.on_hung(worker, stuck)
                changed = True
        if changed:
            pool.settle()

    # -- hung and abandoned workers ------------------------------------------------------

    def on_hung(self, worker: DeviceWorker, stuck_s: float) -> None:
        """``worker`` stays in its handler although every job it runs there ended."""
        pool = self.pool
        if worker.state != WorkerState.HUNG:
            self.hangs += 1
            worker.hung_since = time.monotonic()
        running = ", ".join(job.request_id for job in worker.running_jobs())
        retiring = worker.retiring
        replace = not pool.draining and self.abandoned_count < self.max_abandoned
        if replace or retiring:
            self.requeue(worker.take_back(abandon=True), "hung")
            worker.state = WorkerState.ABANDONED
            worker.error = f"stuck in the handler {stuck_s:.1f} s after request {running} ended"
            del pool.slots[worker.index]
            self.abandoned.append(worker)
            freed = self.free(worker)
            logger.error(
                "model %s worker %d.%d: %s; abandoning its thread%s%s",
                pool.name,
                worker.index,
                worker.generation,
                worker.error,
                f" ({freed})" if freed else "",
                "" if retiring else " and starting a replacement",
            )
            if retiring:
                for other in pool.slots.values():
                    other.peers = len(pool.slots)
            else:
                pool.start_worker(
                    pool.new_worker(worker.index, worker.device, worker.generation + 1)
                )
        else:
            self.requeue(worker.take_back(), "hung")
            worker.state = WorkerState.HUNG
            worker.error = (
                f"stuck in the handler {stuck_s:.1f} s after request {running} ended; "
                f"not replaced ({self.abandoned_count} abandoned thread(s) already)"
            )
            logger.error("model %s worker %d: %s", pool.name, worker.index, worker.error)

    def on_load_timeout(self, worker: DeviceWorker) -> None:
        """``worker``'s ``load()`` overran ``load_timeout_s``: failed, its thread abandoned."""
        worker.abandoned = True  # should the load return, the thread ends at once
        worker.measure_memory()
        LOADS.give_up(worker)
        worker.state = WorkerState.FAILED
        worker.hung_since = time.monotonic()
        freed = self.free(worker)
        worker.error = (
            f"load() did not finish within load_timeout_s ({self.load_timeout_s:g} s) on "
            f"{worker.device}; "
            + (freed or "its thread is abandoned and ends if the load ever returns")
        )
        self.abandoned.append(worker)
        logger.error("model %s worker %d: %s", self.pool.name, worker.index, worker.error)

    def free(self, worker: DeviceWorker) -> str | None:
        """``worker``'s thread is given up on: its handler frees what it can without it
        (:meth:`Handler.on_abandoned`); what it freed, for the log, if anything."""
        handler = worker.handler
        if handler is None:
            return None
        try:
            return handler.on_abandoned()
        except Exception:
            logger.exception(
                "model %s worker %d: on_abandoned failed", self.pool.name, worker.index
            )
            return None

    @property
    def abandoned_memory_bytes(self) -> int:
        """Device memory the abandoned threads still hold, as far as it was measured."""
        return sum(w.device_memory_bytes or 0 for w in self.abandoned)

    def abandoned_returned(self, worker: DeviceWorker, state: str) -> None:
        """An abandoned thread came back from its handler and ended."""
        self.abandoned.remove(worker)
        logger.warning(
            "model %s worker %d.%d: abandoned thread returned after %.1f s and ended (%s)",
            self.pool.name,
            worker.index,
            worker.generation,
            time.monotonic() - (worker.hung_since or time.monotonic()),
            state,
        )
        now = time.perf_counter()
        for hung in list(self.pool.slots.values()):  # room again for one left in place
            if (
                hung.state == WorkerState.HUNG
                and not hung.thread_ledger.stuck_reason  # its handler restarts its own thread
                and self.abandoned_count < self.max_abandoned
            ):
                self.on_hung(hung, hung.stuck_for(now) or 0.0)
        self.pool.settle()

    @property
    def hung_workers(self) -> int:
        """Workers stuck in their handler now: left in place, or abandoned."""
        return len(self.abandoned) + sum(
            w.state == WorkerState.HUNG for w in self.pool.slots.values()
        )

    @property
    def abandoned_threads(self) -> list[AbandonedThread]:
        """Handlers' own threads given up on (a stalled engine's loop), still running."""
        workers = [*list(self.pool.slots.values()), *self.abandoned]
        return [thread for worker in workers for thread in worker.thread_ledger.live()]

    @property
    def abandoned_count(self) -> int:
        """What counts against ``max_abandoned``: abandoned workers and handler threads."""
        return len(self.abandoned) + len(self.abandoned_threads)

    def may_abandon(self) -> bool:
        """Whether a handler may leave one more stuck thread behind (asked from its thread)."""
        return not self.pool.draining and self.abandoned_count < self.max_abandoned

    # -- the jobs a failed worker held ---------------------------------------------------

    def requeue(self, jobs: list[Job], why: str) -> None:
        """Queue again jobs a worker took but never started; answer those that do not fit."""
        for job in jobs:
            if job.outcome is not None:
                continue
            try:
                self.pool.queue.submit(job)
            except LocalInferError as exc:
                fail(
                    job,
                    ModelNotReady(
                        f"model {self.pool.name!r}: the worker holding this request {why} and "
                        f"it could not be queued again ({exc.message})"
                    ),
                )

    @staticmethod
    def fail_running(worker: DeviceWorker, why: str) -> None:
        """Answer any job still live in a worker that will not answer it."""
        for job in worker.running_jobs():
            if job.outcome is None:
                fail(job, WorkerCrashed(f"the worker serving this request {why}; it restarts"))


def fail(job: Job, error: LocalInferError) -> None:
    """Answer ``job`` with ``error`` from the loop (a no-op once it has ended)."""
    job.deliver(Failure(error))
