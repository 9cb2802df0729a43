"""Waiting on a job from a request: deadline, client disconnect, and streaming bodies.

A non-streaming request waits on its job's result stream while watching the
connection: if the client goes away the job is cancelled (a queued job is then
dropped before it runs). A streaming response cancels its job when starlette stops
it on disconnect. A deadline cancels the job and answers 504.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from localinfer.errors import LocalInferError, RequestTimeout
from localinfer.runtime.job import Chunk, Done, Job

T = TypeVar("T")


class JobReader:
    """Reads one job's events against an absolute deadline (``anyio.current_time()`` based)."""

    def __init__(self, job: Job, deadline: float, timeout_s: float):
        self.job = job
        self.deadline = deadline
        self.timeout_s = timeout_s
        self._events = job.events()

    async def next(self) -> Chunk | Done:
        try:
            with anyio.fail_after(max(self.deadline - anyio.current_time(), 0)):
                return await self._events.__anext__()
        except TimeoutError:
            self.job.cancel("timeout")
            raise RequestTimeout(
                f"the request did not finish within {self.timeout_s:g} s and was cancelled"
            ) from None

    async def rest(self) -> AsyncIterator[Chunk | Done]:
        """The remaining events, up to and including :class:`Done`."""
        while True:
            event = await self.next()
            yield event
            if isinstance(event, Done):
                return

    async def aclose(self) -> None:
        await self._events.aclose()


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()``; if the client disconnects first, cancel it and raise ``ClientDisconnect``.

    Call only once the request body has been read.
    """
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
