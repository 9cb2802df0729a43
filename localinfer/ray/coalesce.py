"""Unary calls to one model's replicas, sent together when they pile up.

A ``DeploymentHandle`` call costs far more than a small job: measured on 2 cores, a
no-op served by a model replica ran at 0.14 of plain ``localinfer serve`` with one call
per request (docs/benchmarks.md). So the ingress keeps a few calls per replica in flight
and, while they are out, lets new jobs wait: the next call carries every job waiting
(up to a batch). One client alone still gets its call at once; sixteen share a few.

The limits come from the deployment's settings, so Serve's meaning of them holds: a
replica holds at most ``max_ongoing_requests`` jobs (calls x batch), at most
``max_queued_requests`` wait before a 429, and an autoscaled model keeps more calls in
flight per replica than its ``target_ongoing_requests`` while jobs wait, so Serve sees a
replica over its target and adds one.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from localinfer.config import ReplicaSettings
from localinfer.errors import HandlerFailed, QueueFull
from localinfer.ray.wire import WireEvent

#: one job of a call: its payload and request id
Call = tuple[Any, str]
#: sends a batch of jobs in one handle call; their events in the same order
Send = Callable[[list[Call]], Awaitable[list[list[WireEvent]]]]


@dataclass(frozen=True)
class CallLimits:
    """How many calls go out per replica, how many jobs each carries, how many wait."""

    calls_per_replica: int
    batch: int
    #: jobs that may wait for a call (``None``: unbounded)
    waiting: int | None

    @classmethod
    def of(cls, replicas: ReplicaSettings) -> CallLimits:
        # two keep a replica busy (one runs, one arrives); an autoscaled model needs one
        # more than its target, or Serve never sees a replica over it
        wanted = 2
        if replicas.min_replicas != replicas.max_replicas:
            wanted = max(wanted, math.floor(replicas.target_ongoing_requests) + 1)
        calls = max(1, min(replicas.max_ongoing_requests, wanted))
        waiting = replicas.max_queued_requests
        return cls(
            calls_per_replica=calls,
            batch=max(1, replicas.max_ongoing_requests // calls),
            waiting=None if waiting < 0 else waiting,
        )


class _Pending:
    """One job waiting for, or riding in, a call."""

    __slots__ = ("abandoned", "batch", "call", "done", "error", "events")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.done = anyio.Event()
        self.events: list[WireEvent] | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.batch: _Batch | None = None


class _Batch:
    __slots__ = ("items", "scope")

    def __init__(self, items: list[_Pending]) -> None:
        self.items = items
        self.scope = anyio.CancelScope()


class CallCoalescer:
    """Sends one model's unary jobs; every method runs on the ingress's event loop."""

    def __init__(
        self,
        send: Send,
        limits: CallLimits,
        *,
        replicas: Callable[[], int],
        start_soon: Callable[..., object],
        model: str,
    ) -> None:
        self._send = send
        self._limits = limits
        self._replicas = replicas
        self._start_soon = start_soon
        self._model = model
        self._waiting: deque[_Pending] = deque()
        self._in_flight = 0
        #: handle calls made, jobs they carried (for tests and the bench)
        self.calls = 0
        self.jobs = 0

    async def call(self, payload: Any, request_id: str) -> list[WireEvent]:
        """The job's events from its replica; cancelled, the job leaves its call (the
        call itself is cancelled, on its replica too, once none of its jobs is wanted)."""
        limit = self._limits.waiting
        if limit is not None and len(self._waiting) >= limit and self._at_capacity():
            raise QueueFull(
                f"model {self._model!r}: every replica is busy and {limit} requests wait"
            )
        item = _Pending((payload, request_id))
        self._waiting.append(item)
        self._dispatch()
        try:
            await item.done.wait()
        except BaseException:
            self._abandon(item)
            raise
        if item.error is not None:
            raise item.error
        assert item.events is not None
        return item.events

    def _at_capacity(self) -> bool:
        return self._in_flight >= self._limits.calls_per_replica * max(1, self._replicas())

    def _dispatch(self) -> None:
        while self._waiting and not self._at_capacity():
            items = [
                self._waiting.popleft() for _ in range(min(self._limits.batch, len(self._waiting)))
            ]
            batch = _Batch(items)
            for item in items:
                item.batch = batch
            self._in_flight += 1
            self._start_soon(self._run, batch)

    def _abandon(self, item: _Pending) -> None:
        item.abandoned = True
        if item.batch is None:
            self._waiting.remove(item)
        elif all(other.abandoned for other in item.batch.items):
            item.batch.scope.cancel()

    async def _run(self, batch: _Batch) -> None:
        """One call for ``batch``. Never raises: it shares the registry's task group."""
        self.calls += 1
        self.jobs += len(batch.items)
        results: list[list[WireEvent]] | None = None
        error: BaseException | None = None
        try:
            with batch.scope:
                results = await self._send([item.call for item in batch.items])
                if len(results) != len(batch.items):
                    error = HandlerFailed("the replica answered a different number of jobs")
        except Exception as exc:
            error = exc
        except asyncio.CancelledError:
            # not the scope's own (that one it swallows): the registry is shutting down,
            # or Serve cancelled the call; the jobs fail, nothing else does
            error = HandlerFailed("the call was cancelled")
        if results is None and error is None:
            error = HandlerFailed("the call was cancelled")  # every job in it was abandoned
        for index, item in enumerate(batch.items):
            if error is not None:
                item.error = error
            else:
                assert results is not None
                item.events = results[index]
            item.done.set()
        self._in_flight -= 1
        self._dispatch()
