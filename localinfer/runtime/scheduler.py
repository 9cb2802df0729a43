"""The job queue of one model, and micro-batching.

Requests enter with ``send_nowait`` (a full queue answers at once, never waits).
A worker that takes jobs as they come (no batching window) asks with
:meth:`JobQueue.offer`, a plain call on the loop: it is handed what is queued now, or
else the next job the moment it is submitted, with no task and no wait on the loop. A
worker that micro-batches runs :meth:`JobQueue.next_batch` on the loop: wait for one
job, then gather more for up to ``window_s`` or until ``max_size``. Cancelled jobs are
dropped here, before any worker spends time on them. A :class:`StopSignal` ends one
worker's wait for work (scaling down) without touching the queue or losing a job.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from localinfer.errors import ModelNotReady, QueueFull
from localinfer.runtime.job import Job

#: A micro-batch closes early when no job arrived for this share of its window (but at
#: least ``MIN_ARRIVAL_GAP_S``): the callers that were coming have come.
ARRIVAL_GAP_OF_WINDOW = 0.1
MIN_ARRIVAL_GAP_S = 0.001


class StopSignal:
    """Tells one worker to stop taking jobs. Loop-side only.

    While the worker waits for its first job, :meth:`trigger` cancels that wait (an
    idle wait holds no job, so nothing is lost); later, the flag makes the worker's next
    :meth:`JobQueue.next_batch` return an empty batch, so it exits as at shutdown.
    """

    __slots__ = ("_on_trigger", "triggered")

    def __init__(self) -> None:
        self.triggered = False
        #: ends the current wait for work, if the worker waits
        self._on_trigger: Callable[[], None] | None = None

    def trigger(self) -> None:
        self.triggered = True
        if self._on_trigger is not None:
            on_trigger, self._on_trigger = self._on_trigger, None
            on_trigger()

    def while_waiting(self, end_wait: Callable[[], None]) -> None:
        """Have :meth:`trigger` call ``end_wait`` (once), until :meth:`done_waiting`."""
        self._on_trigger = end_wait

    def done_waiting(self, end_wait: Callable[[], None]) -> None:
        if self._on_trigger == end_wait:  # (bound methods are equal, not identical)
            self._on_trigger = None

    async def receive(self, stream: MemoryObjectReceiveStream[Job]) -> Job | None:
        """The next job, or ``None`` once triggered."""
        if self.triggered:
            return None
        with anyio.CancelScope() as scope:
            self.while_waiting(scope.cancel)
            try:
                return await stream.receive()
            finally:
                self.done_waiting(scope.cancel)
        return None


Hand = Callable[[list[Job]], None]


@dataclass(eq=False, slots=True)
class _Taker:
    """A worker waiting for its next jobs (see :meth:`JobQueue.offer`)."""

    hand: Hand
    most: int
    prefetch: int
    workers: int
    stop: StopSignal | None
    #: what ``stop`` calls while this taker waits
    withdraw: Callable[[], None] | None = None


class JobQueue:
    """A bounded queue of jobs for one model, shared by all its workers."""

    def __init__(self, model: str, max_size: int):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.model = model
        self.max_size = max_size
        self.dropped = 0
        self._last_batch_size = 0  # of the previous micro-batch: is there company?
        self._send, self._receive = anyio.create_memory_object_stream[Job](max_size)
        #: workers that asked for jobs when none was queued, first come first served
        self._takers: deque[_Taker] = deque()

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used

    def submit(self, job: Job) -> None:
        try:
            self._send.send_nowait(job)
        except anyio.WouldBlock:
            raise QueueFull(
                f"model {self.model!r} has {self.max_size} requests queued; retry later"
            ) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ModelNotReady(f"model {self.model!r} is shutting down") from None
        while self._takers and self.depth:
            taker = self._takers.popleft()
            if not self._hand_now(taker):  # only cancelled jobs were queued
                self._takers.appendleft(taker)
                break

    def close(self) -> None:
        """No more jobs: workers drain what is queued, then get an empty batch and stop."""
        self._send.close()
        while self._takers:  # none waits while jobs are queued: nothing left to drain
            self._give(self._takers.popleft(), [])

    def offer(
        self,
        hand: Hand,
        most: int,
        *,
        prefetch: int = 1,
        workers: int = 1,
        stop: StopSignal | None = None,
    ) -> None:
        """Call ``hand(batch)`` with jobs for one worker: now if some are queued, else as
        soon as one is submitted; ``hand([])`` once the queue is closed and drained, or
        once ``stop`` is triggered. On the loop, without waiting: no task per trip.

        Takes up to ``most`` queued jobs; with ``most == 1`` (a handler that serves one
        job at a time) up to ``prefetch`` of them, within a fair share of the queue
        (``depth / workers``), so that under load one trip between the loop and a worker
        thread serves many jobs.
        """
        if stop is not None and stop.triggered:
            hand([])
            return
        taker = _Taker(hand, most, prefetch, workers, stop)
        if self._hand_now(taker):
            return
        self._takers.append(taker)
        if stop is not None:
            taker.withdraw = lambda: self._withdraw(taker)
            stop.while_waiting(taker.withdraw)

    def _withdraw(self, taker: _Taker) -> None:
        try:
            self._takers.remove(taker)
        except ValueError:
            return  # handed its jobs meanwhile
        taker.hand([])

    @staticmethod
    def _give(taker: _Taker, batch: list[Job]) -> None:
        if taker.stop is not None and taker.withdraw is not None:
            taker.stop.done_waiting(taker.withdraw)
        taker.hand(batch)

    def _hand_now(self, taker: _Taker) -> bool:
        """Hand ``taker`` the live jobs queued now; whether it got any (or the end)."""
        batch: list[Job] = []
        while not batch:
            try:
                self._take(self._receive.receive_nowait(), batch)
            except anyio.WouldBlock:
                return False
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._give(taker, [])
                return True
        if taker.most > 1:
            extra = taker.most - 1
        else:
            extra = self._prefetch_share(taker.prefetch, taker.workers)
        while extra > 0:
            try:
                job = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if not job.cancelled:
                extra -= 1
            self._take(job, batch)
        self._last_batch_size = len(batch)
        self._give(taker, batch)
        return True

    async def next_batch(
        self,
        max_size: int,
        window_s: float,
        *,
        prefetch: int = 1,
        workers: int = 1,
        stop: StopSignal | None = None,
    ) -> list[Job]:
        """Wait for a live job, then gather up to ``max_size`` within ``window_s``.

        With ``max_size == 1`` (a handler that serves one job at a time), jobs already
        waiting are taken too — at most ``prefetch`` and a fair share (``depth / workers``)
        — so that under load one trip between loop and worker thread serves many jobs
        instead of one. Returns an empty list once the queue is closed and drained, or
        once ``stop`` is triggered.

        The window is only waited out when there is company: if nothing else is queued
        and the previous batch was a single job too, a lone caller is served at once
        instead of paying the window. Under load batches grow, and the window applies,
        closing early once arrivals pause for a tenth of it, or once the batch is as
        large as the previous one and nothing else waits (clients that each wait for
        their answer before asking again all came back: waiting longer gains nobody).
        """
        batch: list[Job] = []
        while not batch:
            try:
                if stop is None:
                    job = await self._receive.receive()
                elif (maybe := await stop.receive(self._receive)) is None:
                    return []
                else:
                    job = maybe
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return []
            self._take(job, batch)
        if max_size <= 1:
            extra = self._prefetch_share(prefetch, workers)
            while extra > 0:
                try:
                    self._take(self._receive.receive_nowait(), batch)
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                extra -= 1
            return batch
        if self._last_batch_size <= 1 and self.depth == 0:
            self._last_batch_size = len(batch)
            return batch
        deadline = anyio.current_time() + max(window_s, 0.0)
        arrival_gap_s = max(window_s * ARRIVAL_GAP_OF_WINDOW, MIN_ARRIVAL_GAP_S)
        while len(batch) < max_size:
            try:
                self._take(self._receive.receive_nowait(), batch)
                continue
            except anyio.WouldBlock:
                pass
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if len(batch) >= self._last_batch_size > 1:
                break  # as many as last time and none waiting: the company is back
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            # a burst is over once arrivals pause: waiting out the rest of the window then
            # only delays the whole batch
            with anyio.move_on_after(min(remaining, arrival_gap_s)) as waited:
                try:
                    self._take(await self._receive.receive(), batch)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    break
            if waited.cancelled_caught:
                break
        self._last_batch_size = len(batch)
        return batch

    def _prefetch_share(self, prefetch: int, workers: int) -> int:
        """Queued jobs a one-at-a-time worker takes beyond its first: its fair share."""
        return min(prefetch - 1, self.depth // max(workers, 1))

    def _take(self, job: Job, batch: list[Job]) -> None:
        if job.cancelled:
            self.dropped += 1
        else:
            batch.append(job)


def retry_after_seconds(depth: int, throughput_per_s: float) -> float:
    """How long until the queue has room, judged from recent throughput (at least 1 s)."""
    if throughput_per_s <= 0:
        return 1.0
    return float(max(1, math.ceil(depth / throughput_per_s)))
