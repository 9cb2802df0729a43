"""Micro-batching and the bounded queue."""

from __future__ import annotations

import anyio
import pytest

from localinfer.errors import QueueFull
from localinfer.runtime.job import Job
from localinfer.runtime.scheduler import JobQueue, StopSignal, retry_after_seconds

pytestmark = pytest.mark.anyio


def job(payload: object) -> Job:
    return Job(payload, model="m", request_id=str(payload))


async def test_full_queue_refuses_at_once() -> None:
    queue = JobQueue("m", max_size=2)
    queue.submit(job(1))
    queue.submit(job(2))
    with pytest.raises(QueueFull, match="2 requests queued"):
        queue.submit(job(3))
    assert queue.depth == 2


async def test_batch_fills_up_to_max_size_without_waiting() -> None:
    queue = JobQueue("m", max_size=10)
    for i in range(5):
        queue.submit(job(i))
    with anyio.fail_after(0.5):  # a full batch does not wait out the window
        batch = await queue.next_batch(3, window_s=10)
    assert [j.payload for j in batch] == [0, 1, 2]
    batch = await queue.next_batch(3, window_s=0)
    assert [j.payload for j in batch] == [3, 4]


async def test_window_gathers_late_arrivals() -> None:
    queue = JobQueue("m", max_size=10)
    for name in ("first", "second", "third"):
        queue.submit(job(name))
    assert len(await queue.next_batch(8, window_s=0)) == 3  # the server is busy
    queue.submit(job("a"))

    async def late() -> None:
        await anyio.sleep(0.02)
        queue.submit(job("b"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        started = anyio.current_time()
        batch = await queue.next_batch(8, window_s=0.5)
        waited = anyio.current_time() - started
    assert [j.payload for j in batch] == ["a", "b"]  # b came within a pause of 0.05 s
    # then nothing came for a tenth of the window: the batch closed, not at 0.5 s
    assert 0.02 + 0.05 <= waited < 0.3


async def test_steady_arrivals_keep_the_window_open_to_its_end() -> None:
    queue = JobQueue("m", max_size=100)
    for i in range(45):
        queue.submit(job(f"busy {i}"))
    assert len(await queue.next_batch(50, window_s=0)) == 45  # the server is busy
    queue.submit(job(0))

    async def steady() -> None:
        for i in range(1, 40):
            await anyio.sleep(0.01)  # closer together than the gap (0.03 s)
            queue.submit(job(i))

    async with anyio.create_task_group() as tg:
        tg.start_soon(steady)
        started = anyio.current_time()
        batch = await queue.next_batch(50, window_s=0.3)
        waited = anyio.current_time() - started
        tg.cancel_scope.cancel()
    assert 0.25 <= waited < 0.6  # the whole window, never a pause long enough to close
    assert [j.payload for j in batch] == list(range(len(batch)))
    assert len(batch) >= 10


async def test_a_batch_closes_once_as_many_as_last_time_are_back() -> None:
    queue = JobQueue("m", max_size=10)
    for name in ("first", "second", "third"):
        queue.submit(job(name))
    assert len(await queue.next_batch(8, window_s=0)) == 3
    queue.submit(job("a"))

    async def the_others_come_back() -> None:
        for name in ("b", "c", "d"):
            await anyio.sleep(0.02)  # closer together than the gap (0.1 s)
            queue.submit(job(name))

    async with anyio.create_task_group() as tg:
        tg.start_soon(the_others_come_back)
        started = anyio.current_time()
        batch = await queue.next_batch(8, window_s=1.0)
        waited = anyio.current_time() - started
    # closed when the third came: neither a pause nor the window was waited for, and
    # "d", which came within the gap, went to the next batch
    assert [j.payload for j in batch] == ["a", "b", "c"]
    assert 0.04 <= waited < 0.12


async def test_max_size_one_never_waits() -> None:
    queue = JobQueue("m", max_size=10)
    queue.submit(job("a"))
    with anyio.fail_after(0.1):
        assert [j.payload for j in await queue.next_batch(1, window_s=5)] == ["a"]


async def test_cancelled_jobs_are_dropped_before_running() -> None:
    queue = JobQueue("m", max_size=10)
    jobs = [job(i) for i in range(4)]
    for j in jobs:
        queue.submit(j)
    jobs[0].cancel("caller went away")
    jobs[2].cancel("timeout")
    batch = await queue.next_batch(8, window_s=0)
    assert [j.payload for j in batch] == [1, 3]
    assert queue.dropped == 2


async def test_closed_queue_drains_then_returns_empty() -> None:
    queue = JobQueue("m", max_size=10)
    queue.submit(job("last"))
    queue.close()
    assert [j.payload for j in await queue.next_batch(4, 0)] == ["last"]
    assert await queue.next_batch(4, 0) == []


async def test_a_lone_caller_does_not_wait_out_the_window() -> None:
    queue = JobQueue("m", max_size=10)
    queue.submit(job("alone"))
    started = anyio.current_time()
    assert [j.payload for j in await queue.next_batch(8, window_s=5)] == ["alone"]
    assert anyio.current_time() - started < 0.5
    # once batches have company, the window is waited out for late arrivals
    for name in ("x", "y"):
        queue.submit(job(name))
    assert len(await queue.next_batch(8, window_s=0)) == 2
    queue.submit(job("z"))
    with anyio.move_on_after(0.05) as waited:
        await queue.next_batch(8, window_s=5)
    assert waited.cancelled_caught


def test_retry_after_follows_throughput() -> None:
    assert retry_after_seconds(100, 0.0) == 1.0
    assert retry_after_seconds(100, 10.0) == 10.0
    assert retry_after_seconds(1, 100.0) == 1.0


# -- offer: workers that take jobs as they come, without a task per trip ----------------------


class Taker:
    """Records what the queue hands a worker."""

    def __init__(self) -> None:
        self.batches: list[list[object]] = []

    def __call__(self, batch: list[Job]) -> None:
        self.batches.append([j.payload for j in batch])


async def test_offer_hands_what_is_queued_at_once() -> None:
    queue = JobQueue("m", max_size=10)
    for i in range(3):
        queue.submit(job(i))
    taker = Taker()
    queue.offer(taker, 8)
    assert taker.batches == [[0, 1, 2]]
    assert queue.depth == 0


async def test_offer_waits_for_the_next_submission_first_come_first_served() -> None:
    queue = JobQueue("m", max_size=10)
    first, second = Taker(), Taker()
    queue.offer(first, 1)
    queue.offer(second, 1)
    assert first.batches == second.batches == []
    queue.submit(job("a"))
    assert first.batches == [["a"]] and second.batches == []
    queue.submit(job("b"))
    assert second.batches == [["b"]]


async def test_offer_takes_a_fair_share_of_the_queue_up_to_the_prefetch() -> None:
    queue = JobQueue("m", max_size=100)
    for i in range(40):
        queue.submit(job(i))
    taker = Taker()
    queue.offer(taker, 1, prefetch=16, workers=4)  # the first, then 39 // 4 = 9 more
    assert taker.batches == [list(range(10))]
    queue.offer(taker, 1, prefetch=4, workers=1)  # capped by the prefetch
    assert taker.batches[1] == list(range(10, 14))


async def test_offer_drops_cancelled_jobs_and_keeps_waiting() -> None:
    queue = JobQueue("m", max_size=10)
    taker = Taker()
    queue.offer(taker, 1)
    gone = job("gone")
    gone.cancel("caller went away")
    queue.submit(gone)  # handed to nobody: dropped
    assert taker.batches == [] and queue.dropped == 1
    queue.submit(job("live"))
    assert taker.batches == [["live"]]


async def test_a_stop_or_a_close_ends_the_wait_with_an_empty_batch() -> None:
    queue = JobQueue("m", max_size=10)
    stopped, closed = Taker(), Taker()
    stop = StopSignal()
    queue.offer(stopped, 1, stop=stop)
    queue.offer(closed, 1)
    stop.trigger()
    assert stopped.batches == [[]]
    queue.close()
    assert closed.batches == [[]]
    queue.offer(closed, 1)  # closed and drained: the end, at once
    assert closed.batches == [[], []]


async def test_a_stop_after_the_hand_over_changes_nothing() -> None:
    queue = JobQueue("m", max_size=10)
    taker = Taker()
    stop = StopSignal()
    queue.offer(taker, 1, stop=stop)
    queue.submit(job("a"))
    stop.trigger()  # the worker got its job: nothing to withdraw
    assert taker.batches == [["a"]]
    queue.offer(taker, 1, stop=stop)  # and the next offer ends at once
    assert taker.batches == [["a"], []]
