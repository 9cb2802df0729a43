"""Handlers in processes of their own: the same runtime semantics, a GIL of their own,
and a crash or a hang that ends a process instead of costing a thread."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from localinfer.errors import HandlerFailed, ModelNotReady, WorkerCrashed
from localinfer.handlers.base import Handler, ModelSource
from localinfer.runtime import Chunk, ModelDefinition, ModelRegistry
from localinfer.runtime.isolated_child import HandlerRecipe
from localinfer.runtime.isolation import ProcessHandler
from localinfer.runtime.job import Job
from localinfer.runtime.worker import WorkerState
from tests.runtime.isolation_support import (
    IN_FLIGHT,
    LOAD_S,
    SCRIPTED,
    isolated,
    model,
    running,
    served,
)
from tests.support import job_result as answer
from tests.support import wait_until

pytestmark = pytest.mark.anyio


async def items(job: Job, timeout: float = 30.0) -> list[Any]:
    got = []
    with anyio.fail_after(timeout):
        async for event in job.events():
            if isinstance(event, Chunk):
                got.append(event.value)
    return got


async def test_requests_are_served_by_another_process_and_health_says_so() -> None:
    async with served(isolated()) as reg:
        iso = model(reg)
        first = await answer(iso.submit({"op": "pid", "echo": [1, "two"]}))
        assert first["pid"] != os.getpid()
        assert first["echo"] == [1, "two"]
        second = await answer(iso.submit({"op": "pid"}))
        assert second["pid"] == first["pid"]  # one process per worker, kept
        worker = iso.workers[0].health()
        assert worker["engine"] == "scripted on cpu (in a process of its own)"


async def test_a_stream_arrives_whole_and_in_order() -> None:
    async with served(isolated()) as reg:
        assert await items(model(reg).submit({"op": "stream", "n": 50})) == list(range(50))


async def test_a_failing_request_fails_alone_and_the_same_process_serves_on() -> None:
    async with served(isolated()) as reg:
        iso = model(reg)
        pid = (await answer(iso.submit({"op": "pid"})))["pid"]
        with pytest.raises(HandlerFailed, match="ValueError: no such thing"):
            await answer(iso.submit({"op": "raise", "message": "no such thing"}))
        assert (await answer(iso.submit({"op": "pid"})))["pid"] == pid


async def test_a_bad_input_in_a_micro_batch_fails_only_itself() -> None:
    async with served(isolated()) as reg:
        iso = model(reg)
        await answer(iso.submit({"op": "pid"}))
        jobs = [
            iso.submit({"op": "pid", "echo": 1}),
            iso.submit({"op": "raise", "message": "bad"}),
            iso.submit({"op": "pid", "echo": 3}),
        ]
        assert (await answer(jobs[0]))["echo"] == 1
        with pytest.raises(HandlerFailed):
            await answer(jobs[1])
        assert (await answer(jobs[2]))["echo"] == 3


async def test_a_payload_that_cannot_cross_fails_alone_and_the_process_serves_on() -> None:
    async with served(isolated()) as reg:
        iso = model(reg)
        pid = (await answer(iso.submit({"op": "pid"})))["pid"]
        with pytest.raises(HandlerFailed, match="cannot be sent to the model's own process"):
            await answer(iso.submit({"op": "pid", "echo": lambda: None}))
        assert (await answer(iso.submit({"op": "pid"})))["pid"] == pid


async def test_a_process_that_dies_fails_its_request_and_a_new_one_serves_the_next() -> None:
    async with served(isolated()) as reg:
        iso = model(reg)
        pid = (await answer(iso.submit({"op": "pid"})))["pid"]
        with pytest.raises(WorkerCrashed, match="exit code 3"):
            await answer(iso.submit({"op": "exit"}))
        again = await answer(iso.submit({"op": "pid"}), timeout=LOAD_S)
        assert again["pid"] != pid
        assert iso.workers[0].state == WorkerState.READY


async def test_a_cancelled_stream_stops_in_the_child_and_the_process_serves_on() -> None:
    async with served(isolated()) as reg:
        iso = model(reg)
        pid = (await answer(iso.submit({"op": "pid"})))["pid"]
        job = iso.submit({"op": "spin_until_cancelled"})
        seen = 0
        with anyio.fail_after(30):
            async for _event in job.events():
                seen += 1
                if seen == 5:
                    job.cancel("client went away")
                    break
        # the next request can only run once the child's handler stopped spinning
        assert (await answer(iso.submit({"op": "pid"}), timeout=10))["pid"] == pid


async def test_a_process_deaf_to_cancellation_is_killed_and_replaced() -> None:
    async with served(isolated(kill_after_s=0.5)) as reg:
        iso = model(reg)
        pid = (await answer(iso.submit({"op": "pid"})))["pid"]
        deaf = iso.submit({"op": "sleep", "s": 600})
        await wait_until(lambda: iso.workers[0].busy_since is not None)
        deaf.cancel("its deadline passed")
        again = await answer(iso.submit({"op": "pid"}), timeout=LOAD_S)
        assert again["pid"] != pid
        assert iso.workers[0].generation == 0  # the same worker thread: only the process went


async def test_a_load_that_fails_in_the_child_fails_the_model_with_its_reason() -> None:
    async with ModelRegistry() as reg:
        iso = reg.add(isolated(fail_load=True))
        await wait_until(lambda: iso.workers[0].state == WorkerState.FAILED, timeout=LOAD_S)
        assert "these weights are not loadable" in str(iso.workers[0].error)
        with pytest.raises(ModelNotReady, match="not loadable"):
            iso.submit({"op": "pid"})


async def test_a_load_past_its_timeout_kills_the_child_and_the_thread_returns(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    async with ModelRegistry(load_timeout_s=LOAD_S) as reg:
        iso = reg.add(isolated(hang_load=str(pid_file)))
        await wait_until(pid_file.exists, timeout=LOAD_S)  # the child is in its load
        pid = int(pid_file.read_text())
        worker = iso.workers[0]
        iso.supervisor.load_timeout_s = 0.1  # judged now, not in a minute
        await wait_until(lambda: worker.state == WorkerState.FAILED, timeout=10)
        assert "load_timeout_s (0.1 s)" in str(worker.error)
        assert f"its process (pid {pid}) was killed" in str(worker.error)
        # the child's end reaches the thread within a poll: it returns and is not counted
        await wait_until(lambda: not iso.abandoned_workers, timeout=10)
        await wait_until(lambda: not worker.thread.is_alive(), timeout=10)
        assert not running(pid)  # gone, and reaped: its memory is back
        with pytest.raises(ModelNotReady, match="load_timeout_s"):
            iso.submit({"op": "pid"})


class Doubler(Handler):
    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [2 * x for x in inputs]


async def test_the_child_calls_other_models_through_the_server() -> None:
    doubler = ModelDefinition(name="doubler", create_handler=lambda i, d: Doubler())
    async with served(isolated(), doubler) as reg:
        payload = {"op": "call", "model": "doubler", "payload": 21}
        assert await answer(model(reg).submit(payload)) == 42


async def test_requests_in_flight_finish_out_of_order_through_the_reader() -> None:
    async with served(isolated(IN_FLIGHT)) as reg:
        iso = model(reg)
        jobs = [iso.submit(str(n)) for n in range(4)]
        pids = [await items(job) for job in jobs]
        assert all(p == pids[0] and p[0] != os.getpid() for p in pids)
        assert iso.workers[0].health()["engine"] == "in-flight (in a process of its own)"


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize("idle", [True, False])
async def test_an_idle_child_runs_at_idle_priority(idle: bool) -> None:
    recipe = HandlerRecipe(SCRIPTED, ModelSource("unused"))
    definition = ModelDefinition(
        name="iso", create_handler=lambda i, d: ProcessHandler(recipe, idle=idle)
    )
    async with served(definition) as reg:
        policy = await answer(model(reg).submit({"op": "policy"}))
        assert policy == (os.SCHED_IDLE if idle else os.SCHED_OTHER)
