"""The loop's thread-safe entry: calls from worker threads, coalesced into few wakeups."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest

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
