"""A handler's own stuck threads, from a process of its own: counted by the server until
they end, and one it may not abandon ends with its process."""

from __future__ import annotations

import pytest

from localinfer.errors import EngineStalled
from localinfer.runtime.worker import WorkerState
from tests.runtime.isolation_support import LOAD_S, isolated, model, running, served
from tests.support import job_result as answer
from tests.support import wait_until

pytestmark = pytest.mark.anyio


async def test_a_thread_the_child_abandons_is_counted_by_the_server_until_it_ends() -> None:
    async with served(isolated(), max_abandoned_workers=1) as reg:
        iso = model(reg)
        pid = (await answer(iso.submit({"op": "pid"})))["pid"]
        assert await answer(iso.submit({"op": "leave_a_thread", "s": 6})) is True
        # told on the ledger's own pipe, which may arrive after the answer
        await wait_until(lambda: bool(iso.health()["abandoned_threads"]), timeout=10)
        threads = iso.health()["abandoned_threads"]
        assert [t["thread"] for t in threads] == [f"stuck-loop (pid {pid})"]
        assert threads[0]["error"] == "stalled for a test"
        assert not iso.supervisor.may_abandon()  # it counts against max_abandoned_workers
        # the thread ends in the child: told within a second, it is no longer counted
        await wait_until(lambda: not iso.health()["abandoned_threads"], timeout=20)
        assert iso.supervisor.may_abandon()


async def test_a_thread_the_child_may_not_abandon_ends_with_its_process() -> None:
    async with served(isolated(), max_abandoned_workers=0) as reg:
        iso = model(reg)
        pid = (await answer(iso.submit({"op": "pid"})))["pid"]
        refused = iso.submit({"op": "leave_a_thread", "s": 600})
        try:  # its answer and its report of the stuck thread cross on different pipes
            assert await answer(refused) is False
        except EngineStalled as exc:
            assert f"may not leave (pid {pid})" in str(exc)
        # killed with its stuck thread (and reaped); the next request starts a fresh one
        await wait_until(lambda: not running(pid), timeout=10)
        assert (await answer(iso.submit({"op": "pid"}), timeout=LOAD_S))["pid"] != pid
        assert iso.workers[0].state == WorkerState.READY and iso.hung_workers == 0
