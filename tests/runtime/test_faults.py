"""Faults in the runtime: failing, out-of-memory, dying, silent and hung workers; the drain.

Every handler here runs what it is given: a job's payload is a function called in the
worker thread, so each test says exactly what the model code does.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest

from localinfer.errors import (
    HandlerFailed,
    ModelNotReady,
    ResourceExhausted,
    ShuttingDown,
    WorkerCrashed,
)
from localinfer.handlers.base import Handler
from localinfer.runtime import ModelDefinition, ModelRegistry
from localinfer.runtime.job import Job
from localinfer.runtime.model import ServedModel
from localinfer.runtime.worker import WorkerState
from tests.support import job_result, wait_until

pytestmark = pytest.mark.anyio


class Calls(Handler):
    """Calls each payload (a function) in the worker thread; its return value is the result."""

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [fn() for fn in inputs]


def thread_name() -> str:
    return threading.current_thread().name


def raising(exc: BaseException) -> Callable[[], Any]:
    def fn() -> Any:
        raise exc

    return fn


@asynccontextmanager
async def served(
    workers: int = 1, *, hang_grace_s: float = 0.2, max_abandoned: int = 1, **registry: Any
) -> AsyncIterator[ServedModel]:
    async with ModelRegistry(
        hang_grace_s=hang_grace_s, max_abandoned_workers=max_abandoned, **registry
    ) as reg:
        model = reg.add(
            ModelDefinition(
                name="calls", create_handler=lambda i, d: Calls(), workers_per_device=workers
            )
        )
        await reg.wait_ready(10)
        yield model


async def answer(job: Job, timeout: float = 5.0) -> Any:
    return await job_result(job, timeout)


async def busy(model: ServedModel, index: int = 0) -> None:
    await wait_until(lambda: model.workers[index].busy_since is not None, timeout=5)


# -- handler failures: the request fails, the worker serves on -----------------------------


async def test_an_exception_fails_its_request_and_the_same_worker_serves_on() -> None:
    async with served() as model:
        with pytest.raises(HandlerFailed, match="ValueError: bad input"):
            await answer(model.submit(raising(ValueError("bad input"))))
        assert await answer(model.submit(thread_name)) == "localinfer:calls:0.0"
        assert model.restarts == 0 and model.stats.failed == 1


@pytest.mark.parametrize("kind", ["MemoryError", "torch.cuda.OutOfMemoryError"])
async def test_out_of_memory_is_resource_exhausted_and_the_worker_survives(kind: str) -> None:
    if kind == "MemoryError":
        error: BaseException = MemoryError("no room for the batch")
    else:
        torch = pytest.importorskip("torch")
        error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    async with served() as model:
        with pytest.raises(ResourceExhausted, match="out of memory") as caught:
            await answer(model.submit(raising(error)))
        assert caught.value.code == "resource_exhausted"
        # the very same thread (generation 0) takes the next job; nothing was restarted
        assert await answer(model.submit(thread_name)) == "localinfer:calls:0.0"
        assert model.restarts == 0
        assert model.workers[0].state == WorkerState.READY


# -- dying threads: the job in it fails, the others are served, the worker is restarted ---


@pytest.mark.parametrize("kill", [SystemExit, KeyboardInterrupt])
async def test_a_dying_thread_fails_its_job_and_loses_none_behind_it(
    kill: type[BaseException],
) -> None:
    async with served() as model:
        gate = threading.Event()
        first = model.submit(gate.wait)
        await busy(model)
        # taken together in one trip (prefetch): a killer, then three jobs behind it
        killer = model.submit(raising(kill("worker-killing fault")))
        behind = [model.submit(thread_name) for _ in range(3)]
        gate.set()
        assert await answer(first) is True
        with pytest.raises(WorkerCrashed, match=kill.__name__):
            await answer(killer)
        # the jobs the dead thread had taken but not started went back to the queue
        names = [await answer(job, timeout=10) for job in behind]
        assert names == ["localinfer:calls:0.1"] * 3
        health = model.health()
        assert health["restarts"] == 1
        assert health["workers"][0]["generation"] == 1
        assert health["workers"][0]["state"] == WorkerState.READY


async def test_a_fault_injected_into_the_thread_is_survived_like_any_death() -> None:
    """An exception raised asynchronously into the worker thread (as a debugger or a
    signal-handling library might), not by the handler's own code."""
    async with served() as model:
        spinning = threading.Event()
        stop = threading.Event()

        def spin() -> str:
            spinning.set()
            while not stop.is_set():  # pure Python: the async exception lands here
                pass
            return "unreachable"

        job = model.submit(spin)
        await anyio.to_thread.run_sync(spinning.wait, 5)
        thread_id = model.workers[0].thread.ident
        assert thread_id is not None
        hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(KeyboardInterrupt)
        )
        assert hit == 1
        try:
            with pytest.raises(WorkerCrashed, match="KeyboardInterrupt"):
                await answer(job)
        finally:
            stop.set()
        assert await answer(model.submit(thread_name), timeout=10) == "localinfer:calls:0.1"
        assert model.restarts == 1


async def test_a_thread_that_ends_without_a_word_is_found_and_replaced() -> None:
    async with served(hang_grace_s=0.1) as model:
        worker = model.workers[0]
        worker._report = lambda state, error=None: None  # type: ignore[method-assign]
        job = model.submit(raising(SystemExit("gone quietly")))
        with pytest.raises(WorkerCrashed):
            await answer(job)
        await wait_until(lambda: model.restarts == 1, timeout=5)  # found by the watchdog
        assert not worker.thread.is_alive()
        assert "without reporting" in (worker.error or "")
        assert await answer(model.submit(thread_name), timeout=10) == "localinfer:calls:0.1"


# -- hung workers: abandoned and replaced, within bounds -----------------------------------


async def test_a_hung_worker_is_abandoned_and_replaced_and_its_late_result_is_lost() -> None:
    async with served(hang_grace_s=0.2) as model:
        gate = threading.Event()
        hung = model.submit(lambda: gate.wait() and "late")
        # taken with it in one trip (prefetch), so held by the thread that will hang
        queued = [model.submit(thread_name) for _ in range(2)]
        await busy(model)
        old = model.workers[0]
        hung.release("timeout")  # what a deadline does to the job of a 504
        started = time.monotonic()
        await wait_until(lambda: model.abandoned_workers == [old], timeout=3)
        assert 0.2 <= time.monotonic() - started < 1.5
        health = model.health()
        assert health["hangs"] == 1
        assert [w["state"] for w in health["abandoned_workers"]] == [WorkerState.ABANDONED]
        assert "stuck in the handler" in health["abandoned_workers"][0]["error"]
        assert health["workers"][0]["generation"] == 1  # the replacement, at the same index
        # the jobs queued behind the hung one are served by the replacement, at once
        assert [await answer(job) for job in queued] == ["localinfer:calls:0.1"] * 2
        assert model.ready

        # the stuck thread returns: it exits without taking a job, its result goes nowhere
        jobs = [model.submit(thread_name) for _ in range(20)]
        gate.set()
        assert {await answer(job) for job in jobs} == {"localinfer:calls:0.1"}
        await wait_until(lambda: not model.abandoned_workers, timeout=3)
        old.thread.join(2)
        assert not old.thread.is_alive()
        assert hung.outcome == "cancelled"
        assert model.stats.succeeded == 22 and model.stats.cancelled == 1
        assert model.stats.in_flight == 0


class Freeable(Calls):
    """Hangs on its gate; given up on, it opens the gate (as a process handler kills)."""

    gate = threading.Event()

    def on_abandoned(self) -> str | None:
        self.gate.set()
        return "its call was freed"


async def test_a_handler_given_up_on_frees_its_thread_at_once() -> None:
    Freeable.gate.clear()
    async with ModelRegistry(hang_grace_s=0.1) as reg:
        model = reg.add(ModelDefinition(name="free", create_handler=lambda i, d: Freeable()))
        await reg.wait_ready(10)
        hung = model.submit(lambda: Freeable.gate.wait(30) and "late")
        await busy(model)
        old = model.workers[0]
        hung.release("timeout")
        await wait_until(lambda: old.abandoned, timeout=3)
        # told on the loop, the handler freed its thread: it returns, and is not counted
        await wait_until(lambda: not model.abandoned_workers, timeout=3)
        old.thread.join(2)
        assert not old.thread.is_alive()
        assert await answer(model.submit(thread_name)) == "localinfer:free:0.1"


async def test_past_the_bound_a_hung_worker_is_reported_not_replaced() -> None:
    async with served(hang_grace_s=0.15, max_abandoned=1) as model:
        gates = [threading.Event(), threading.Event()]
        first = model.submit(gates[0].wait)
        await busy(model)
        first.release("timeout")
        await wait_until(lambda: len(model.abandoned_workers) == 1 and model.ready, timeout=5)

        second = model.submit(gates[1].wait)  # the replacement hangs too
        await busy(model)
        second.release("timeout")
        await wait_until(lambda: model.workers[0].state == WorkerState.HUNG, timeout=3)
        assert len(model.abandoned_workers) == 1  # no second replacement
        assert not model.ready and not model.can_serve
        assert model.hung_workers == 2 and model.hangs == 2
        assert "not replaced" in (model.workers[0].error or "")
        with pytest.raises(ModelNotReady, match="not replaced"):
            model.submit(thread_name)

        gates[0].set()  # the first abandoned thread returns: room for a replacement again
        await wait_until(lambda: model.ready, timeout=5)
        assert model.workers[0].generation == 2
        assert [w.generation for w in model.abandoned_workers] == [1]
        assert await answer(model.submit(thread_name)) == "localinfer:calls:0.2"
        gates[1].set()
        await wait_until(lambda: not model.abandoned_workers, timeout=3)


async def test_a_hung_worker_left_in_place_serves_again_when_it_returns() -> None:
    async with served(hang_grace_s=0.1, max_abandoned=0) as model:
        gate = threading.Event()
        job = model.submit(gate.wait)
        await busy(model)
        job.release("timeout")
        await wait_until(lambda: model.workers[0].state == WorkerState.HUNG, timeout=3)
        assert model.abandoned_workers == []
        gate.set()
        await wait_until(lambda: model.workers[0].state == WorkerState.READY, timeout=3)
        assert await answer(model.submit(thread_name)) == "localinfer:calls:0.0"
        assert model.hung_workers == 0


async def test_a_slow_but_live_request_is_not_a_hang() -> None:
    async with served(hang_grace_s=0.05) as model:
        assert await answer(model.submit(lambda: time.sleep(0.4) or "done")) == "done"
        assert model.hangs == 0 and model.abandoned_workers == []
        assert model.workers[0].generation == 0


# -- the drain -----------------------------------------------------------------------------


async def test_a_drain_finishes_what_it_can_and_answers_the_rest() -> None:
    async with served(drain_timeout_s=0.5) as model:
        gate = threading.Event()
        stuck = model.submit(gate.wait)  # ignores cancellation until released
        await busy(model)
        queued = [model.submit(thread_name) for _ in range(3)]
        drain_began = time.monotonic()
        model.begin_drain(0.5)
        with pytest.raises(ShuttingDown):
            model.submit(thread_name)  # no new work
        assert model.draining and not model.ready
        for job in [stuck, *queued]:
            with pytest.raises(ShuttingDown, match="drain timeout"):
                await answer(job, timeout=3)
        assert 0.45 <= time.monotonic() - drain_began < 1.5
        assert model.stats.in_flight == 0
        gate.set()  # back from the handler, the worker finds the queue closed and ends
        await wait_until(lambda: model.workers[0].state == WorkerState.STOPPED, timeout=3)


async def test_a_drain_lets_queued_work_finish_within_the_deadline() -> None:
    async with served(drain_timeout_s=5) as model:
        jobs = [model.submit(lambda: time.sleep(0.05) or "ok") for _ in range(4)]
        model.begin_drain(5)
        assert [await answer(job) for job in jobs] == ["ok"] * 4


async def test_stopping_with_a_hung_worker_is_bounded() -> None:
    gate = threading.Event()
    started = time.monotonic()
    async with served(drain_timeout_s=0.3) as model:
        job = model.submit(gate.wait)
        await busy(model)
        thread = model.workers[0].thread
    assert time.monotonic() - started < 5
    assert job.outcome == "cancelled"  # answered (ShuttingDown), not left waiting
    assert thread.is_alive()  # left behind, still stuck
    gate.set()
    await anyio.to_thread.run_sync(thread.join, 5)
    assert not thread.is_alive()
