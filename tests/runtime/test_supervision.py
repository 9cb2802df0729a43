"""The load watchdog: a ``load()`` past ``load_timeout_s`` fails its model with the reason,
gives its turn to load to the next model, and its thread is abandoned and counted.
A handler's own thread given up on (a stalled engine's loop) is counted the same way,
against ``max_abandoned_workers``; a handler refused more keeps its worker hung.

(Dead, silent and hung workers: ``test_faults.py``.)
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from localinfer.calls.stats import model_stats
from localinfer.errors import ModelNotReady
from localinfer.handlers.base import Handler
from localinfer.runtime import ModelDefinition, ModelRegistry
from localinfer.runtime.loading import LoadTurn
from localinfer.runtime.worker import WorkerState
from tests.support import wait_until

pytestmark = pytest.mark.anyio


class Echo(Handler):
    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)


class SlowLoad(Echo):
    """A ``load()`` that waits until ``release`` is set."""

    release = threading.Event()

    def load(self, device: str) -> None:
        self.release.wait(30)


async def test_a_load_past_the_timeout_fails_the_model_and_frees_the_turn_to_load() -> None:
    SlowLoad.release.clear()
    async with ModelRegistry(load_timeout_s=0.3) as registry:
        stuck = registry.add(ModelDefinition(name="stuck", create_handler=lambda i, d: SlowLoad()))
        await wait_until(lambda: stuck.workers[0].state == WorkerState.FAILED, timeout=5)
        worker = stuck.workers[0]
        assert "load_timeout_s (0.3 s)" in (worker.error or "")
        assert stuck.failure is not None and "load() did not finish" in stuck.failure
        assert not stuck.ready and not stuck.can_serve
        assert stuck.abandoned_workers == [worker] and stuck.hung_workers == 1
        health = stuck.health()
        assert health["abandoned_workers"][0]["state"] == WorkerState.FAILED
        assert health["abandoned_device_memory_bytes"] == 0  # CPU: not measured
        with pytest.raises(ModelNotReady, match="load_timeout_s"):
            stuck.submit("x")
        # the stuck load holds no turn any more: another model loads meanwhile
        other = registry.add(ModelDefinition(name="other", create_handler=lambda i, d: Echo()))
        await wait_until(lambda: other.ready, timeout=5)
        # the load returns at last: its thread ends without serving, and is no longer counted
        SlowLoad.release.set()
        await wait_until(lambda: not stuck.abandoned_workers, timeout=5)
        assert not worker.thread.is_alive() or worker.abandoned
        assert stuck.workers[0].state == WorkerState.FAILED  # failed stays failed


async def test_a_load_within_the_timeout_is_not_judged() -> None:
    async with ModelRegistry(load_timeout_s=5) as registry:
        model = registry.add(ModelDefinition(name="fine", create_handler=lambda i, d: Echo()))
        await registry.wait_ready(5)
        assert model.failure is None and model.abandoned_workers == []


class LeavesAThread(Echo):
    """Gives up on a thread of its own at load, if its ledger allows (a stalled loop)."""

    release = threading.Event()

    def load(self, device: str) -> None:
        self.allowed = self.thread_ledger.may_abandon()
        if self.allowed:
            stuck = threading.Thread(target=self.release.wait, args=(30,), name="stuck-loop")
            stuck.start()
            self.thread_ledger.abandon("stuck-loop", "stalled for the test", stuck.is_alive)


async def test_a_handlers_abandoned_thread_is_counted_and_uses_up_the_bound() -> None:
    LeavesAThread.release.clear()
    async with ModelRegistry(max_abandoned_workers=1) as registry:
        model = registry.add(ModelDefinition(name="m", create_handler=lambda i, d: LeavesAThread()))
        await registry.wait_ready(5)
        assert model.handler_refs[0]().allowed  # type: ignore[union-attr]
        (thread,) = model.health()["abandoned_threads"]
        assert thread["thread"] == "stuck-loop" and thread["error"] == "stalled for the test"
        assert model_stats(model)["abandoned_threads"] == 1
        assert model.supervisor.abandoned_count == 1
        assert not model.supervisor.may_abandon()  # the bound is used up: no second one
        LeavesAThread.release.set()  # the thread returns: forgotten, room again
        await wait_until(lambda: model_stats(model)["abandoned_threads"] == 0, timeout=5)
        assert model.health()["abandoned_threads"] == [] and model.supervisor.may_abandon()


async def test_a_handler_stuck_in_place_makes_its_worker_hung_until_it_serves_again() -> None:
    async with ModelRegistry(max_abandoned_workers=0) as registry:
        model = registry.add(ModelDefinition(name="m", create_handler=lambda i, d: Echo()))
        await registry.wait_ready(5)
        assert not model.supervisor.may_abandon()  # max_abandoned_workers=0
        handler = model.handler_refs[0]()
        assert handler is not None
        handler.thread_ledger.stuck_in_place("engine stalled and not restarted")
        worker = model.workers[0]
        await wait_until(lambda: worker.state == WorkerState.HUNG, timeout=5)
        assert not model.ready and worker.error == "engine stalled and not restarted"
        assert model.hangs == 1 and model.hung_workers == 1
        handler.thread_ledger.stuck_in_place(None)  # its stuck thread ended: it restarted
        await wait_until(lambda: worker.state == WorkerState.READY, timeout=5)
        assert model.ready and model.workers[0] is worker  # not replaced: the same worker


def test_a_turn_given_up_on_goes_to_the_next_load_and_is_not_taken_twice() -> None:
    turns = LoadTurn()
    first, second = object(), object()
    entered = threading.Event()
    with turns.turn(first):
        waiter = threading.Thread(target=lambda: _take(turns, second, entered))
        waiter.start()
        assert not entered.wait(0.1)  # one at a time
        turns.give_up(first)  # from another thread: the watchdog
        assert entered.wait(5)
    # first's own exit gave up nothing: second's turn was not ended by it
    assert turns._holder in (second, None)
    waiter.join(5)


def _take(turns: LoadTurn, owner: object, entered: threading.Event) -> None:
    with turns.turn(owner):
        entered.set()
