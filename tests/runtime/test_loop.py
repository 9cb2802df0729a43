"""The loop's thread-safe entry: calls from worker threads, coalesced into few wakeups."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest

from localinfer.handlers.crossing import emits_together
from localinfer.runtime.loop import LoopClosed, LoopHandle
from tests.support import wait_until

pytestmark = pytest.mark.anyio


async def test_calls_from_many_threads_all_run_once_each_in_order() -> None:
    handle = LoopHandle.current()
    seen: dict[int, list[int]] = {t: [] for t in range(4)}
    on_loop = []

    def record(thread: int, i: int) -> None:
        on_loop.append(threading.current_thread() is threading.main_thread())
        seen[thread].append(i)

    def flood(thread: int) -> None:
        for i in range(5000):
            handle.call_soon(record, thread, i)

    async with anyio.create_task_group() as tg:
        for t in range(4):
            tg.start_soon(anyio.to_thread.run_sync, flood, t)
    await wait_until(lambda: sum(map(len, seen.values())) == 20_000, timeout=10)
    assert all(calls == list(range(5000)) for calls in seen.values())
    assert all(on_loop)  # every call ran on the loop's thread


async def test_a_failing_call_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = LoopHandle.current()
    ran = []

    def fail() -> None:
        raise ValueError("boom")

    def send() -> None:
        handle.call_soon(fail)
        handle.call_soon(ran.append, "after")

    await anyio.to_thread.run_sync(send)
    await wait_until(lambda: ran == ["after"], timeout=5)
    assert "boom" in caplog.text


def test_a_call_after_the_loop_ended_raises_loop_closed() -> None:
    async def grab() -> LoopHandle:
        return LoopHandle.current()

    handle = anyio.run(grab)
    with pytest.raises(LoopClosed):
        handle.call_soon(print, "never")


async def test_calls_inside_emits_together_wait_for_the_block_end_and_cross_in_one_wakeup() -> None:
    handle = LoopHandle.current()
    ran: list[int] = []
    wakeups = 0
    wake = handle._wake

    def counted_wake() -> None:
        nonlocal wakeups
        wakeups += 1
        wake()

    handle._wake = counted_wake  # type: ignore[method-assign]
    released = threading.Event()
    in_block = threading.Event()

    def step() -> None:
        with emits_together():
            for i in range(4):
                handle.call_soon(ran.append, i)
            in_block.set()
            released.wait(5)

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, step)
        await anyio.to_thread.run_sync(in_block.wait, 5)
        await anyio.sleep(0.05)  # the loop runs freely: nothing has crossed yet
        assert ran == [] and wakeups == 0
        released.set()
    await wait_until(lambda: ran == [0, 1, 2, 3], timeout=5)
    assert wakeups == 1


def test_a_held_wakeup_for_a_closed_loop_is_dropped_quietly() -> None:
    async def grab() -> LoopHandle:
        return LoopHandle.current()

    handle = anyio.run(grab)
    with emits_together():
        handle.call_soon(print, "never")  # held: the block's end finds the loop gone
