"""A device-bound worker thread: load the handler on its device, then serve batches."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from localinfer.errors import WorkerCrashed
from localinfer.handlers.base import bind_context
from localinfer.runtime.job import Job, JobHandle
from localinfer.runtime.loop import LoopClosed, LoopHandle
from localinfer.runtime.scheduler import JobQueue, StopSignal

if TYPE_CHECKING:
    from localinfer.handlers.base import Handler, HandlerContext

logger = logging.getLogger(__name__)

HandlerFactory = Callable[[int, str], "Handler"]

#: Loads run one at a time, process-wide: transformers' ``from_pretrained`` patches global
#: state while it builds a model (default dtype, ``tie_weights``, ``torch.linspace``), and
#: two loads in parallel threads corrupt each other ("Cannot copy out of meta tensor").
_LOAD_LOCK = threading.Lock()


class WorkerState:
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"  # the handler could not load
    DEAD = "dead"  # the thread died while serving; a new one is on its way
    STOPPED = "stopped"


# OpenMP threads that spin while waiting steal the cores the event loop and the other
# workers need: generation ran up to 30x slower on a busy 2-core machine. Set before
# torch is first imported (handlers import it in their worker threads); a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
    ):
        self.model = model
        self.index = index
        self.device = device
        self.generation = generation
        self.state = WorkerState.LOADING
        self.error: str | None = None
        self.batches = 0
        self.busy_since: float | None = None
        self._create_handler = create_handler
        self._queue = queue
        self._max_batch_size = max_batch_size
        self._batch_window_s = batch_window_s
        self._prefetch = prefetch
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

    def _report(self, state: str, error: BaseException | None = None) -> None:
        try:
            self._loop.call_soon(self._on_state, self, state, error)
        except LoopClosed:
            pass

    def _main(self) -> None:
        try:
            bind_thread_to_device(self.device)
            if self._context is not None:
                bind_context(None, self._context)  # for user code, before it is even built
            with _LOAD_LOCK:
                handler = self._create_handler(self.index, self.device)
                if self._context is not None:
                    bind_context(handler, self._context)
                handler.load(self.device)
        except BaseException as exc:
            logger.exception(
                "model %s worker %d failed to load on %s", self.model, self.index, self.device
            )
            self._report(WorkerState.FAILED, exc)
            return
        self._report(WorkerState.READY)
        exit_state, exit_error = WorkerState.STOPPED, None
        in_flight = max(1, int(getattr(handler, "max_in_flight", 1)))
        slots = threading.BoundedSemaphore(in_flight) if in_flight > 1 else None
        try:
            while True:
                size = (
                    self._max_batch_size
                    if slots is None
                    else _take_slots(slots, self._max_batch_size)
                )
                try:
                    batch = self._loop.run(
                        partial(
                            self._queue.next_batch,
                            size,
                            self._batch_window_s,
                            prefetch=self._prefetch if slots is None else 1,
                            workers=self.peers,
                            stop=self.stop,
                        )
                    )
                except LoopClosed:
                    break
                if slots is not None:
                    for _ in range(size - len(batch)):
                        slots.release()
                if not batch:
                    break
                if self._max_batch_size == 1 and slots is None:
                    for job in batch:  # prefetched: served one at a time, in order
                        self._serve(handler, [job], None)
                else:
                    self._serve(handler, batch, slots)
            if slots is not None:  # let items still generating finish before closing
                for _ in range(in_flight):
                    slots.acquire()
        except BaseException as exc:
            logger.critical("model %s worker %d died: %r", self.model, self.index, exc)
            exit_state, exit_error = WorkerState.DEAD, exc
        finally:
            try:
                handler.close()
            except Exception:
                logger.exception("model %s worker %d: close() failed", self.model, self.index)
            del handler
        self._report(exit_state, exit_error)

    def _serve(
        self, handler: Handler, batch: list[Job], slots: threading.BoundedSemaphore | None
    ) -> None:
        release = None if slots is None else slots.release
        items = [JobHandle(job, self._loop, on_done=release) for job in batch]
        self.busy_since = time.monotonic()
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
        if slots is not None:
            return  # items finish later, from the handler's own threads
        for item in items:
            if not item.done:
                if item.cancelled:
                    item.finish(None)
                else:
                    item.fail(RuntimeError(f"{type(handler).__name__} left a request unanswered"))
