"""CallCoalescer: unary jobs that pile up share handle calls, each gets its own answer,
the limits hold, and a job that leaves never takes another's call down with it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from localinfer.config import ReplicaSettings
from localinfer.errors import QueueFull, ReplicaLost
from localinfer.ray import wire
from localinfer.ray.coalesce import Call, CallCoalescer, CallLimits

pytestmark = [pytest.mark.ray, pytest.mark.anyio]


class Replica:
    """A fake ``once_many``: echoes each payload; holds calls until :attr:`release` is
    set, or the n-th call until ``holds[n]`` is."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.release = anyio.Event()
        self.holds: dict[int, anyio.Event] = {}
        self.cancelled = 0
        self.fail_with = fail_with

    async def send(self, calls: list[Call]) -> list[list[wire.WireEvent]]:
        self.batches.append([payload for payload, _ in calls])
        gate = self.holds.get(len(self.batches) - 1, self.release)
        try:
            await gate.wait()
        except BaseException:
            self.cancelled += 1
            raise
        if self.fail_with is not None:
            raise self.fail_with
        return [[wire.done(payload, 0, 0)] for payload, _ in calls]


def _coalescer(replica: Replica, tg: Any, limits: CallLimits, replicas: int = 1) -> CallCoalescer:
    return CallCoalescer(
        replica.send, limits, replicas=lambda: replicas, start_soon=tg.start_soon, model="m"
    )


async def _until(condition: Any) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.01)


async def test_jobs_waiting_share_the_next_call_and_get_their_own_answers() -> None:
    replica = Replica()
    answers: dict[int, Any] = {}
    async with anyio.create_task_group() as tg:
        calls = _coalescer(replica, tg, CallLimits(calls_per_replica=1, batch=3, waiting=None))

        async def one(i: int) -> None:
            answers[i] = await calls.call(i, f"r{i}")

        for i in range(6):
            tg.start_soon(one, i)
            await anyio.sleep(0.01)  # in order: the first goes alone, the rest wait
        await _until(lambda: len(replica.batches) == 1)
        replica.release.set()
    assert replica.batches == [[0], [1, 2, 3], [4, 5]]
    assert answers == {i: [wire.done(i, 0, 0)] for i in range(6)}
    assert (calls.calls, calls.jobs) == (3, 6)


async def test_calls_in_flight_grow_with_the_replicas() -> None:
    replica = Replica()
    async with anyio.create_task_group() as tg:
        calls = _coalescer(replica, tg, CallLimits(2, 8, None), replicas=2)
        for i in range(6):
            tg.start_soon(calls.call, i, f"r{i}")
            await anyio.sleep(0.01)
        await _until(lambda: len(replica.batches) == 4)
        await anyio.sleep(0.05)
        assert len(replica.batches) == 4  # 2 per replica; the other two wait
        replica.release.set()
    assert replica.batches == [[0], [1], [2], [3], [4, 5]]


async def test_past_the_waiting_limit_a_job_is_refused_with_429() -> None:
    replica = Replica()
    async with anyio.create_task_group() as tg:
        calls = _coalescer(replica, tg, CallLimits(1, 8, waiting=2))
        for i in range(3):  # one in flight, two waiting
            tg.start_soon(calls.call, i, f"r{i}")
            await anyio.sleep(0.01)
        with pytest.raises(QueueFull):
            await calls.call(3, "r3")
        replica.release.set()
    assert replica.batches == [[0], [1, 2]]


async def test_a_job_that_leaves_before_its_call_is_not_sent() -> None:
    replica = Replica()
    async with anyio.create_task_group() as tg:
        calls = _coalescer(replica, tg, CallLimits(1, 8, None))
        tg.start_soon(calls.call, 0, "r0")
        await _until(lambda: replica.batches)
        with anyio.move_on_after(0.05):  # waits behind the first call, then leaves
            await calls.call(1, "r1")
        tg.start_soon(calls.call, 2, "r2")
        await anyio.sleep(0.01)
        replica.release.set()
    assert replica.batches == [[0], [2]]


async def test_a_call_is_cancelled_once_none_of_its_jobs_is_wanted() -> None:
    replica = Replica()
    left: list[int] = []
    async with anyio.create_task_group() as tg:
        calls = _coalescer(replica, tg, CallLimits(1, 8, None))
        scopes = [anyio.CancelScope() for _ in range(2)]

        async def one(i: int) -> None:
            with scopes[i]:
                await calls.call(i, f"r{i}")
            left.append(i)

        replica.holds[1] = anyio.Event()  # the second call is held
        tg.start_soon(calls.call, "first", "r")
        await _until(lambda: replica.batches)
        for i in range(2):
            tg.start_soon(one, i)
        await anyio.sleep(0.01)
        replica.release.set()  # the first call ends; the next carries jobs 0 and 1
        await _until(lambda: len(replica.batches) == 2)
        scopes[0].cancel()
        await anyio.sleep(0.05)
        assert replica.cancelled == 0  # job 1 still wants it
        scopes[1].cancel()
        await _until(lambda: replica.cancelled == 1)
    assert sorted(left) == [0, 1]


async def test_a_failed_call_fails_every_job_in_it() -> None:
    replica = Replica(fail_with=ReplicaLost("gone"))
    failures: list[BaseException] = []
    async with anyio.create_task_group() as tg:
        calls = _coalescer(replica, tg, CallLimits(1, 8, None))

        async def one(i: int) -> None:
            try:
                await calls.call(i, f"r{i}")
            except ReplicaLost as exc:
                failures.append(exc)

        for i in range(3):
            tg.start_soon(one, i)
            await anyio.sleep(0.01)
        replica.release.set()
    assert len(failures) == 3 and replica.batches == [[0], [1, 2]]


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        # fixed replicas: two calls each keep a replica busy; a replica holds 64 jobs
        (ReplicaSettings(), CallLimits(2, 32, 256)),
        # autoscaled: one call more than the target, so Serve sees a replica over it
        (ReplicaSettings(max_replicas=4, target_ongoing_requests=3), CallLimits(4, 16, 256)),
        # never more calls or jobs than a replica takes
        (ReplicaSettings(max_ongoing_requests=2, max_queued_requests=-1), CallLimits(2, 1, None)),
        (ReplicaSettings(max_ongoing_requests=1), CallLimits(1, 1, 256)),
    ],
)
def test_limits_follow_the_deployment_settings(
    replicas: ReplicaSettings, expected: CallLimits
) -> None:
    assert CallLimits.of(replicas) == expected
