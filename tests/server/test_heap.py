"""A server that owns its process freezes its heap once the models have loaded, and hands
freed memory back to the OS now and then."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import anyio
import pytest

from localinfer.config import Settings
from localinfer.runtime.registry import ModelRegistry
from localinfer.server import heap
from localinfer.server.app import create_app
from localinfer.server.heap import freeze_when_ready
from tests import models
from tests.support import define

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class FailsToLoad:
    def setup(self) -> None:
        raise RuntimeError("no weights")

    def infer(self) -> None:
        pass


async def test_the_heap_is_frozen_once_every_model_is_ready() -> None:
    async with ModelRegistry() as registry:
        registry.add(define(models.Echo))
        await freeze_when_ready(registry)
        assert registry.ready
        assert gc.get_freeze_count() > 1000  # at least the libraries imported so far


async def test_nothing_is_frozen_when_a_model_fails_to_load() -> None:
    async with ModelRegistry() as registry:
        registry.add(define(FailsToLoad))
        await freeze_when_ready(registry)
        assert gc.get_freeze_count() == 0


async def test_only_a_server_that_owns_its_process_freezes() -> None:
    settings = Settings(port=0)
    for owns_process, frozen in ((False, False), (True, True)):
        app = create_app([define(models.Echo)], settings, owns_process=owns_process)
        async with app.router.lifespan_context(app):
            await app.state.registry.wait_ready(timeout_s=30)
            for _ in range(100):  # the freeze runs in a task of the lifespan
                if gc.get_freeze_count() or not owns_process:
                    break
                await anyio.sleep(0.01)
            assert (gc.get_freeze_count() > 0) is frozen
        gc.unfreeze()


async def test_freed_memory_is_handed_back_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        heap, "_malloc_trim", lambda: lambda: calls.append(threading.current_thread().name)
    )
    with anyio.move_on_after(0.5):
        await heap.trim_periodically(every_s=0.05)
    assert len(calls) >= 3
    assert threading.main_thread().name not in calls  # off the loop


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_glibc_malloc_trim_is_found_and_runs() -> None:
    trim = heap._malloc_trim()
    assert trim is not None
    trim()
