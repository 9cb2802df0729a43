"""The cost of reading one job's stream through ``JobReader``, in µs per item.

Two cases, in process on one core: items already buffered (a worker that ran ahead:
a generator's run of tokens), and items handed one at a time while the reader waits.
Every SSE event and every collected item pays this once. Compare revisions by running
it in each checkout (``git worktree add``): the numbers in docs/benchmarks.md were
taken that way.

Run: ``taskset -c 0 python -m bench.reader_cost``.
"""

from __future__ import annotations

import statistics
import time

import anyio
import anyio.lowlevel

from localinfer.runtime.job import Chunk, Done, Job
from localinfer.server.job_io import JobReader, JobWatch

ITEMS = 50_000
REPS = 5


async def buffered(watch: JobWatch) -> float:
    job = Job(None, model="m", request_id="r", stream_buffer=ITEMS + 10)
    for i in range(ITEMS):
        job.deliver(Chunk(i))
    job.deliver(Done(None))
    reader = JobReader(job, 60.0, watch)
    started = time.perf_counter()
    while not isinstance(await reader.next(), Done):
        pass
    return (time.perf_counter() - started) / ITEMS * 1e6


async def one_at_a_time(watch: JobWatch) -> float:
    items = ITEMS // 5
    job = Job(None, model="m", request_id="r")
    reader = JobReader(job, 60.0, watch)

    async def produce() -> None:
        for i in range(items):
            job.deliver(Chunk(i))
            await anyio.lowlevel.checkpoint()
        job.deliver(Done(None))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        while not isinstance(await reader.next(), Done):
            pass
    return (time.perf_counter() - started) / items * 1e6


async def main() -> None:
    async with JobWatch() as watch:
        ahead = [await buffered(watch) for _ in range(REPS)]
        waiting = [await one_at_a_time(watch) for _ in range(REPS)]
    print(f"buffered:      {statistics.median(ahead):6.2f} us/item (median of {REPS})")
    print(f"one at a time: {statistics.median(waiting):6.2f} us/item (median of {REPS})")


if __name__ == "__main__":
    anyio.run(main)
