"""A job's events reach its reader in order, once, on either loop, whatever ends it."""

from __future__ import annotations

import anyio
import pytest

from localinfer.errors import HandlerFailed, RequestTimeout, SlowConsumer
from localinfer.runtime.job import Chunk, Done, Failure, Job

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]


def job(**options: object) -> Job:
    return Job("payload", model="m", request_id="r", **options)  # type: ignore[arg-type]


async def test_a_single_result_is_read_once() -> None:
    j = job()
    j.deliver(Done(42))
    assert await j.next_event() == Done(42)
    assert j.outcome == "ok"
    with pytest.raises(HandlerFailed, match="ended without a result"):
        await j.next_event()


async def test_items_come_before_the_end_even_when_the_end_arrives_first() -> None:
    j = job()
    for value in "abc":
        j.deliver(Chunk(value))
    j.deliver(Done(None))
    j.deliver(Chunk("late"))  # after the end: dropped
    assert [await j.next_event() for _ in range(4)] == [*map(Chunk, "abc"), Done(None)]
    assert j.chunks == 3


async def test_a_failure_is_raised_after_the_items_before_it() -> None:
    j = job()
    j.deliver(Chunk(1))
    j.deliver(Failure(HandlerFailed("boom")))
    assert await j.next_event() == Chunk(1)
    with pytest.raises(HandlerFailed, match="boom"):
        await j.next_event()
    assert j.outcome == "failed"


async def test_a_waiting_reader_is_woken_by_each_delivery() -> None:
    j = job()
    got: list[Chunk | Done] = []

    async def read() -> None:
        while not isinstance(event := await j.next_event(), Done):
            got.append(event)
        got.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        for value in range(3):
            await anyio.sleep(0.01)
            j.deliver(Chunk(value))
        await anyio.sleep(0.01)
        j.deliver(Done("end"))
    assert got == [Chunk(0), Chunk(1), Chunk(2), Done("end")]


async def test_a_cancelled_wait_loses_nothing() -> None:
    j = job()
    with anyio.move_on_after(0.02) as scope:
        await j.next_event()
    assert scope.cancelled_caught
    j.deliver(Chunk("kept"))
    j.deliver(Done(None))
    assert await j.next_event() == Chunk("kept")
    assert await j.next_event() == Done(None)


async def test_an_abort_reaches_the_reader_after_what_was_delivered() -> None:
    j = job()
    j.deliver(Chunk("early"))
    j.abort(RequestTimeout("too slow"))
    j.deliver(Done("late"))  # the worker's answer after the abort goes nowhere
    assert j.cancelled and j.outcome == "cancelled"
    assert await j.next_event() == Chunk("early")
    with pytest.raises(RequestTimeout, match="too slow"):
        await j.next_event()


async def test_a_reader_that_falls_behind_is_cut_off_with_an_error() -> None:
    j = job(stream_buffer=4)
    for value in range(10):
        j.deliver(Chunk(value))
    assert j.cancelled
    assert [await j.next_event() for _ in range(4)] == [Chunk(v) for v in range(4)]
    with pytest.raises(SlowConsumer, match="more than 4 items behind"):
        await j.next_event()


async def test_released_the_job_is_cancelled_and_keeps_nothing() -> None:
    j = job()
    j.deliver(Chunk("read"))
    j.deliver(Chunk("unread"))
    assert await j.next_event() == Chunk("read")
    j.release("gone")
    assert j.cancelled and j.cancel_reason == "gone"
    j.deliver(Chunk("after"))
    j.deliver(Done(None))
    with pytest.raises(HandlerFailed, match="gone"):
        await j.next_event()
