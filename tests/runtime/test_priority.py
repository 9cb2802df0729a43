"""Worker threads run below the event loop's priority (Linux), and what they start inherits it."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pytest

from localinfer.handlers.base import Handler
from localinfer.runtime import ModelDefinition, ModelRegistry
from localinfer.runtime.priority import MAX_NICE, lower_this_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _in_a_thread(niceness: int) -> tuple[int, int, int]:
    """(before, after, a child thread's) nice values of a fresh thread that lowers itself."""
    seen: list[int] = []

    def child() -> None:
        seen.append(_nice())

    def main() -> None:
        seen.append(_nice())
        lower_this_thread(niceness)
        seen.append(_nice())
        grandchild = threading.Thread(target=child)
        grandchild.start()
        grandchild.join()

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    before, after, inherited = seen
    return before, after, inherited


def test_a_thread_lowers_only_itself_and_what_it_starts() -> None:
    mine = _nice()
    before, after, inherited = _in_a_thread(3)
    assert after == min(MAX_NICE, before + 3)
    assert inherited == after
    assert _nice() == mine  # the calling thread (the loop's) is untouched


def test_zero_leaves_the_priority_alone() -> None:
    before, after, _ = _in_a_thread(0)
    assert after == before


class Recorder(Handler):
    """Records its worker thread's nice value as its load sees it."""

    seen: list[int] = []

    def load(self, device: str) -> None:
        self.seen.append(_nice())

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)


@pytest.mark.anyio
async def test_the_registry_runs_its_workers_at_the_lower_priority() -> None:
    loop_nice = _nice()
    async with ModelRegistry(worker_nice=4) as registry:
        model = registry.add(ModelDefinition(name="r", create_handler=lambda i, d: Recorder()))
        await registry.wait_ready(10)
        assert model.ready
    assert Recorder.seen[-1] == min(MAX_NICE, loop_nice + 4)
    assert _nice() == loop_nice
