"""The continuous-batching engine's watchdog, with a manager that stands in for
transformers' ``ContinuousBatchingManager``: one that stops producing outputs while
requests wait is stalled; its requests fail with 503 ``engine_stalled`` and a fresh
manager serves the next ones. The stuck loop's thread is left behind, counted in the
handler's ledger; with no room there, the engine waits it out instead of starting more."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from localinfer.errors import EngineStalled
from localinfer.handlers.base import ThreadLedger
from localinfer.handlers.generation.continuous_batching import ContinuousBatchingEngine
from localinfer.handlers.generation.sequence import Generation
from localinfer.handlers.tasks import GenerationRequest


@dataclass
class Item:
    request_id: str = "r"
    payload: Any = None
    cancelled: bool = False
    done: bool = False
    emitted: list[Any] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None

    def emit(self, chunk: Any) -> None:
        self.emitted.append(chunk)

    def finish(self, result: Any = None) -> None:
        self.result, self.done = result, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True


class Manager:
    """Answers each request with one token then finishes it, unless ``stuck``."""

    def __init__(self, stuck: bool = False) -> None:
        self.stuck = stuck
        self.outputs: queue.Queue[Any] = queue.Queue()
        self.stopped = False
        #: a stuck loop's thread runs on after stop() until this is set
        self.returned = threading.Event()
        self.background_thread_status = SimpleNamespace(fatal_error=None)
        self.model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="eager"))

    def add_request(self, prompt_ids: list[int], *, request_id: str, **kwargs: Any) -> str:
        if not self.stuck:
            self.outputs.put(
                SimpleNamespace(
                    request_id=request_id,
                    error=None,
                    generated_tokens=[7],
                    is_finished=lambda: True,
                )
            )
        return request_id

    def get_result(self, timeout: float) -> Any:
        try:
            return self.outputs.get(timeout=timeout)
        except queue.Empty:
            return None

    def is_running(self) -> bool:
        return not self.stopped or (self.stuck and not self.returned.is_set())

    def cancel_request(self, request_id: str) -> None:
        pass

    def stop(self, block: bool = True, **kwargs: Any) -> None:
        self.stopped = True

    def destroy(self) -> None:
        pass


def _generation(item: Item) -> Generation:
    request = GenerationRequest(prompt="hi", max_new_tokens=4, temperature=0)
    return Generation(item, request, [1, 2], lambda ids: "x" * len(ids), frozenset({2}))


def _wait(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _engine(
    manager: Manager, fresh: list[Manager], threads: ThreadLedger | None = None
) -> ContinuousBatchingEngine:
    def restart() -> Any:
        fresh.append(Manager())
        return fresh[-1], None  # a fresh manager, and no per-row processor

    return ContinuousBatchingEngine(
        manager,  # type: ignore[arg-type]
        max_in_flight=4,
        vocab_size=10,
        eos_token_ids=frozenset({2}),
        sequential_attention="eager",
        stall_s=0.3,
        restart=restart,
        ledger=threads,
    )


def test_a_stalled_engine_fails_its_requests_with_503_and_restarts() -> None:
    stuck, fresh = Manager(stuck=True), []  # type: list[Manager]
    engine = _engine(stuck, fresh)
    try:
        waiting = [Item(request_id=f"r{i}") for i in range(3)]
        for item in waiting:
            engine.submit(_generation(item))
        _wait(lambda: all(item.done for item in waiting))
        for item in waiting:
            assert isinstance(item.error, EngineStalled)
            assert item.error.code == "engine_stalled" and "retry" in item.error.message
        assert engine.stalls == 1 and stuck.stopped and len(fresh) == 1
        assert engine.manager is fresh[0]
        served = Item(request_id="after")
        engine.submit(_generation(served))  # the fresh manager serves
        _wait(lambda: served.done)
        assert served.error is None and served.result.completion_tokens == 1
    finally:
        engine.close()


def test_an_idle_or_busy_engine_is_not_stalled() -> None:
    manager, fresh = Manager(), []  # type: list[Manager]
    engine = _engine(manager, fresh)
    try:
        time.sleep(0.5)  # idle past stall_s: nothing waits, nothing is judged
        for i in range(5):
            item = Item(request_id=f"r{i}")
            engine.submit(_generation(item))
            _wait(lambda item=item: item.done)  # type: ignore[misc]
            assert item.error is None
            time.sleep(0.1)
        assert engine.stalls == 0 and fresh == []
    finally:
        engine.close()


def test_the_stalled_loops_thread_is_left_behind_and_counted_until_it_returns() -> None:
    stuck, fresh, threads = Manager(stuck=True), [], ThreadLedger()  # type: list[Manager]
    engine = _engine(stuck, fresh, threads)
    try:
        item = Item()
        engine.submit(_generation(item))
        _wait(lambda: item.done and len(fresh) == 1)
        (left,) = threads.live()
        assert left.name == "localinfer:cb-loop" and "stalled" in left.reason
        assert threads.stuck_reason is None  # replaced, not stuck in place
        stuck.returned.set()  # the stuck loop ends at last: no longer counted
        assert threads.live() == []
    finally:
        engine.close()


def test_with_no_room_to_leave_a_thread_the_engine_refuses_until_the_loop_returns() -> None:
    stuck, fresh = Manager(stuck=True), []  # type: list[Manager]
    threads = ThreadLedger(may_abandon=lambda: False)  # max_abandoned_workers used up
    engine = _engine(stuck, fresh, threads)
    try:
        waiting = Item(request_id="waiting")
        engine.submit(_generation(waiting))
        _wait(lambda: waiting.done)
        assert isinstance(waiting.error, EngineStalled)
        assert fresh == [] and threads.live() == []  # nothing started, nothing left behind
        assert "max_abandoned_workers" in (threads.stuck_reason or "")
        refused = Item(request_id="refused")
        engine.submit(_generation(refused))  # at once: no wait for another stall
        assert isinstance(refused.error, EngineStalled)
        assert "max_abandoned_workers" in refused.error.message
        stuck.returned.set()  # the stuck loop returns: the engine restarts
        _wait(lambda: len(fresh) == 1 and threads.stuck_reason is None)
        served = Item(request_id="served")
        engine.submit(_generation(served))
        _wait(lambda: served.done)
        assert served.error is None
    finally:
        engine.close()
