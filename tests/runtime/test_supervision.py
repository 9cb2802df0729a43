"""The load watchdog: a ``load()`` past ``load_timeout_s`` fails its model with the reason,
gives its turn to load to the next model, and its thread is abandoned and counted.

(Dead, silent and hung workers: ``test_faults.py``.)
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

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
