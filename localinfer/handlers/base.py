"""The handler API: what model code implements, and what it is handed.

A handler lives in one worker thread. It is created and loaded there, on its device,
then given batches of :class:`WorkItem` s. It is plain synchronous Python: it gets no
event loop and needs none. To use another served model (transcribe, then summarise) it
calls through :attr:`Handler.context` — user code that is not a handler, through
:func:`current_context` — never through HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypedDict, runtime_checkable


@dataclass(frozen=True)
class ModelSource:
    """Where a handler's weights come from, resolved before the handler is built.

    ``location`` is a local directory, or a Hugging Face repo id read from the local HF
    cache (downloads are the hub layer's job, never a handler's).
    """

    location: str
    revision: str | None = None
    #: a single file inside ``location`` (a ``.gguf`` file, for instance)
    filename: str | None = None
    #: off unless the user turned it on for this model
    trust_remote_code: bool = False
    #: handler-specific settings (dtype, pooling, max_batch_tokens, ...)
    options: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class WorkItem(Protocol):
    """One request as a handler sees it. Every method returns at once."""

    @property
    def payload(self) -> Any: ...

    @property
    def request_id(self) -> str: ...

    @property
    def cancelled(self) -> bool:
        """True once the caller went away or timed out: stop work on this item."""
        ...

    @property
    def done(self) -> bool: ...

    def emit(self, chunk: Any) -> None:
        """Stream one item (token, text piece, bytes) to the caller."""
        ...

    def finish(self, result: Any = None) -> None:
        """End the item with its result (``None`` after streaming)."""
        ...

    def fail(self, error: BaseException) -> None:
        """End the item with an error; the worker carries on."""
        ...


class HandlerContext(Protocol):
    """What a handler can reach beyond its own model: the other served models.

    Calls block the calling thread (a worker thread may block: another model's worker
    does the work) and raise the callee's error (``ModelNotFound``, ``HandlerFailed``,
    ``RequestTimeout``, ``WouldDeadlock`` for a call that could never be served).
    """

    @property
    def model(self) -> str:
        """The name of the model this context belongs to."""
        ...

    def call(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Any:
        """Run ``payload`` on ``model`` and return its result (a stream's items joined)."""
        ...

    def stream(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Iterator[Any]:
        """Run ``payload`` on ``model`` and yield the items it streams."""
        ...


class _Detached:
    """The context of a handler outside the runtime (a unit test): every call says so."""

    model = ""

    def call(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Any:
        raise RuntimeError("this handler is not served by localinfer: it cannot call models")

    def stream(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Iterator[Any]:
        raise RuntimeError("this handler is not served by localinfer: it cannot call models")


DETACHED: HandlerContext = _Detached()
_thread_context = threading.local()


def bind_context(handler: Handler | None, context: HandlerContext) -> None:
    """Give ``handler`` (and the calling worker thread) its context. Runtime use only."""
    _thread_context.value = context
    if handler is not None:
        handler.context = context


def current_context() -> HandlerContext:
    """The context of the model whose worker thread is running: for user code (``infer``,
    LitAPI hooks) that has no ``self.context``. Outside a worker thread, a detached one."""
    context: HandlerContext = getattr(_thread_context, "value", DETACHED)
    return context


@dataclass(frozen=True)
class AbandonedThread:
    """A thread of a handler's own that it gave up on: stuck, and a thread cannot be killed."""

    name: str
    reason: str
    #: whether the thread still runs (it holds what it held until it returns)
    alive: Callable[[], bool]
    since: float = field(default_factory=time.monotonic)

    def health(self) -> dict[str, object]:
        return {
            "thread": self.name,
            "state": "abandoned",
            "error": self.reason,
            "hung_s": round(time.monotonic() - self.since, 3),
        }


class ThreadLedger:
    """The threads a handler gave up on, and whether it may give up on another.

    A handler whose own thread is stuck (a continuous-batching loop that stalled) asks
    :meth:`may_abandon` before leaving it behind to start a fresh one: the runtime counts
    these threads with its abandoned workers, against ``max_abandoned_workers``. Refused,
    the handler stops serving and says why with :meth:`stuck_in_place` (the runtime then
    reports the worker hung and the model degraded), until the thread ends by itself.
    """

    def __init__(self, may_abandon: Callable[[], bool] | None = None) -> None:
        self._may_abandon = may_abandon
        self._threads: list[AbandonedThread] = []
        self._lock = threading.Lock()
        #: why the handler cannot serve: a stuck thread it was not allowed to leave behind
        self.stuck_reason: str | None = None

    def may_abandon(self) -> bool:
        return self._may_abandon is None or self._may_abandon()

    def abandon(self, name: str, reason: str, alive: Callable[[], bool]) -> None:
        with self._lock:
            self._threads.append(AbandonedThread(name, reason, alive))

    def stuck_in_place(self, reason: str | None) -> None:
        """The handler cannot serve because of ``reason`` (``None``: it serves again)."""
        self.stuck_reason = reason

    def live(self) -> list[AbandonedThread]:
        """The abandoned threads still running (those that ended are forgotten)."""
        with self._lock:
            self._threads = [t for t in self._threads if t.alive()]
            return list(self._threads)


class CacheUsage(TypedDict):
    """One cache a handler keeps (``Handler.cache_usage``)."""

    bytes: int
    limit_bytes: int
    entries: int


class Handler:
    """Base class for model code.

    Override :meth:`run_batch` (inputs in, one output per input; an output that is an
    iterator is streamed), or :meth:`process` for full control over the items (a
    continuous-batching engine finishing items out of order, for instance).
    """

    task: ClassVar[str] = "infer"
    #: a name plugins and the catalog refer to this handler by (e.g. "transformers-chat")
    handler_name: ClassVar[str] = ""
    #: 1: ``process`` answers every item before it returns. N > 1: ``process`` may return
    #: at once and finish items later from the handler's own threads (a continuous-batching
    #: engine); the worker then keeps up to N items in flight and feeds new ones as slots free.
    #: Such a handler must end every item it is given, cancelled ones included: an item
    #: never finished or failed keeps its slot.
    max_in_flight: int = 1
    #: what serves the requests once loaded ("transformers continuous batching x32", ...),
    #: for ``/health``: a capability a dependency could not give shows there
    engine: str | None = None
    #: the other served models, set by the runtime before :meth:`load`
    context: HandlerContext = DETACHED
    _thread_ledger: ThreadLedger | None = None

    @property
    def thread_ledger(self) -> ThreadLedger:
        """Threads of its own the handler gave up on. The runtime sets one before
        :meth:`load` that counts them against ``max_abandoned_workers``; outside the
        runtime, an unbounded one of its own."""
        if self._thread_ledger is None:
            self._thread_ledger = ThreadLedger()
        return self._thread_ledger

    @thread_ledger.setter
    def thread_ledger(self, ledger: ThreadLedger) -> None:
        self._thread_ledger = ledger

    def load(self, device: str) -> None:
        """Load weights onto ``device``. Called once, inside the worker thread."""

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        """Compute one output per input. Return iterators to stream."""
        raise NotImplementedError

    def process(self, items: Sequence[WorkItem]) -> None:
        """Serve a batch: run it, then deliver each output; isolate a failing input."""
        live = [item for item in items if not item.cancelled]
        if not live:
            return
        try:
            outputs = self.run_batch([item.payload for item in live])
        except Exception:
            if len(live) == 1:
                raise
            # one bad input must not fail its neighbours: retry them one by one
            for item in live:
                try:
                    self.process([item])
                except Exception as exc:
                    item.fail(exc)
            return
        if len(outputs) != len(live):
            raise RuntimeError(
                f"{type(self).__name__}.run_batch returned {len(outputs)} outputs "
                f"for {len(live)} inputs"
            )
        for item, output in zip(live, outputs, strict=True):
            try:
                deliver_output(item, output)
            except Exception as exc:
                item.fail(exc)

    def close(self) -> None:
        """Release the model (called in the worker thread when it stops)."""

    def on_abandoned(self) -> str | None:
        """The runtime gave up on the thread in this handler (a ``load()`` past
        ``load_timeout_s``, a hang): free what can be freed without that thread, and say
        what, for the log. Called on the event loop, so it must not block. A thread cannot
        be stopped: by default nothing (``None``)."""
        return None

    def cache_usage(self) -> dict[str, CacheUsage]:
        """What the handler keeps between requests, by cache name, for ``/v1/stats``: a
        soak tells a bounded cache filling up from a leak by it. Called on the event loop
        while the handler serves: read counters, take no lock a step holds."""
        return {}


def is_stream(output: Any) -> bool:
    """True for outputs that should be streamed item by item (generators, iterators)."""
    return isinstance(output, Iterator) and not isinstance(output, str | bytes | dict)


def deliver_output(item: WorkItem, output: Any) -> None:
    """Finish ``item`` with ``output``, streaming it first if it is an iterator."""
    if not is_stream(output):
        item.finish(output)
        return
    try:
        for chunk in output:
            item.emit(chunk)
            if item.cancelled:
                break
    finally:
        close = getattr(output, "close", None)
        if close is not None:
            close()
    item.finish(None)
