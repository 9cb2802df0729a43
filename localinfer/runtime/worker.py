"""A device-bound worker thread: load the handler on its device, then serve batches."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from queue import SimpleQueue
from typing import TYPE_CHECKING

from localinfer import openmp
from localinfer.errors import WorkerCrashed
from localinfer.handlers.base import ThreadLedger, bind_context
from localinfer.runtime.job import Event, Job
from localinfer.runtime.job_handle import JobHandle, Outbox, deliver_all
from localinfer.runtime.loading import LOADS, device_memory_allocated, grown_since
from localinfer.runtime.loop import LoopClosed, LoopHandle
from localinfer.runtime.priority import lower_this_thread
from localinfer.runtime.scheduler import JobQueue, StopSignal

if TYPE_CHECKING:
    from localinfer.handlers.base import CacheUsage, Handler, HandlerContext

logger = logging.getLogger(__name__)

#: A worker whose jobs took longer than this each on its last trip takes one job per trip
#: instead of prefetching. Against such a job a trip to the loop costs next to nothing,
#: while a job held in one worker's own list waits behind it even when another worker
#: is free (the sleep model's p99).
PREFETCH_JOBS_UNDER_S = 0.002

HandlerFactory = Callable[[int, str], "Handler"]


class WorkerState:
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"  # the handler could not load
    DEAD = "dead"  # the thread died while serving; a new one is on its way
    STOPPED = "stopped"
    #: stuck in the handler past the grace period after every request it holds ended;
    #: left in place (no replacement allowed): it serves again if it ever returns
    HUNG = "hung"
    #: hung and given up on: a replacement took its place; if its thread ever returns
    #: from the handler, it exits without taking another job
    ABANDONED = "abandoned"


def bind_thread_to_device(device: str) -> None:
    """Make ``device`` this thread's default CUDA device (no-op elsewhere)."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        torch.cuda.set_device(0 if index is None else index)


def _take_slots(slots: threading.BoundedSemaphore, most: int) -> int:
    """Block for one free slot, then take up to ``most`` in all without blocking."""
    slots.acquire()
    taken = 1
    while taken < most and slots.acquire(blocking=False):
        taken += 1
    return taken


class DeviceWorker:
    """One dedicated thread of one model on one device.

    State changes are reported to the loop through ``on_state`` (run on the loop),
    so the runtime's bookkeeping is only ever touched by the loop.
    """

    def __init__(
        self,
        *,
        model: str,
        index: int,
        device: str,
        create_handler: HandlerFactory,
        queue: JobQueue,
        max_batch_size: int,
        batch_window_s: float,
        loop: LoopHandle,
        prefetch: int = 1,
        peers: int = 1,
        on_state: Callable[[DeviceWorker, str, BaseException | None], None],
        generation: int = 0,
        context: HandlerContext | None = None,
        thread_ledger: ThreadLedger | None = None,
        nice: int = 0,
    ):
        self.model = model
        self.index = index
        self.device = device
        self.generation = generation
        self.state = WorkerState.LOADING
        self.error: str | None = None
        self.batches = 0
        self.busy_since: float | None = None
        #: since when (``time.monotonic``) the loop has judged this worker hung, if it has
        self.hung_since: float | None = None
        #: set on the loop once the worker is given up on (hung): the thread takes no
        #: further job, and the jobs it had not started were handed back
        self.abandoned = False
        #: ticks of the model's watchdog that found the thread gone without a report
        self.silent_checks = 0
        #: when (``time.monotonic``) its ``load()`` got its turn, while it loads
        self.load_started: float | None = None
        #: CUDA memory allocated on its device when the load began, and what the load
        #: added (``None``: not CUDA, or not measured); what an abandoned thread holds
        self.memory_before_load: int | None = None
        self.device_memory_bytes: int | None = None
        #: what its handler serves with (``Handler.engine``), once loaded
        self.engine: str | None = None
        #: its handler, from its creation (before ``load()``) until the thread ends
        self.handler: Handler | None = None
        #: its loaded handler's ``cache_usage``, while it serves
        self._read_caches: Callable[[], Mapping[str, CacheUsage]] | None = None
        self._caches_failed = False
        #: threads of its handler's own that the handler gave up on (given to the handler)
        self.thread_ledger = thread_ledger or ThreadLedger()
        #: how much lower than the loop's its thread's priority is (runtime.priority)
        self.nice = nice
        # Jobs taken from the queue and not started yet (filled on the loop, taken by the
        # thread one batch at a time), and the jobs in the handler right now. The lock
        # makes "the thread starts a job" and "the loop takes the rest back" exclusive.
        self._lock = threading.Lock()
        self._pending: deque[Job] = deque()
        self._current: list[Job] = []
        self._create_handler = create_handler
        self._queue = queue
        self._max_batch_size = max_batch_size
        self._batch_window_s = batch_window_s
        self._prefetch = prefetch
        #: seconds per job on the last trip (one at a time, unbatched); 0 until measured
        self._job_s = 0.0
        #: without a batching window jobs are offered on the loop (no task per trip) and
        #: handed over here, as the number of jobs put in ``_pending`` (0: stop)
        self._offered = batch_window_s <= 0 or max_batch_size <= 1
        self._handoff: SimpleQueue[int] = SimpleQueue()
        #: workers sharing the queue (the fair share of prefetching); updated when scaling
        self.peers = peers
        self._loop = loop
        self._on_state = on_state
        self._context = context
        #: triggered (on the loop) to retire this worker: it finishes what it holds and stops
        self.stop = StopSignal()
        self.thread = threading.Thread(
            target=self._main, name=f"localinfer:{model}:{index}.{generation}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    @property
    def retiring(self) -> bool:
        return self.stop.triggered

    def cache_usage(self) -> dict[str, CacheUsage]:
        """Its handler's caches (``Handler.cache_usage``) while it serves. A handler whose
        method fails shows none: ``/v1/stats`` must answer (logged once per worker)."""
        read = self._read_caches
        if read is None:
            return {}
        try:
            return dict(read())
        except Exception:
            if not self._caches_failed:
                self._caches_failed = True
                logger.warning(
                    "model %s worker %d: cache_usage() failed",
                    self.model,
                    self.index,
                    exc_info=True,
                )
            return {}

    def health(self) -> dict[str, object]:
        """This worker's state, for ``/health``."""
        return {
            "index": self.index,
            "device": self.device,
            "state": self.state,
            "busy": self.busy_since is not None,
            "retiring": self.retiring and self.state != WorkerState.ABANDONED,
            "generation": self.generation,
            "error": self.error,
            "engine": self.engine,
            "device_memory_bytes": self.device_memory_bytes,
            "hung_s": None
            if self.hung_since is None
            else round(time.monotonic() - self.hung_since, 3),
        }

    def loading_for(self, now: float) -> float | None:
        """Seconds its ``load()`` has run (not counting the wait for its turn), if loading."""
        started = self.load_started
        return None if started is None else now - started

    def measure_memory(self) -> None:
        """What its load has allocated so far: for a load given up on before it ended."""
        if self.device_memory_bytes is None:
            self.device_memory_bytes = grown_since(self.memory_before_load, self.device)

    def _report(self, state: str, error: BaseException | None = None) -> None:
        try:
            self._loop.call_soon(self._on_state, self, state, error)
        except LoopClosed:
            pass

    def _main(self) -> None:
        try:
            lower_this_thread(self.nice)  # before the load: the threads it starts inherit it
            bind_thread_to_device(self.device)
            if self._context is not None:
                bind_context(None, self._context)  # for user code, before it is even built
            with LOADS.turn(self):
                self.memory_before_load = device_memory_allocated(self.device)
                self.load_started = time.monotonic()
                handler = self.handler = self._create_handler(self.index, self.device)
                if self._context is not None:
                    bind_context(handler, self._context)
                handler.thread_ledger = self.thread_ledger
                openmp.warn_if_too_late()  # how its OpenMP threads wait: see openmp.py
                handler.load(self.device)
                self.device_memory_bytes = grown_since(self.memory_before_load, self.device)
                self.load_started = None
                engine = getattr(handler, "engine", None)
                self.engine = None if engine is None else str(engine)
                openmp.warn_if_spinning_long(self.model, self.engine)
                self._read_caches = getattr(handler, "cache_usage", None)
        except BaseException as exc:
            self.handler = None
            logger.exception(
                "model %s worker %d failed to load on %s", self.model, self.index, self.device
            )
            self._report(WorkerState.FAILED, exc)
            return
        self._report(WorkerState.READY)
        exit_state, exit_error = WorkerState.STOPPED, None
        in_flight = max(1, int(getattr(handler, "max_in_flight", 1)))
        slots = threading.BoundedSemaphore(in_flight) if in_flight > 1 else None
        outbox = Outbox()
        try:
            while not self.abandoned:
                size = (
                    self._max_batch_size
                    if slots is None
                    else _take_slots(slots, self._max_batch_size)
                )
                # jobs that take a while are not prefetched: see PREFETCH_JOBS_UNDER_S
                prefetch = (
                    self._prefetch if slots is None and self._job_s < PREFETCH_JOBS_UNDER_S else 1
                )
                try:
                    if self._offered:  # the last batch's answers go with the request for more
                        self._loop.call_soon(self._deliver_and_offer, outbox.take(), size, prefetch)
                        taken = self._handoff.get()
                    else:
                        self._flush(outbox)
                        taken = self._loop.run(partial(self._take, size, prefetch=prefetch))
                except LoopClosed:
                    break
                if slots is not None:
                    for _ in range(size - taken):
                        slots.release()
                if not taken:
                    break
                if self._max_batch_size == 1 and slots is None:
                    started, served = time.perf_counter(), 0
                    while batch := self._claim(1):  # prefetched: served one at a time, in order
                        self._flush(outbox)
                        self._serve(handler, batch, None, outbox)
                        served += 1
                    if served:
                        self._job_s = (time.perf_counter() - started) / served
                elif batch := self._claim(taken):
                    self._serve(handler, batch, slots, outbox)
                elif slots is not None:  # taken back by the loop meanwhile
                    for _ in range(taken):
                        slots.release()
            self._flush(outbox)
            if slots is not None:  # let items still generating finish before closing
                for _ in range(in_flight):
                    slots.acquire()
        except BaseException as exc:
            logger.critical("model %s worker %d died: %r", self.model, self.index, exc)
            exit_state, exit_error = WorkerState.DEAD, exc
            self._flush(outbox)
        finally:
            self._read_caches = None
            try:
                handler.close()
            except Exception:
                logger.exception("model %s worker %d: close() failed", self.model, self.index)
            self.handler = None
            del handler
        self._report(exit_state, exit_error)

    # -- taking jobs ---------------------------------------------------------------------

    def _flush(self, outbox: Outbox) -> None:
        """In the thread: send the answers the outbox holds."""
        if outbox.events:
            try:
                self._loop.call_soon(deliver_all, outbox.take())
            except LoopClosed:
                pass  # the server is gone; nobody is waiting

    def _deliver_and_offer(self, events: list[tuple[Job, Event]], size: int, prefetch: int) -> None:
        """On the loop: deliver the last batch's answers, then ask for jobs."""
        deliver_all(events)
        self._offer(size, prefetch)

    def _offer(self, size: int, prefetch: int) -> None:
        """On the loop: ask the queue for jobs; they are handed over when there are some."""
        self._queue.offer(self._hand, size, prefetch=prefetch, workers=self.peers, stop=self.stop)

    def _hand(self, batch: list[Job]) -> None:
        """On the loop: these jobs are this worker's now; wake the thread."""
        self._pending.extend(batch)
        self._handoff.put(len(batch))

    async def _take(self, size: int, *, prefetch: int) -> int:
        """On the loop: wait for a batch, keep it as this worker's pending jobs; its size."""
        batch = await self._queue.next_batch(
            size, self._batch_window_s, prefetch=prefetch, workers=self.peers, stop=self.stop
        )
        self._pending.extend(batch)
        return len(batch)

    def _claim(self, most: int) -> list[Job]:
        """In the thread: start up to ``most`` pending jobs (none once abandoned)."""
        with self._lock:
            if self.abandoned or not self._pending:
                return []
            batch = [self._pending.popleft() for _ in range(min(most, len(self._pending)))]
            self._current = batch
            self.busy_since = time.monotonic()
            return batch

    def take_back(self, *, abandon: bool = False) -> list[Job]:
        """On the loop: the jobs this worker took but has not started, no longer its own.

        With ``abandon`` the thread also takes no further job: if it ever returns from
        the handler it exits (after closing its handler).
        """
        with self._lock:
            if abandon:
                self.abandoned = True
            jobs = list(self._pending)
            self._pending.clear()
        if abandon:
            self.stop.trigger()
        return jobs

    def running_jobs(self) -> list[Job]:
        """On the loop: the jobs the thread is running in the handler right now."""
        return list(self._current)

    def stuck_for(self, now: float) -> float | None:
        """On the loop: seconds (``time.perf_counter``) the thread has stayed in the handler
        since every job it runs there ended (cancelled, timed out, answered), or ``None``
        while it is idle or a job it runs is still live."""
        current = self._current
        if not current or self.busy_since is None:
            return None
        ended = [job.finished_at for job in current if job.outcome is not None]
        if len(ended) < len(current) or None in ended:
            return None
        return now - max(t for t in ended if t is not None)

    # -- serving --------------------------------------------------------------------------

    def _serve(
        self,
        handler: Handler,
        batch: list[Job],
        slots: threading.BoundedSemaphore | None,
        outbox: Outbox,
    ) -> None:
        release = None if slots is None else slots.release
        # results wait for the handler to return, then cross together (see Outbox);
        # a handler with requests in flight finishes them later, each on its own
        held = outbox if slots is None else None
        outbox.lone = len(batch) == 1
        items = [JobHandle(job, self._loop, on_done=release, outbox=held) for job in batch]
        self.batches += 1
        try:
            handler.process(items)
        except Exception as exc:
            for item in items:
                item.fail(exc)
        except BaseException as exc:
            crash = WorkerCrashed(
                f"the worker serving this request died ({type(exc).__name__}); it is restarting"
            )
            crash.__cause__ = exc
            for item in items:
                item.fail(crash)
            raise
        finally:
            self.busy_since = None
            self._current = []
        if slots is not None:
            return  # items finish later, from the handler's own threads
        for item in items:
            if not item.done:
                if item.cancelled:
                    item.finish(None)
                else:
                    item.fail(RuntimeError(f"{type(handler).__name__} left a request unanswered"))
