"""Reading a job's events against a deadline, for callers in this process (``Engine``).

The HTTP server reads its jobs through :mod:`localinfer.server.job_io` instead: one
watch task there ends late jobs and follows client connections, which a caller in
process does not have.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio

from localinfer.errors import RequestTimeout
from localinfer.runtime.job import Chunk, Done, Job


async def events_within(job: Job, timeout_s: float | None) -> AsyncGenerator[Chunk | Done, None]:
    """The job's events up to :class:`Done`, cancelling it past ``timeout_s`` (``None``:
    no deadline); leaving early releases the job."""
    try:
        if timeout_s is None:  # no scope per event: the cheapest path
            while not isinstance(event := await job.next_event(), Done):
                yield event
            yield event
            return
        deadline = anyio.current_time() + timeout_s
        while True:
            timed: Chunk | Done | None = None
            with anyio.move_on_after(deadline - anyio.current_time()):
                timed = await job.next_event()
            if timed is None:
                job.cancel("timeout")
                raise RequestTimeout(
                    f"the call did not finish within {timeout_s:g} s and was cancelled"
                )
            yield timed  # outside the scope: a deadline must not cancel the reader's code
            if isinstance(timed, Done):
                return
    finally:
        job.release()
