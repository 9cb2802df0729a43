"""The child's side of a model served from a process of its own (see
:mod:`localinfer.runtime.isolation`): build the handler from its recipe, load it, and
serve what the pipe brings until the server says stop or goes away."""

from __future__ import annotations

import logging
import os
import pickle
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from localinfer.errors import HandlerFailed, LocalInferError
from localinfer.handlers.base import Handler, ModelSource, bind_context
from localinfer.plugins import HandlerSpec
from localinfer.runtime.isolated_threads import TELL_THREADS_S, ChildLedger
from localinfer.runtime.job import as_localinfer_error

logger = logging.getLogger(__name__)

#: how long a child may take to close its handler and exit before it is killed
CLOSE_WAIT_S = 10.0


class Recipe(Protocol):
    """What a child process needs to build a worker's handler: picklable, unlike a factory."""

    @property
    def name(self) -> str:
        """What the handler is called in logs and in ``engine`` when it names none."""
        ...

    def build(self, index: int, device: str) -> Handler:
        """The handler of worker ``index`` on ``device``, in the child."""
        ...


@dataclass(frozen=True)
class HandlerRecipe:
    """A catalog model (or a path): its handler class, built from the model's source."""

    spec: HandlerSpec
    source: ModelSource

    @property
    def name(self) -> str:
        return self.spec.name

    def build(self, index: int, device: str) -> Handler:
        return self.spec.load_class()(self.source)  # type: ignore[call-arg]


@dataclass(frozen=True)
class ChildSpec:
    """What a child process starts from (picklable): the handler's recipe, for whom it
    serves, where, how it logs, and whether it runs at idle priority."""

    recipe: Recipe
    model: str
    index: int
    device: str
    log_level: int
    idle: bool


def portable_error(exc: BaseException) -> LocalInferError:
    """``exc`` classified into the error hierarchy, in a form that survives the pipe."""
    error = as_localinfer_error(exc)
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # an exception whose __init__ wants more than its message
        return HandlerFailed(error.message, param=error.param, code=error.code)
    return error


class _ChildItem:
    """A request in the child: what the handler sees; its events go back up the pipe."""

    __slots__ = ("_child", "cancelled", "done", "key", "payload", "request_id")

    def __init__(self, child: _Child, key: int, payload: Any, request_id: str) -> None:
        self._child = child
        self.key = key
        self.payload = payload
        self.request_id = request_id
        self.cancelled = False
        self.done = False

    def emit(self, chunk: Any) -> None:
        if self.done:
            raise RuntimeError("emit() after the job finished")
        self._child.send(("emit", self.key, chunk))

    def finish(self, result: Any = None) -> None:
        if self.done:
            raise RuntimeError("finish() called twice")
        self.done = True
        self._child.forget(self.key)
        self._child.send(("finish", self.key, result))

    def fail(self, error: BaseException) -> None:
        if self.done:
            return
        self.done = True
        self._child.forget(self.key)
        if not isinstance(error, LocalInferError):
            logger.error("request %s failed", self.request_id, exc_info=error)
        self._child.send(("fail", self.key, portable_error(error)))


class _ChildContext:
    """The handler's way to the server's other models: through the server's side."""

    def __init__(self, child: _Child, model: str) -> None:
        self._child = child
        self.model = model

    def call(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Any:
        return self._child.call(model, payload, timeout_s, stream=False)

    def stream(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Iterator[Any]:
        """The callee's items, once it has streamed them all (they cross the pipe together)."""
        yield from self._child.call(model, payload, timeout_s, stream=True)


class _Child:
    """The child's main thread reads the pipe; a runner thread runs the handler."""

    def __init__(self, conn: Connection, ledger: Connection, handler: Handler) -> None:
        self.conn = conn
        self.handler = handler
        self._send_lock = threading.Lock()
        self._items: dict[int, _ChildItem] = {}
        self._batches: queue.SimpleQueue[tuple[int, list[_ChildItem]] | None] = queue.SimpleQueue()
        self._calls: dict[int, queue.SimpleQueue[tuple[bool, Any]]] = {}
        self._next_call = 0
        self.ledger = ChildLedger(ledger)

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self.conn.send(message)
        except (OSError, ValueError):
            pass  # the server is gone; the main thread sees it too and ends the process

    def forget(self, key: int) -> None:
        self._items.pop(key, None)

    def call(self, model: str, payload: Any, timeout_s: float | None, *, stream: bool) -> Any:
        answer: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        with self._send_lock:
            number = self._next_call
            self._next_call += 1
            self._calls[number] = answer
        self.send(("call", number, model, payload, timeout_s, stream))
        ok, value = answer.get()
        self._calls.pop(number, None)
        if not ok:
            raise value
        return value

    def serve(self) -> None:
        runner = threading.Thread(target=self._run, name="localinfer:handler", daemon=True)
        runner.start()
        try:
            while True:
                try:
                    if not self.conn.poll(TELL_THREADS_S):
                        self.ledger.tell()  # an abandoned thread may have ended meanwhile
                        continue
                    message = self.conn.recv()
                except (EOFError, OSError):
                    break  # the server is gone
                kind = message[0]
                if kind == "batch":
                    _, number, wire = message
                    items = [_ChildItem(self, key, payload, rid) for key, payload, rid in wire]
                    self._items.update((item.key, item) for item in items)
                    self._batches.put((number, items))
                elif kind == "cancel":
                    item = self._items.get(message[1])
                    if item is not None:
                        item.cancelled = True
                elif kind == "reply":
                    answer = self._calls.get(message[1])
                    if answer is not None:
                        answer.put((message[2], message[3]))
                elif kind == "close":
                    break
        finally:
            self._batches.put(None)
            runner.join(CLOSE_WAIT_S)
            try:
                self.handler.close()
            except Exception:
                logger.exception("close() failed")

    def _run(self) -> None:
        while (taken := self._batches.get()) is not None:
            number, items = taken
            error: LocalInferError | None = None
            try:
                self.handler.process(items)
            except Exception as exc:
                logger.error("process() raised", exc_info=exc)
                error = portable_error(exc)
            try:
                caches = dict(self.handler.cache_usage())
            except Exception:
                caches = {}
            self.send(("returned", number, error, caches))


def run_idle() -> None:
    """Put this thread (and the threads it starts) at Linux's idle priority (``SCHED_IDLE``):
    any other thread that wants a core gets it at once. Elsewhere: nothing."""
    if not hasattr(os, "SCHED_IDLE"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:  # a sandbox may forbid it: serve anyway, at the inherited priority
        logger.warning("could not run at idle priority: %s", exc)


def serve_in_child(conn: Connection, ledger: Connection, spec: ChildSpec) -> None:
    """The child process: build and load the handler, then serve until told or orphaned.

    It inherits the worker thread's nice value (``worker_nice``); with ``idle`` it runs at
    Linux's idle priority instead, and so do the threads its handler starts."""
    from localinfer.log import configure_logging
    from localinfer.runtime.worker import bind_thread_to_device

    configure_logging(logging.getLevelName(spec.log_level).lower())
    if spec.idle:
        run_idle()
    try:
        bind_thread_to_device(spec.device)
        handler = spec.recipe.build(spec.index, spec.device)
        child = _Child(conn, ledger, handler)
        bind_context(handler, _ChildContext(child, spec.model))
        handler.thread_ledger = child.ledger
        handler.load(spec.device)
    except BaseException as exc:
        logger.exception("%s failed to load on %s", spec.recipe.name, spec.device)
        conn.send(("load_failed", portable_error(exc)))
        conn.close()
        os._exit(1)  # threads the failed load left behind must not keep the process alive
    engine = getattr(handler, "engine", None)
    conn.send(("loaded", None if engine is None else str(engine), handler.max_in_flight))
    child.serve()
    conn.close()
    os._exit(0)  # threads the handler left behind must not keep the process alive
