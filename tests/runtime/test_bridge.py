"""The bridge: jobs to worker threads through memory object streams and results back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest

from localinfer.errors import HandlerFailed, SlowConsumer
from localinfer.handlers.base import Handler, WorkItem
from localinfer.runtime import Chunk, Done, ModelDefinition, ModelRegistry
from localinfer.runtime.job import Job

pytestmark = pytest.mark.anyio


class Counter(Handler):
    """Streams ``n`` integers as fast as it can, counting what it produced."""

    produced = 0

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [self._count(n) for n in inputs]

    def _count(self, n: int) -> Iterator[int]:
        for i in range(n):
            Counter.produced += 1
            yield i


class Doubler(Handler):
    batches: list[int] = []

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        Doubler.batches.append(len(inputs))
        if any(x == "poison" for x in inputs):
            raise ValueError("poison in the batch")
        return [x * 2 for x in inputs]


class Sleepy(Handler):
    def run_batch(self, inputs: list[Any]) -> list[Any]:
        time.sleep(inputs[0])
        return inputs


class OwnThreads(Handler):
    """Finishes items later from its own thread, like a continuous-batching engine."""

    max_in_flight = 4
    live = 0
    peak = 0
    lock = threading.Lock()

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            with OwnThreads.lock:
                OwnThreads.live += 1
                OwnThreads.peak = max(OwnThreads.peak, OwnThreads.live)
            threading.Thread(target=self._later, args=(item,)).start()

    def _later(self, item: WorkItem) -> None:
        time.sleep(0.05)
        item.emit("partial")
        with OwnThreads.lock:
            OwnThreads.live -= 1
        item.finish(item.payload)


def definition(name: str, handler: type[Handler], **kwargs: Any) -> ModelDefinition:
    return ModelDefinition(name=name, create_handler=lambda i, d: handler(), **kwargs)


async def result(job: Job) -> tuple[list[Any], Any]:
    chunks, final = [], None
    async for event in job.events():
        if isinstance(event, Chunk):
            chunks.append(event.value)
        elif isinstance(event, Done):
            final = event.value
    return chunks, final


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_stream_arrives_in_order_on_both_loops() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(definition("count", Counter))
        chunks, final = await result(model.submit(500))
    assert chunks == list(range(500))
    assert final is None


async def test_slow_reader_is_cut_off_and_the_worker_stops() -> None:
    Counter.produced = 0
    async with ModelRegistry() as registry:
        model = registry.add(definition("count", Counter, stream_buffer=16))
        job = model.submit(1_000_000)
        await anyio.sleep(0.5)  # do not read: fall behind
        with pytest.raises(SlowConsumer, match="16 items behind"):
            await result(job)
        produced = Counter.produced
        await anyio.sleep(0.1)
        assert Counter.produced == produced < 1_000_000  # the generator was stopped
        chunks, _ = await result(model.submit(3))  # and the worker is free
        assert chunks == [0, 1, 2]


async def test_cancel_stops_a_running_stream() -> None:
    Counter.produced = 0
    async with ModelRegistry() as registry:
        model = registry.add(definition("count", Counter))
        job = model.submit(10_000_000)
        events = job.events()
        assert isinstance(await events.__anext__(), Chunk)
        await events.aclose()  # the reader leaves: the job is cancelled
        assert job.cancelled
        await anyio.sleep(0.1)
        produced = Counter.produced
        await anyio.sleep(0.1)
        assert Counter.produced == produced < 10_000_000


async def test_micro_batches_and_isolates_a_bad_input() -> None:
    Doubler.batches.clear()
    async with ModelRegistry() as registry:
        model = registry.add(definition("double", Doubler, max_batch_size=8, batch_window_ms=50))
        jobs = [model.submit(x) for x in [1, 2, "poison", 4]]
        outcomes: list[Any] = []
        for job in jobs:
            try:
                outcomes.append((await result(job))[1])
            except HandlerFailed as exc:
                outcomes.append(exc.message)
    assert outcomes == [2, 4, "ValueError: poison in the batch", 8]
    assert Doubler.batches[0] == 4  # all four went in one batch, then were retried alone


async def test_waiting_requests_hold_no_threads() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(definition("sleepy", Sleepy, max_queue=1000))
        await registry.wait_ready(5)
        baseline = threading.active_count()
        jobs = [model.submit(0.002) for _ in range(300)]
        await anyio.sleep(0.05)
        assert threading.active_count() <= baseline + 1  # nothing per waiting request
        results = [(await result(job))[1] for job in jobs]
    assert results == [0.002] * 300


async def test_the_loop_keeps_running_while_workers_are_busy() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(definition("sleepy", Sleepy, workers_per_device=2))
        await registry.wait_ready(5)
        jobs = [model.submit(0.3) for _ in range(4)]
        lateness = []
        for _ in range(30):
            started = time.perf_counter()
            await anyio.sleep(0.01)
            lateness.append(time.perf_counter() - started - 0.01)
        for job in jobs:
            await result(job)
    assert max(lateness) < 0.05


async def test_handlers_that_finish_later_keep_a_bounded_number_in_flight() -> None:
    OwnThreads.live = OwnThreads.peak = 0
    async with ModelRegistry() as registry:
        model = registry.add(definition("own", OwnThreads, max_batch_size=16))
        jobs = [model.submit(i) for i in range(12)]
        results = [await result(job) for job in jobs]
    assert results == [(["partial"], i) for i in range(12)]
    assert 1 < OwnThreads.peak <= 4


async def test_exit_drains_queued_jobs() -> None:
    finished: list[Any] = []
    async with ModelRegistry(drain_timeout_s=5) as registry:
        model = registry.add(definition("sleepy", Sleepy))
        jobs = [model.submit(0.05) for _ in range(3)]

        async def wait(job: Job) -> None:
            finished.append((await result(job))[1])

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(wait, job)
            await anyio.sleep(0.01)
            await registry.remove("sleepy")  # stop taking jobs, finish the queued ones
    assert finished == [0.05] * 3


async def test_a_fast_stream_read_at_once_is_not_cut_off() -> None:
    """A tight generator outruns the loop for a GIL slice; a reader keeping up must not lose."""
    async with ModelRegistry() as registry:
        model = registry.add(definition("count", Counter))
        chunks, _ = await result(model.submit(300_000))  # cut off at 1,024 with the old bound
    assert len(chunks) == 300_000 and chunks[-1] == 299_999


async def test_a_reader_is_judged_slow_by_time_not_by_count() -> None:
    """Items piling up are fine while the reader reads; a reader that stops is cut off."""
    job = Job(None, model="m", request_id="r", stream_buffer=100_000, stall_s=0.2)
    for i in range(2_000):  # far more than a GIL slice's worth, nobody reading yet
        job.deliver(Chunk(i))
    assert await job.next_event() == Chunk(0)  # a reader that reads is never cut off
    for i in range(2_000, 4_000):
        job.deliver(Chunk(i))
    assert not job.cancelled
    await anyio.sleep(0.3)  # the reader stalls past stall_s while items wait
    job.deliver(Chunk("late"))
    assert job.cancelled and job.cancel_reason == "slow consumer"
    for _ in range(3_999):  # what was delivered before the cut-off is still readable
        await job.next_event()
    with pytest.raises(SlowConsumer, match=r"read nothing for 0\.\d s while 3999 items waited"):
        await job.next_event()


def count_handovers(worker: Any) -> list[int]:
    """Record the number of jobs each later trip hands ``worker`` (not the trip it is
    waiting for now, which it asked for already; not the empty hand-over that stops it)."""
    sizes: list[int] = []
    hand = worker._hand

    def counted(batch: list[Job]) -> None:
        if batch:
            sizes.append(len(batch))
        hand(batch)

    worker._hand = counted
    return sizes


async def test_slow_jobs_are_not_prefetched_so_a_free_worker_takes_the_next() -> None:
    """Jobs of 20 ms are taken one per trip: none waits in a busy worker's own list while
    the other worker may be free."""
    async with ModelRegistry() as registry:
        model = registry.add(definition("slow", Sleepy, workers_per_device=2, prefetch=16))
        await registry.wait_ready(timeout_s=10)
        for _ in range(4):  # each worker learns how long a job takes
            await result(model.submit(0.02))
        trips = [count_handovers(worker) for worker in model.workers]
        jobs = [model.submit(0.02) for _ in range(12)]
        for job in jobs:
            await result(job)
    # each worker's first job went to the trip it had asked for already
    assert trips[0] + trips[1] == [1] * 10
    assert trips[0] and trips[1], "both workers served"


async def test_fast_jobs_are_prefetched_in_one_trip() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(definition("fast", Sleepy, prefetch=16))
        await registry.wait_ready(timeout_s=10)
        await result(model.submit(0.0))
        trips = count_handovers(model.workers[0])
        jobs = [model.submit(0.0) for _ in range(10)]
        for job in jobs:
            await result(job)
    # the first goes to the waiting worker at once; the other nine wait for its next trip
    assert trips == [9]
