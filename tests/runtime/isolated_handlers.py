"""Handlers that tests/runtime/test_isolation.py serves in processes of their own: a child
process imports them by name, so they live in a module, not in the test."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from localinfer.handlers.base import Handler, ModelSource, WorkItem


class Scripted(Handler):
    """Does what each payload says: ``{"op": "pid"}``, ``"stream"``, ``"raise"``, ``"exit"``,
    ``"spin_until_cancelled"``, ``"sleep"`` (deaf to cancellation), ``"call"`` (another
    model, through the context)."""

    def __init__(self, source: ModelSource) -> None:
        self.options = dict(source.options)

    def load(self, device: str) -> None:
        if self.options.get("fail_load"):
            raise RuntimeError("these weights are not loadable")
        if hang_with_pid_in := self.options.get("hang_load"):
            Path(hang_with_pid_in).write_text(str(os.getpid()))
            time.sleep(3600)  # a load that never ends
        self.engine = f"scripted on {device}"

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [self._run(payload) for payload in inputs]

    def _run(self, payload: dict[str, Any]) -> Any:
        op = payload["op"]
        if op == "policy":
            return os.sched_getscheduler(0)
        if op == "pid":
            return {"pid": os.getpid(), "echo": payload.get("echo")}
        if op == "stream":
            return iter(range(payload["n"]))
        if op == "raise":
            raise ValueError(payload["message"])
        if op == "exit":
            os._exit(3)
        if op == "spin_until_cancelled":
            return self._spin()
        if op == "sleep":
            time.sleep(payload["s"])
            return "slept"
        if op == "call":
            return self.context.call(payload["model"], payload["payload"])
        if op == "leave_a_thread":
            return self._leave_a_thread(payload["s"])
        raise KeyError(op)

    def _leave_a_thread(self, seconds: float) -> bool:
        """Gives up on a thread of its own that runs ``seconds`` more, as a stalled engine's
        loop is, if its ledger allows; else reports itself stuck. Whether it was allowed."""
        if not self.thread_ledger.may_abandon():
            self.thread_ledger.stuck_in_place(f"a stuck loop it may not leave (pid {os.getpid()})")
            return False
        stuck = threading.Thread(target=time.sleep, args=(seconds,), daemon=True)
        stuck.start()
        self.thread_ledger.abandon("stuck-loop", "stalled for a test", stuck.is_alive)
        return True

    def _spin(self) -> Iterator[int]:
        n = 0
        while True:  # deliver_output stops it once the item is cancelled
            time.sleep(0.01)
            n += 1
            yield n


class InFlight(Handler):
    """Finishes its requests later, from a thread of its own, in reverse order of arrival:
    like a continuous-batching engine (``max_in_flight`` > 1)."""

    def __init__(self, source: ModelSource) -> None:
        self.max_in_flight = 4

    def process(self, items: Sequence[WorkItem]) -> None:
        def finish_later(item: WorkItem) -> None:
            time.sleep(0.05 * (4 - int(item.payload)))
            item.emit(os.getpid())
            item.finish(None)

        for item in items:
            threading.Thread(target=finish_later, args=(item,), daemon=True).start()


class WhereAmI:
    """User code (an ``infer`` method): which process answers, and a stream of numbers."""

    def infer(self, count: int = 0) -> Any:
        if count:
            return ({"n": n, "pid": os.getpid()} for n in range(count))
        return {"pid": os.getpid()}
