"""Scaling a loaded model's workers at run time, in the runtime and over HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from localinfer.errors import InvalidRequest, ModelNotReady
from localinfer.handlers.base import Handler
from localinfer.runtime import Done, ModelDefinition, ModelRegistry
from localinfer.runtime.job import Job
from localinfer.runtime.worker import WorkerState
from tests import models
from tests.support import define, running_server

pytestmark = pytest.mark.anyio


class Tracked(Handler):
    """Sleeps ``x`` seconds; records which worker threads loaded and closed."""

    loaded: list[str] = []
    closed: list[str] = []
    lock = threading.Lock()

    def load(self, device: str) -> None:
        with Tracked.lock:
            Tracked.loaded.append(threading.current_thread().name)

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        time.sleep(inputs[0])
        return [threading.current_thread().name]

    def close(self) -> None:
        with Tracked.lock:
            Tracked.closed.append(threading.current_thread().name)


def tracked(workers: int = 1, **kwargs: Any) -> ModelDefinition:
    return ModelDefinition(
        name="tracked",
        create_handler=lambda i, d: Tracked(),
        workers_per_device=workers,
        prefetch=1,
        **kwargs,
    )


async def final(job: Job) -> Any:
    async for event in job.events():
        if isinstance(event, Done):
            return event.value
    raise AssertionError("no result")


@pytest.fixture(autouse=True)
def _reset() -> None:
    Tracked.loaded.clear()
    Tracked.closed.clear()


async def test_scale_up_starts_workers_that_load_their_own_handler() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(tracked())
        await registry.wait_ready(10)
        model.scale(3)
        assert model.target_workers == 3
        with anyio.fail_after(10):
            await model.wait_scaled()
        assert [w.state for w in model.workers] == [WorkerState.READY] * 3
        assert len(set(Tracked.loaded)) == 3  # each in its own thread
        # the three serve concurrently
        started = time.perf_counter()
        threads = set()
        async with anyio.create_task_group() as tg:

            async def one() -> None:
                threads.add(await final(model.submit(0.3)))

            for _ in range(3):
                tg.start_soon(one)
        assert len(threads) == 3
        assert time.perf_counter() - started < 0.85


async def test_scale_down_lets_busy_workers_finish_and_loses_no_job() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(tracked(workers=3))
        await registry.wait_ready(10)
        jobs = [model.submit(0.3) for _ in range(5)]
        await anyio.sleep(0.1)  # three running, two queued
        model.scale(1)
        assert model.target_workers == 1
        assert sum(w.retiring for w in model.workers) == 2
        results = [await final(job) for job in jobs]
        with anyio.fail_after(10):
            await model.wait_scaled()
        assert len(results) == 5  # every job answered, none dropped
        assert len(model.workers) == 1
        assert len(Tracked.closed) == 2  # the retired handlers were closed in their threads
        assert await final(model.submit(0)) == model.workers[0].thread.name


async def test_an_idle_worker_retires_at_once() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(tracked(workers=2))
        await registry.wait_ready(10)
        model.scale(1)
        with anyio.fail_after(2):
            await model.wait_scaled()
        assert len(model.workers) == 1


async def test_scale_bounds_and_shutdown() -> None:
    async with ModelRegistry() as registry:
        model = registry.add(tracked())
        with pytest.raises(InvalidRequest, match="between 1 and"):
            model.scale(0)
        await model.stop(1.0)
        with pytest.raises(ModelNotReady):
            model.scale(2)


async def test_scaling_instances_reuses_their_slots() -> None:
    instances = [models.Echo(), models.Echo()]
    async with ModelRegistry() as registry:
        model = registry.add(define(instances, name="pair"))
        await registry.wait_ready(10)
        model.scale(1)
        await model.wait_scaled()
        model.scale(2)  # index 1 is free again: its instance serves once more
        await model.wait_scaled()
        assert [w.state for w in model.workers] == [WorkerState.READY] * 2


async def test_workers_route_scales_and_health_shows_it() -> None:
    async with running_server([define(models.Echo)]) as client:
        r = await client.post("/v1/models/echo/workers", json={"workers": 3, "wait": True})
        assert r.status_code == 200
        body = r.json()
        assert body["target_workers"] == 3
        assert [w["state"] for w in body["workers"]] == ["ready"] * 3
        health = (await client.get("/health")).json()["models"]["echo"]
        assert len(health["workers"]) == 3
        r = await client.post("/v1/models/echo/workers", json={"workers": 1})
        assert r.status_code == 200
        assert r.json()["target_workers"] == 1  # answered at once; they stop in the background

        async def one_left() -> bool:
            health = (await client.get("/health")).json()["models"]["echo"]
            return len(health["workers"]) == 1

        with anyio.fail_after(5):
            while not await one_left():
                await anyio.sleep(0.02)
        assert (await client.post("/v1/infer/echo", json={"args": ["x"]})).status_code == 200

        for bad in ({"workers": 0}, {"workers": "2"}, {"workers": 1000}, {}):
            r = await client.post("/v1/models/echo/workers", json=bad)
            assert r.status_code == 400, bad
            assert r.json()["error"]["param"] in ("workers", None)
        r = await client.post("/v1/models/nope/workers", json={"workers": 2})
        assert r.status_code == 404
