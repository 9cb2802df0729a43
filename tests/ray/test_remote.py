"""RemoteModel against fake DeploymentHandles (no Ray started): events become the job's,
a lost replica is a 503 (retried for unary tasks), a cancelled job cancels its call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from localinfer.errors import QueueFull, ReplicaLost
from localinfer.ray import wire
from localinfer.ray.remote import RemoteRegistry
from localinfer.runtime.job import Chunk, Done
from localinfer.runtime.model import ModelDefinition
from tests.support import settings

pytestmark = [pytest.mark.ray, pytest.mark.anyio]


def _no_handler(index: int, device: str) -> Any:
    raise AssertionError("never called")


class FakeGenerator:
    def __init__(self, bursts: list[Any], hang: bool = False) -> None:
        self._bursts = list(bursts)
        self._hang = hang
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        for burst in self._bursts:
            if isinstance(burst, BaseException):
                raise burst
            yield burst
        if self._hang:
            await anyio.sleep_forever()

    def cancel(self) -> None:
        self.cancelled = True


class FakeResponse:
    def __init__(self, outcome: Any) -> None:
        self._outcome = outcome
        self.cancelled = False

    def __await__(self) -> Any:
        async def result() -> Any:
            if isinstance(self._outcome, BaseException):
                raise self._outcome
            return self._outcome

        return result().__await__()

    def cancel(self) -> None:
        self.cancelled = True


class FakeHandle:
    """What RemoteModel uses of a DeploymentHandle: options(...).remote(...)."""

    def __init__(self, task: str, results: list[Any], unary: bool | None = None) -> None:
        definition = ModelDefinition("m", _no_handler, task=task)
        self.description = wire.Description(
            definition, task == "embeddings" if unary is None else unary
        )
        self.results = results
        self.calls: list[Any] = []
        self._method = "describe"

    def options(self, *, method_name: str, stream: bool = False) -> FakeHandle:
        bound = FakeHandle.__new__(FakeHandle)
        bound.__dict__ = self.__dict__.copy()
        bound._method = method_name
        return bound

    def remote(self, *args: Any) -> Any:
        if self._method == "describe":
            return FakeResponse(self.description)
        result = self.results.pop(0)
        self.calls.append(result)
        return result


def _actor_died() -> BaseException:
    ray_errors = pytest.importorskip("ray.exceptions")
    return ray_errors.ActorDiedError()  # type: ignore[no-any-return]


async def test_unary_call_is_retried_when_its_replica_dies() -> None:
    handle = FakeHandle(
        "embeddings",
        [FakeResponse(_actor_died()), FakeResponse([[wire.done([0.5], 1.0, 2.0)]])],
    )
    async with RemoteRegistry(settings(), {"m": handle}) as registry:
        job = registry.get("m").submit("text")
        assert await job.next_event() == Done([0.5])
    assert len(handle.calls) == 2


async def test_stream_events_and_a_lost_replica() -> None:
    streamed = FakeGenerator([[(wire.CHUNK, "a"), (wire.CHUNK, "b")], [wire.done(None, 0, 1)]])
    lost = FakeGenerator([[(wire.CHUNK, "a")], _actor_died()])
    refused = FakeGenerator([[wire.failed(QueueFull("busy", retry_after_s=3))]])
    handle = FakeHandle("chat", [streamed, lost, refused])
    async with RemoteRegistry(settings(), {"m": handle}) as registry:
        model = registry.get("m")
        job = model.submit("prompt")
        assert [await job.next_event() for _ in range(3)] == [Chunk("a"), Chunk("b"), Done(None)]
        job = model.submit("prompt")
        assert await job.next_event() == Chunk("a")
        with pytest.raises(ReplicaLost):
            await job.next_event()
        job = model.submit("prompt")
        with pytest.raises(QueueFull) as refusal:
            await job.next_event()
        assert refusal.value.retry_after_s == 3


async def test_cancelled_job_cancels_its_call() -> None:
    call = FakeGenerator([[(wire.CHUNK, "a")]], hang=True)
    async with RemoteRegistry(settings(), {"m": FakeHandle("chat", [call])}) as registry:
        job = registry.get("m").submit("prompt")
        assert await job.next_event() == Chunk("a")
        job.release("client left")
        with anyio.fail_after(5):
            while not call.cancelled:
                await anyio.sleep(0.01)


async def test_a_call_cancelled_by_serve_fails_its_job_only() -> None:
    """Serve cancels calls tied to a request whose client left; the registry lives on."""
    import asyncio

    from localinfer.errors import HandlerFailed

    handle = FakeHandle(
        "embeddings",
        [FakeResponse(asyncio.CancelledError()), FakeResponse([[wire.done([1.0], 0, 0)]])],
    )
    async with RemoteRegistry(settings(), {"m": handle}) as registry:
        with pytest.raises(HandlerFailed):
            await registry.get("m").submit("a").next_event()
        assert await registry.get("m").submit("b").next_event() == Done([1.0])


async def test_a_unary_model_answers_in_one_round_trip_and_is_not_retried() -> None:
    """A non-streaming model's call returns all its events at once; a model that is not
    known to be side-effect free is not run twice when its replica dies."""
    events = [(wire.CHUNK, "a"), (wire.CHUNK, "b"), wire.done(None, 0, 1)]
    handle = FakeHandle(
        "infer",
        [FakeResponse([events]), FakeResponse(_actor_died()), FakeResponse([events])],
        unary=True,
    )
    async with RemoteRegistry(settings(), {"m": handle}) as registry:
        model = registry.get("m")
        job = model.submit({})
        assert [await job.next_event() for _ in range(3)] == [Chunk("a"), Chunk("b"), Done(None)]
        with pytest.raises(ReplicaLost):
            await model.submit({}).next_event()
    assert len(handle.calls) == 2


def _report(replica: str, *, ready: bool, abandoned_threads: int = 0) -> dict[str, Any]:
    """A replica's post to the board, as ModelReplica.reports() makes it."""
    from localinfer.handlers.base import AbandonedThread

    threads = [
        AbandonedThread(f"engine-loop-{i}", "stalled for 30 s", lambda: True).health()
        for i in range(abandoned_threads)
    ]
    return {
        "replica": replica,
        "ready": ready,
        "draining": False,
        "restarts": 1,
        "hangs": abandoned_threads,
        "hung_workers": 0 if ready else 1,
        "workers": [
            {
                "index": 0,
                "state": "ready" if ready else "hung",
                "device": "cpu",
                "engine": f"llama.cpp on {replica}",
            }
        ],
        "abandoned_workers": [],
        "abandoned_device_memory_bytes": 0,
        "abandoned_threads": threads,
        "stats": {"succeeded": 3, "in_flight": 0},
    }


async def test_abandoned_threads_and_a_degraded_replica_show_in_health_and_stats() -> None:
    from localinfer.calls.stats import model_stats

    async with RemoteRegistry(settings(), {"m": FakeHandle("chat", [])}) as registry:
        model = registry.get("m")
        model.replicas = [  # type: ignore[attr-defined]  # what the board posts
            _report("r1", ready=True),
            _report("r2", ready=False, abandoned_threads=2),  # past max_abandoned_workers
        ]
        assert model.ready  # r1 still serves: /ready 200, the router may use it
        health = registry.health()["m"]
        assert health["ready"] is False  # /health: degraded, as plain says for a hung worker
        assert health["degraded_replicas"] == ["r2"]
        assert [t["thread"] for t in health["abandoned_threads"]] == [
            "engine-loop-0",
            "engine-loop-1",
        ]
        assert {t["replica"] for t in health["abandoned_threads"]} == {"r2"}
        assert health["engine"] == model.engine == "llama.cpp on r1"  # /v1/models says it too
        stats = model_stats(model)
        assert stats["engine"] == "llama.cpp on r1"
        assert stats["abandoned_threads"] == 2 and stats["hung_workers"] == 1
        assert stats["restarts"] == 2 and stats["workers"] == 2
        by_replica = {r["replica"]: r for r in stats["replicas"]}
        assert by_replica["r2"]["abandoned_threads"] == 2 and by_replica["r2"]["degraded"]
        assert by_replica["r1"]["abandoned_threads"] == 0 and not by_replica["r1"]["degraded"]
