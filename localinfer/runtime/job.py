"""A job: one request's trip through the queue, a worker and back.

The request coroutine owns the job and reads its result stream; the worker thread sees it
through a :class:`~localinfer.runtime.job_handle.JobHandle`, which pushes events onto the
loop without waiting. A reader that stops reading is cut off, so a slow client can never
stall a worker: judged by time (nothing read for ``stall_s`` while items pile up), with
the stream's buffer as a hard cap on memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from localinfer.errors import (
    HandlerFailed,
    LocalInferError,
    ResourceExhausted,
    SlowConsumer,
)
from localinfer.runtime.loop import Arrival, new_arrival

logger = logging.getLogger(__name__)

#: Items a stream may hold for its reader at most (a cap on memory, not the test of a slow
#: reader). Generous on purpose: a worker holding the GIL for one 5 ms switch interval can
#: queue ~1,400 items before the reading task gets a turn.
DEFAULT_STREAM_BUFFER = 16_384
#: A reader that has read nothing for this long while items pile up is cut off.
DEFAULT_STREAM_STALL_S = 30.0
#: Below this many buffered items nobody is judged slow (the clock is not even read).
_STALL_CHECK_ITEMS = 256


@dataclass(frozen=True, slots=True)
class Chunk:
    """One streamed item (a token, a text piece, some bytes)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Done:
    """The job finished; ``value`` is its result (``None`` after a stream)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Failure:
    """The job failed with ``error``."""

    error: LocalInferError


Event = Chunk | Done | Failure

#: a job's result stream; subscripted once (a subscripted call costs a typing lookup)
_new_stream = anyio.create_memory_object_stream[Event]


class Job:
    """One request. Created and consumed on the event loop.

    Streamed items travel in the job's own memory object stream, opened when the first
    item arrives; the final event (its result or its error) is kept beside it and read
    after the stream's items. A job that answers once, as most do, never needs a stream.
    """

    def __init__(
        self,
        payload: Any,
        *,
        model: str,
        request_id: str,
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
        stall_s: float = DEFAULT_STREAM_STALL_S,
        on_finished: Callable[[Job], None] | None = None,
    ):
        self.payload = payload
        self.model = model
        self.request_id = request_id
        self.cancelled = False
        self.cancel_reason: str | None = None
        self.outcome: str | None = None  # "ok" | "failed" | "cancelled", set once on the loop
        self.submitted_at = time.perf_counter()
        self.started_at: float | None = None  # set by the worker thread
        self.first_output_at: float | None = None
        self.finished_at: float | None = None
        self.chunks = 0
        #: chunks the reader took: ``chunks - _taken`` wait in the stream (the stream's own
        #: ``statistics()`` builds a record per call, and this is asked once per token)
        self._taken = 0
        #: the final event has arrived (no more are taken)
        self._ended = False
        #: the final event, until its reader takes it
        self._final: Done | Failure | None = None
        #: the reader let go (see :meth:`release`): nothing more is kept for it
        self._released = False
        self._settled: anyio.Event | None = None
        #: set when an event arrives for a reader that waits (see :meth:`next_event`)
        self._arrival: Arrival | None = None
        self._buffer = stream_buffer
        self._stall_s = stall_s
        self._check_from = min(stream_buffer, _STALL_CHECK_ITEMS)
        #: when the reader last took an event (or the job was created)
        self._last_read = time.monotonic()
        self._on_finished = on_finished
        self._send: MemoryObjectSendStream[Event] | None = None
        self._receive: MemoryObjectReceiveStream[Event] | None = None

    # -- loop side ---------------------------------------------------------------------

    def cancel(self, reason: str) -> None:
        """Mark the job cancelled: a queued job is dropped, a running one stops at its next item."""
        if self.cancelled or self.outcome is not None:
            return
        self.cancelled = True
        self.cancel_reason = reason
        self._settle("cancelled")

    def abort(self, error: LocalInferError) -> None:
        """End the job from the loop's side (deadline, disconnect): it is cancelled and its
        reader gets ``error`` as the next event, after anything already delivered."""
        if self.outcome is not None:
            return
        self.cancel(error.message)
        if not self._ended:
            self._end(Failure(error))

    async def settled(self) -> None:
        """Wait until the job has an outcome (finished, failed or cancelled)."""
        if self.outcome is None:
            if self._settled is None:
                self._settled = anyio.Event()
            await self._settled.wait()

    def deliver(self, event: Event) -> None:
        """Hand an event from the worker to the reader (runs on the loop)."""
        if self._ended:
            return
        if isinstance(event, Chunk):
            if self._released:
                return  # the reader is gone; nothing to keep
            send = self._send
            if send is None:
                # two extra slots so the cut-off's error always fits behind a full buffer
                send, self._receive = _new_stream(self._buffer + 2)
                self._send = send
            behind = self.chunks - self._taken
            if behind >= self._check_from:
                if behind >= self._buffer:
                    self._cut_off(f"the reader fell more than {self._buffer} items behind")
                    return
                stalled = time.monotonic() - self._last_read
                if stalled > self._stall_s:
                    self._cut_off(
                        f"the reader read nothing for {stalled:.1f} s while {behind} items waited"
                    )
                    return
            self.chunks += 1
            send.send_nowait(event)
            self._wake()
            return
        self._end(event)
        self._settle("ok" if isinstance(event, Done) else "failed")

    def _cut_off(self, why: str) -> None:
        self.cancel("slow consumer")
        self._end(Failure(SlowConsumer(f"{why} and was cut off")))

    def _end(self, final: Done | Failure) -> None:
        self._ended = True
        if not self._released:
            self._final = final
        self._wake()

    def _wake(self) -> None:
        arrival = self._arrival
        if arrival is not None:
            self._arrival = None
            if not arrival.done():  # done: its wait was cancelled
                arrival.set_result(None)

    def _settle(self, outcome: str) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        self.finished_at = time.perf_counter()
        if self._settled is not None:
            self._settled.set()
        if self._on_finished is not None:
            self._on_finished(self)

    async def next_event(self) -> Chunk | Done:
        """The next chunk or the final :class:`Done`; raise the job's error on failure.

        Cancel-safe: a wait interrupted by a timeout or cancel scope loses nothing, and
        the next call picks up where it left off.
        """
        while True:
            # no checkpoint when an event is waiting: a stream's items come in runs
            chunk = self.chunk_nowait()
            if chunk is not None:
                return chunk
            final = self._final
            if final is not None:
                self._final = None
                if isinstance(final, Failure):
                    raise final.error
                return final
            if self._ended or self._released:
                # nothing more will come: the job was cancelled on our side
                raise HandlerFailed(
                    f"job ended without a result ({self.cancel_reason or 'closed'})"
                )
            # wait for the next delivery, then take it: the stream's own receive() costs
            # a checkpoint and a task lookup on every wait
            self._arrival = arrival = new_arrival()
            await arrival

    def chunk_nowait(self) -> Chunk | None:
        """The next streamed item if one is already waiting, else ``None`` (never waits):
        a reader forwarding items elsewhere sends those that came together as one burst."""
        if self._receive is None or self._released:
            return None
        try:
            chunk = self._receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return None
        self._last_read = time.monotonic()
        self._taken += 1
        assert isinstance(chunk, Chunk)
        return chunk

    def release(self, reason: str = "caller went away") -> None:
        """The reader is done with the job: cancel it if it is still running."""
        if self.outcome is None:
            self.cancel(reason)
        self._released = True
        self._final = None
        if self._receive is not None:
            self._receive.close()  # drops what the stream still holds

    async def events(self) -> AsyncGenerator[Chunk | Done, None]:
        """Yield chunks, then the final :class:`Done`; raise the job's error on failure.

        Leaving the iteration early (the caller was cancelled, disconnected or timed out)
        cancels the job.
        """
        try:
            while True:
                event = await self.next_event()
                yield event
                if isinstance(event, Done):
                    return
        finally:
            self.release()

    # -- timing, in milliseconds ---------------------------------------------------------

    @property
    def queue_ms(self) -> float | None:
        return None if self.started_at is None else (self.started_at - self.submitted_at) * 1e3

    @property
    def run_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at) * 1e3

    @property
    def latency_ms(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.submitted_at) * 1e3


def as_localinfer_error(exc: BaseException) -> LocalInferError:
    """Classify an exception raised by model code into the error hierarchy."""
    if isinstance(exc, LocalInferError):
        return exc
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        error: LocalInferError = ResourceExhausted(
            f"out of memory while serving this request: {exc}".rstrip(": ")
        )
    else:
        error = HandlerFailed(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
