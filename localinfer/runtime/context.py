"""Handler → model calls: a handler uses another served model without going through HTTP.

A call leaves the calling worker thread through the loop's thread-safe entry
(``LoopHandle.run``), is queued on the *other* model's JobQueue like any request, and
the calling thread waits for the result. Waiting there is fine — another model's worker
does the work — unless no worker could ever take the job: every worker of the callee is
itself waiting, directly or through others, on the caller (a model calling itself with
one worker is the simplest case). :class:`CallGraph` tracks who waits on whom and such a
call is refused with ``WouldDeadlock`` instead of hanging.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import anyio

from localinfer.errors import ModelNotFound, ModelNotReady, RequestTimeout, WouldDeadlock
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.runtime.loop import LoopClosed, LoopHandle

if TYPE_CHECKING:
    from localinfer.runtime.model import ServedModel

#: how long a call waits for its result unless told otherwise
DEFAULT_CALL_TIMEOUT_S = 300.0


class CallGraph:
    """Which models have workers blocked in calls, and on which models. Loop-side only."""

    def __init__(self) -> None:
        self._waits: dict[str, list[str]] = {}

    def add(self, caller: str, target: str) -> None:
        self._waits.setdefault(caller, []).append(target)

    def remove(self, caller: str, target: str) -> None:
        targets = self._waits.get(caller, [])
        if target in targets:
            targets.remove(target)
        if not targets:
            self._waits.pop(caller, None)

    def waiting(self, model: str) -> int:
        """How many of ``model``'s workers are blocked in calls."""
        return len(self._waits.get(model, ()))

    def would_deadlock(self, caller: str, target: str, capacity: Callable[[str], int]) -> bool:
        """Whether blocking one more of ``caller``'s workers on ``target`` can never end.

        A model is stuck when all its workers (``capacity``) wait, and each wait is on a
        stuck model: the greatest such set, found by dropping any model that waits on one
        outside it. The call would deadlock if the caller ends up in that set.
        """
        waits = {model: list(targets) for model, targets in self._waits.items()}
        waits.setdefault(caller, []).append(target)
        stuck = {model for model, targets in waits.items() if len(targets) >= capacity(model)}
        changed = True
        while changed:
            changed = False
            for model in list(stuck):
                if any(t not in stuck for t in waits[model]):
                    stuck.discard(model)
                    changed = True
        return caller in stuck


class CallContext:
    """The :class:`~localinfer.handlers.base.HandlerContext` of one served model.

    ``call`` and ``stream`` are for worker threads (or a handler's own threads): they
    block the caller until the other model answers.
    """

    def __init__(
        self,
        model: str,
        *,
        lookup: Callable[[str], ServedModel],
        graph: CallGraph,
        loop: LoopHandle,
        default_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
    ):
        self._model = model
        self._lookup = lookup
        self._graph = graph
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the loop
        self.default_timeout_s = default_timeout_s

    @property
    def model(self) -> str:
        return self._model

    def call(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Any:
        """Run ``payload`` on ``model``; its result, or a stream's items joined."""
        deadline = self._deadline(timeout_s)
        return self._run(self._call, model, payload, deadline)

    def stream(
        self, model: str, payload: Any, *, timeout_s: float | None = None
    ) -> Generator[Any, None, Any]:
        """Yield the items ``model`` streams; the generator returns its final result."""
        deadline = self._deadline(timeout_s)
        job: Job = self._run(self._start, model, payload)
        try:
            while True:
                event = self._run(self._next, job, deadline)
                if isinstance(event, Done):
                    return event.value
                yield event.value
        finally:
            try:
                self._loop.call_soon(self._end, job)
            except LoopClosed:
                pass

    # -- the calling thread ---------------------------------------------------------------

    def _deadline(self, timeout_s: float | None) -> float:
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "context calls block the calling thread: make them from a worker thread, "
                "never from the event loop"
            )
        return time.perf_counter() + (self.default_timeout_s if timeout_s is None else timeout_s)

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self._loop.run(fn, *args)
        except LoopClosed:
            raise ModelNotReady("the server is shutting down") from None

    # -- on the loop ----------------------------------------------------------------------

    def _submit(self, name: str, payload: Any) -> Job:
        target = self._lookup(name)
        if self._graph.would_deadlock(self._model, target.name, self._capacity):
            raise WouldDeadlock(
                f"model {self._model!r} calling {target.name!r} would wait forever: no "
                f"worker of {target.name!r} is free to answer while {self._model!r} waits"
                + (" (a model with one worker cannot call itself)" if name == self._model else "")
            )
        prepare = target.definition.prepare
        if prepare is not None and isinstance(payload, dict):
            payload = prepare(payload)  # body-shaped payloads are checked as over HTTP
        job = target.submit(payload, request_id=f"{self._model}-call-{uuid.uuid4().hex[:16]}")
        self._graph.add(self._model, target.name)
        return job

    def _capacity(self, name: str) -> int:
        try:
            return self._lookup(name).capacity
        except ModelNotFound:
            return 0

    def _end(self, job: Job) -> None:
        job.release("the calling handler stopped reading")
        self._graph.remove(self._model, job.model)

    async def _start(self, name: str, payload: Any) -> Job:
        return self._submit(name, payload)

    async def _next(self, job: Job, deadline: float) -> Chunk | Done:
        with anyio.move_on_after(max(deadline - time.perf_counter(), 0)):
            return await job.next_event()
        job.cancel("timeout")
        raise RequestTimeout(f"the call to model {job.model!r} did not finish in time")

    async def _call(self, name: str, payload: Any, deadline: float) -> Any:
        job = self._submit(name, payload)
        chunks: list[Any] = []
        try:
            while isinstance(event := await self._next(job, deadline), Chunk):
                chunks.append(event.value)
        finally:
            self._end(job)
        if event.value is not None or not chunks:
            return event.value
        return joined(chunks)


def joined(chunks: list[Any]) -> Any:
    """A whole result from streamed items: text joined, bytes concatenated, else a list."""
    if all(isinstance(c, str) for c in chunks):
        return "".join(chunks)
    if all(isinstance(c, bytes | bytearray) for c in chunks):
        return b"".join(chunks)
    return chunks
