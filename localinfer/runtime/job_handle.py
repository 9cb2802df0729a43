"""The worker thread's side of a job: the handle a handler emits, finishes or fails through,
and the outbox that carries a batch's results to the loop in one trip.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from localinfer.errors import LocalInferError
from localinfer.runtime.job import Chunk, Done, Event, Failure, Job, as_localinfer_error
from localinfer.runtime.loop import LoopClosed, LoopHandle

logger = logging.getLogger(__name__)


class Outbox:
    """The results of a batch, held by the worker thread while its handler runs.

    They cross to the loop together, with the worker's request for more work: one trip
    (one wakeup of the loop) per batch instead of one per job, and the loop does not
    start answering (and take the GIL) while the thread still finishes the others.
    Only results the worker thread itself sends are held: streamed items cross at once,
    a job finished later from another thread (continuous batching) is sent at once, and
    so is a failure in a batch of several (a bad input is answered before the batch runs).
    """

    __slots__ = ("events", "lone", "thread")

    def __init__(self) -> None:
        self.events: list[tuple[Job, Event]] = []
        self.thread = threading.get_ident()
        #: the batch being served is a single job (its failure may wait too)
        self.lone = True

    def take(self) -> list[tuple[Job, Event]]:
        events, self.events = self.events, []
        return events


def deliver_all(events: list[tuple[Job, Event]]) -> None:
    """On the loop: deliver the events an :class:`Outbox` held, in order."""
    for job, event in events:
        job.deliver(event)


class JobHandle:
    """The worker thread's view of a job: read the payload, emit, finish or fail.

    Every method returns at once; events reach the loop through ``call_soon`` (the final
    one through ``outbox``, if given, when sent from the worker thread).
    Implements :class:`localinfer.handlers.base.WorkItem`.
    """

    __slots__ = ("_done", "_job", "_loop", "_on_done", "_outbox")

    def __init__(
        self,
        job: Job,
        loop: LoopHandle,
        on_done: Callable[[], None] | None = None,
        outbox: Outbox | None = None,
    ):
        self._job = job
        self._loop = loop
        self._done = False
        self._on_done = on_done
        self._outbox = outbox
        job.started_at = time.perf_counter()

    @property
    def payload(self) -> Any:
        return self._job.payload

    @property
    def request_id(self) -> str:
        return self._job.request_id

    @property
    def cancelled(self) -> bool:
        return self._job.cancelled

    @property
    def done(self) -> bool:
        return self._done

    def emit(self, chunk: Any) -> None:
        if self._done:
            raise RuntimeError("emit() after the job finished")
        if self._job.first_output_at is None:
            self._job.first_output_at = time.perf_counter()
        self._send(Chunk(chunk))

    def finish(self, result: Any = None) -> None:
        if self._done:
            raise RuntimeError("finish() called twice")
        self._done = True
        self._send_final(Done(result))
        if self._on_done is not None:
            self._on_done()

    def fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        if self._on_done is not None:
            self._on_done()
        classified = as_localinfer_error(error)
        if not isinstance(error, LocalInferError):
            logger.error(
                "request %s: model %s raised %s",
                self._job.request_id,
                self._job.model,
                classified.message,
                exc_info=error,
            )
        self._send_final(Failure(classified))

    def _send_final(self, event: Event) -> None:
        outbox = self._outbox
        if (
            outbox is not None
            and outbox.thread == threading.get_ident()
            and (outbox.lone or isinstance(event, Done))
        ):
            outbox.events.append((self._job, event))
        else:
            self._send(event)

    def _send(self, event: Event) -> None:
        try:
            self._loop.call_soon(self._job.deliver, event)
        except LoopClosed:
            pass  # the server is gone; nobody is waiting
