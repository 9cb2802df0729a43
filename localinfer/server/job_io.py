"""Waiting on a job from a request: deadline, client disconnect, and streaming bodies.

A non-streaming request waits on its job's result stream while watching the
connection: if the client goes away the job is cancelled (a queued job is then
dropped before it runs). A streaming response cancels its job when starlette stops
it on disconnect. A deadline cancels the job and answers 504.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from localinfer.errors import LocalInferError, RequestTimeout
from localinfer.runtime.job import Chunk, Done, Job

T = TypeVar("T")


#: how long a request waits before it also watches its connection: most jobs finish
#: sooner, and a watcher (a task) costs about a third of a no-op request's CPU time
WATCH_AFTER_S = 0.05


class _StartWatching(Exception):
    """The job is taking long enough that the connection should be watched too."""


class JobReader:
    """Reads one job's events against an absolute deadline (``anyio.current_time()`` based).

    Each wait uses a single cancel scope: its limit is the request deadline or, during
    the first ``WATCH_AFTER_S`` of a :meth:`guarded` wait, the moment to start watching
    the connection, whichever comes first.
    """

    def __init__(self, job: Job, timeout_s: float):
        self.job = job
        self.timeout_s = timeout_s
        # perf_counter, not the loop's clock: cheaper to read, and only differences are used
        self.deadline = time.perf_counter() + timeout_s
        self._watch_at = float("inf")

    async def next(self) -> Chunk | Done:
        """The next event before the deadline (cancel-safe, like :meth:`Job.next_event`)."""
        limit = min(self.deadline, self._watch_at)
        with anyio.move_on_after(max(limit - time.perf_counter(), 0)):
            return await self.job.next_event()
        if self._watch_at < self.deadline:
            raise _StartWatching
        self.job.cancel("timeout")
        raise RequestTimeout(
            f"the request did not finish within {self.timeout_s:g} s and was cancelled"
        )

    async def rest(self) -> AsyncIterator[Chunk | Done]:
        """The remaining events, up to and including :class:`Done`."""
        while True:
            event = await self.next()
            yield event
            if isinstance(event, Done):
                return

    async def guarded(self, request: Request, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` (which reads through :meth:`next`) and cancel the job if the client
        disconnects or the wait fails.

        ``work`` must be restartable where it left off: it runs alone for up to
        ``WATCH_AFTER_S``, then, if unfinished, again alongside a watcher of the connection.
        Call only once the request body has been read.
        """
        try:
            self._watch_at = time.perf_counter() + WATCH_AFTER_S
            try:
                return await work()
            except _StartWatching:
                pass
            finally:
                self._watch_at = float("inf")
            return await until_disconnect(request, work)
        except BaseException:
            self.job.release("client disconnected or the request failed")
            raise

    async def aclose(self) -> None:
        self.job.release()


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()``; if the client disconnects first, cancel it and raise ``ClientDisconnect``."""
    outcome: list[T] = []
    failure: list[BaseException] = []
    disconnected = False

    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal disconnected
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        try:
            outcome.append(await work())
        except Exception as exc:
            failure.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    if disconnected or not outcome:
        raise ClientDisconnect()
    return outcome[0]


class JobStreamingResponse(StreamingResponse):
    """A streaming response that cancels its job however the response ends."""

    def __init__(self, job: Job, content: AsyncIterator[bytes], **kwargs: Any):
        super().__init__(content, **kwargs)
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel("client disconnected")


def error_event(exc: LocalInferError) -> dict[str, Any]:
    """The error object sent as the last SSE event when a stream fails after it started."""
    from localinfer.server.errors import error_body, status_of

    _, kind = status_of(exc)
    return error_body(exc.message, kind, exc.code, exc.param)
