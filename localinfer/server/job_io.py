"""Waiting on a job from a request: deadline, client disconnect, and streaming bodies.

A request waits on its job's result stream with a plain ``await``: no cancel scope per
wait. Deadlines and disconnects reach the reader as events in that stream instead,
raised by :class:`JobWatch`, one task per server that looks at each job once, shortly
after it was submitted. Most jobs are finished by then and cost nothing more; a job
still running is followed: the watch ends it at its deadline (504) and, while a
request waits for a whole result, a task watches the connection (a disconnect cancels
the job, so a queued one is dropped before it runs). A streaming response cancels its job
when starlette stops it on disconnect.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
from anyio.abc import TaskGroup
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from localinfer.errors import LocalInferError, RequestTimeout
from localinfer.runtime.job import Chunk, Done, Job

T = TypeVar("T")

#: how long after submission a job is looked at: most finish sooner
WATCH_AFTER_S = 0.05
#: how long after submission the connection of a request waiting for a whole result is
#: watched, if its job is still running: a task and a cancel scope each, too dear for
#: the micro-batched jobs (tens of ms) a busy server runs by the hundred per second,
#: and a disconnect sooner than this saves little work
CONNECTION_WATCH_AFTER_S = 0.25
#: the watch wakes at most this often (a check may come up to this much late)
TICK_S = 0.01


class ClientGone(LocalInferError):
    """The client went away while its request waited (never reaches the client)."""

    code = "client_disconnected"


class Watched:
    """One job under watch: its deadline and the connection of the request waiting on it."""

    __slots__ = (
        "check_at",
        "connection_at",
        "deadline",
        "job",
        "request",
        "spawn",
        "timeout_s",
        "watcher",
    )

    def __init__(self, job: Job, timeout_s: float, now: float):
        #: ``None`` once its reader is done with a settled job: the entry waits for its
        #: sweep holding nothing (a job kept alive that long outlives two collections of
        #: the garbage collector's young generations, and makes its full ones run sooner)
        self.job: Job | None = job
        self.timeout_s = timeout_s
        self.deadline = now + timeout_s
        self.check_at = now + WATCH_AFTER_S
        self.connection_at = now + CONNECTION_WATCH_AFTER_S
        #: the request waiting for a whole result, whose connection is to be watched
        self.request: Request | None = None
        #: starts a task in the watch's task group, from ``connection_at`` on
        self.spawn: Callable[..., Any] | None = None
        self.watcher: anyio.CancelScope | None = None

    @property
    def next_check(self) -> float:
        """When the sweep must look at this followed job next."""
        if self.spawn is None:
            return min(self.deadline, self.connection_at)
        return self.deadline

    def watch(self, request: Request) -> None:
        self.request = request
        if self.spawn is not None and self.watcher is None:
            self.spawn(self._watch_connection, request)

    def unwatch(self) -> None:
        self.request = None
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None

    def forget_if_settled(self) -> None:
        """Let go of the job if it has ended: nothing is left to watch."""
        if self.job is not None and self.job.outcome is not None:
            self.job = None

    async def _watch_connection(self, request: Request) -> None:
        if self.request is not request or self.job is None:  # unwatched meanwhile
            return
        with anyio.CancelScope() as scope:
            self.watcher = scope
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    if self.job is not None:
                        self.job.abort(ClientGone("the client disconnected"))
                    return


class JobWatch:
    """Deadlines and disconnect watching for every job a request waits on.

    Use as ``async with JobWatch() as watch:`` on the loop for the server's lifetime.
    One task does it all, in sweeps at most ``TICK_S`` apart: jobs are looked at in
    submission order (all share one delay, so a deque is a queue sorted by due time);
    one still running is followed: each sweep ends it once past its deadline, and from
    ``CONNECTION_WATCH_AFTER_S`` on, a request waiting for its whole result gets a task
    that watches its connection.
    """

    def __init__(self) -> None:
        self._due: deque[Watched] = deque()
        #: jobs still running when looked at, until they settle
        self._followed: list[Watched] = []
        self._task_group: TaskGroup | None = None
        #: set by :meth:`add` when a new job is due before the sweep's next planned look
        self._wakeup: anyio.Event | None = None
        self._wake_at = math.inf

    @property
    def following(self) -> int:
        """Jobs followed now: still running after ``WATCH_AFTER_S``."""
        return sum(w.job is not None and w.job.outcome is None for w in self._followed)

    async def __aenter__(self) -> JobWatch:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._sweep)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None

    def add(self, job: Job, timeout_s: float) -> Watched:
        watched = Watched(job, timeout_s, time.monotonic())
        self._due.append(watched)
        if self._wakeup is not None and watched.check_at < self._wake_at:
            self._wakeup.set()
            self._wakeup = None
        return watched

    async def _sweep(self) -> None:
        due = self._due
        while True:
            now = time.monotonic()
            while due and due[0].check_at <= now:
                watched = due.popleft()
                if watched.job is not None and watched.job.outcome is None:
                    self._follow(watched)
            if self._followed:
                self._check_followed(now)
            # asleep until the next check, or until a job added meanwhile is due sooner:
            # a long stream followed to its far deadline costs no wakeups
            wake_at = min(
                due[0].check_at if due else math.inf,
                min((w.next_check for w in self._followed), default=math.inf),
            )
            self._wake_at = wake_at = max(wake_at, now + TICK_S)
            self._wakeup = wakeup = anyio.Event()
            with anyio.move_on_after(wake_at - now):
                await wakeup.wait()
            self._wakeup, self._wake_at = None, math.inf

    def _follow(self, watched: Watched) -> None:
        self._followed.append(watched)

    def _check_followed(self, now: float) -> None:
        """Forget settled jobs; end those past their deadline; watch connections from
        their time on."""
        assert self._task_group is not None
        still = []
        for watched in self._followed:
            job = watched.job
            if job is None:
                watched.unwatch()
                continue
            if watched.spawn is None and now >= watched.connection_at:
                watched.spawn = self._task_group.start_soon
                if watched.request is not None:
                    watched.watch(watched.request)
            if job.outcome is None and now >= watched.deadline:
                job.abort(
                    RequestTimeout(
                        f"the request did not finish within {watched.timeout_s:g} s "
                        "and was cancelled"
                    )
                )
            if job.outcome is None:
                still.append(watched)
            else:
                watched.unwatch()
        self._followed = still


class JobReader:
    """Reads one job's events; its deadline and disconnects arrive as errors in the stream."""

    def __init__(self, job: Job, timeout_s: float, watch: JobWatch):
        self.job = job
        self.timeout_s = timeout_s
        self._watched = watch.add(job, timeout_s)

    async def next(self) -> Chunk | Done:
        """The next event (cancel-safe, like :meth:`Job.next_event`)."""
        return await self.job.next_event()

    async def rest(self) -> AsyncIterator[Chunk | Done]:
        """The remaining events, up to and including :class:`Done`."""
        while True:
            event = await self.job.next_event()
            yield event
            if isinstance(event, Done):
                return

    @overload
    async def guarded(self, request: Request) -> Chunk | Done: ...

    @overload
    async def guarded(self, request: Request, work: Callable[[], Awaitable[T]]) -> T: ...

    async def guarded(
        self, request: Request, work: Callable[[], Awaitable[Any]] | None = None
    ) -> Any:
        """Run ``work`` (which reads through :meth:`next`; by default: the next event)
        while watching the connection: a disconnect cancels the job and raises
        ``ClientDisconnect``; any failure of the wait releases the job. Call only once
        the request body has been read.
        """
        self._watched.watch(request)
        try:
            return await (self.job.next_event() if work is None else work())
        except ClientGone:
            raise ClientDisconnect() from None
        except BaseException:
            self.job.release("client disconnected or the request failed")
            raise
        finally:
            self._watched.unwatch()
            self._watched.forget_if_settled()

    async def aclose(self) -> None:
        self.job.release()
        self._watched.forget_if_settled()


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
