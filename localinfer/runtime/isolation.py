"""Models served from a process of their own, so that their Python holds its own GIL.

A handler whose Python work between native calls is heavy (a speech model's DSP, torch's
Python between ops) takes the GIL from the event loop for every such stretch: on a busy
machine the loop then answers late (docs/reliability.md, the soak's ``/health`` tail).
Served from a child process, the handler has a GIL of its own, and the worker thread in
the server only waits on a pipe. A crash or a hang ends that process, not the server, and
its memory goes back to the system when it is killed: a thread could only be abandoned.

:class:`ProcessHandler` is the server's side: an ordinary handler to the runtime (its
worker thread, batches, cancellation, ``/health`` and ``/v1/stats`` are the same). The
child builds the real handler from a picklable recipe (a catalog model's handler and
source, or a user code target's import path), loads it, and serves what the pipe brings
(:mod:`localinfer.runtime.isolated_child`).

The wire: tuples whose first element says what they are, pickled by
``multiprocessing.connection``.

- server to child: ``("batch", no, [(key, payload, request_id), ...])``,
  ``("cancel", key)``, ``("reply", call, ok, value)`` (a context call's answer),
  ``("close",)``;
- child to server: ``("loaded", engine, max_in_flight)`` or ``("load_failed", error)``,
  ``("emit", key, chunk)``, ``("finish", key, result)``, ``("fail", key, error)``,
  ``("returned", no, error, caches)`` (``process`` returned or raised),
  ``("call", call, model, payload, timeout_s, stream)`` (the handler calls another model);
- on a second pipe, the handler's own stuck threads (:mod:`.isolated_threads`); one it
  may not abandon ends with its process, started again with the next batch.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

from localinfer.config import IsolatedPriority
from localinfer.errors import EngineStalled, HandlerFailed, LocalInferError, WorkerCrashed
from localinfer.handlers.base import CacheUsage, Handler, WorkItem
from localinfer.runtime.isolated_child import (
    CLOSE_WAIT_S,
    ChildSpec,
    Recipe,
    portable_error,
    serve_in_child,
)
from localinfer.runtime.isolated_threads import LedgerRelay
from localinfer.runtime.model import ModelDefinition

logger = logging.getLogger(__name__)

#: how often the server's side looks at its requests' cancellation while it waits
POLL_S = 0.05
#: a child still in its handler this long after every request it serves ended (cancelled,
#: timed out) is killed and started again. Under ``hang_grace_s``'s default (30 s): the
#: process goes before the runtime would have to abandon the worker thread waiting on it.
KILL_AFTER_S = 20.0


# -- the server's side ---------------------------------------------------------------------


@dataclass
class _Batch:
    keys: list[int]
    returned: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class ProcessHandler(Handler):
    """A handler that runs ``recipe``'s handler in a child process and relays its work.

    One child per worker thread. A child that dies fails the requests it was serving
    (``worker_crashed``) and is started again for the next batch; one that stays in its
    handler :data:`KILL_AFTER_S` after all of its requests ended is killed, then the same.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        index: int = 0,
        idle: bool = False,
        kill_after_s: float = KILL_AFTER_S,
    ) -> None:
        self.recipe = recipe
        self.index = index
        #: the child runs at Linux's idle priority (``isolated_priority = "idle"``)
        self.idle = idle
        self.kill_after_s = kill_after_s
        self._device = "cpu"
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._items: dict[int, WorkItem] = {}
        self._cancelled: dict[int, float] = {}  # key -> when its cancel was sent
        self._batches: dict[int, _Batch] = {}
        self._next_key = 0
        self._caches: dict[str, CacheUsage] = {}
        self._reader: threading.Thread | None = None
        self._watched_at = 0.0  # when _watch last looked (time.monotonic)
        #: the child handler's own stuck threads (its ledger, on a pipe of its own)
        self._threads = LedgerRelay(lambda: self.thread_ledger, self._stuck)

    # -- lifecycle

    def load(self, device: str) -> None:
        self._device = device
        self._start()

    def _start(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        ours, theirs = spawn.Pipe()
        ledger_ours, ledger_theirs = spawn.Pipe()
        level = logging.getLogger("localinfer").getEffectiveLevel()
        model = self.context.model or self.recipe.name
        name = f"localinfer:{model}"
        spec = ChildSpec(self.recipe, model, self.index, self._device, level, self.idle)
        process = spawn.Process(
            target=serve_in_child,
            args=(theirs, ledger_theirs, spec),
            name=name,
            daemon=True,  # multiprocessing ends it when the server exits
        )
        process.start()
        theirs.close()
        ledger_theirs.close()
        self._process, self._conn = process, ours
        self._threads.start(ledger_ours, process, name)
        message = self._load_answer(ours)
        if message is None:
            self._conn = None
            raise HandlerFailed(
                f"the process loading {self.recipe.name} ended while loading "
                f"({self._exit_reason()})"
            )
        if message[0] == "load_failed":
            self._stop_child()
            raise message[1]
        _, engine, in_flight = message
        self.engine = f"{engine or self.recipe.name} (in a process of its own)"
        self.max_in_flight = int(in_flight)
        if self.max_in_flight > 1:
            # requests finish out of order while the worker thread feeds new ones: a thread
            # of its own reads this child's pipe (one-at-a-time handlers: the worker does)
            self._reader = threading.Thread(
                target=self._read_forever, args=(ours,), name=f"{name}:reader", daemon=True
            )
            self._reader.start()

    def _load_answer(self, conn: Connection) -> tuple[Any, ...] | None:
        """The child's answer to its load (``None``: it ended first)."""
        while True:
            message = self._poll(conn)
            if message is _ENDED:
                return None
            if message is not None and message[0] in _LOAD_ENDS:
                return tuple(message)
            if message is not None:  # a context call its load makes
                self._dispatch(message)

    def _poll(self, conn: Connection) -> Any:
        """The child's next message, ``None`` if none came within :data:`POLL_S`, or
        ``_ENDED`` once the child has ended (or its pipe was closed)."""
        try:
            if conn.poll(POLL_S):
                return conn.recv()
        except (EOFError, OSError):
            return _ENDED
        if not self._process.is_alive() and not conn.poll(0):
            return _ENDED
        return None

    def close(self) -> None:
        self._stop_child()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=CLOSE_WAIT_S)

    def on_abandoned(self) -> str | None:
        """The runtime gave up on the worker thread (a load past ``load_timeout_s``, a
        hang): kill the child, whose end the thread sees within :data:`POLL_S`, so it
        returns, and the child's memory goes back to the system."""
        process = self._process
        if process is None or not process.is_alive():
            return None
        process.kill()
        logger.warning("%s (pid %s) killed: its worker was given up on", process.name, process.pid)
        return f"its process (pid {process.pid}) was killed"

    def _stop_child(self) -> None:
        process, conn = self._process, self._conn
        self._conn = None
        if process is None:
            return
        if conn is not None:
            self._send(("close",), conn)
        process.join(CLOSE_WAIT_S)
        if process.is_alive():
            logger.warning("%s did not exit within %.0f s: killed", process.name, CLOSE_WAIT_S)
            process.kill()
            process.join(CLOSE_WAIT_S)
        if conn is not None:
            conn.close()

    # -- serving

    def process(self, items: Sequence[WorkItem]) -> None:
        if self._conn is None:
            logger.warning("starting the process of %s again", self.recipe.name)
            self._start()
        batch = self._submit(items)
        if self._reader is None:
            self._pump(until=batch)
        else:  # the reader sets it, or fails the batch when the child ends
            batch.returned.wait()
        if batch.error is not None:
            raise batch.error

    def _submit(self, items: Sequence[WorkItem]) -> _Batch:
        with self._lock:
            keys = list(range(self._next_key, self._next_key + len(items)))
            self._next_key += len(items)
            self._items.update(zip(keys, items, strict=True))
            batch = _Batch(keys)
            number = keys[0] if keys else self._next_key
            self._batches[number] = batch
        wire = [(key, item.payload, item.request_id) for key, item in zip(keys, items, strict=True)]
        conn = self._conn
        try:
            sent = self._send(("batch", number, wire))
        except Exception as exc:  # a payload that cannot be pickled: nothing was written
            with self._lock:
                for key in keys:
                    self._items.pop(key, None)
                self._batches.pop(number, None)
            raise HandlerFailed(
                f"this request cannot be sent to the model's own process: {exc}"
            ) from exc
        if conn is not None and not sent:
            self._child_ended(conn, "its pipe closed")
        return batch

    def _send(self, message: tuple[Any, ...], conn: Connection | None = None) -> bool:
        """Send ``message`` to the child (``conn``: a pipe already let go of, to close it)."""
        conn = conn or self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.send(message)
        except (OSError, ValueError):
            return False
        return True

    def _pump(self, until: _Batch) -> None:
        """In the worker thread: relay the child's messages until ``until`` returned."""
        conn = self._conn
        while conn is not None and not until.returned.is_set():
            self._relay(conn)

    def _read_forever(self, conn: Connection) -> None:
        """The reader thread of a handler with requests in flight, for one child."""
        while self._conn is conn:
            self._relay(conn)

    def _relay(self, conn: Connection) -> None:
        message = self._poll(conn)
        if message is _ENDED:
            if self._conn is conn:  # not closed by us
                self._child_ended(conn, self._exit_reason())
            return
        if message is not None:
            self._dispatch(message)
        now = time.monotonic()
        if message is None or now - self._watched_at >= POLL_S:  # not at every token
            self._watched_at = now
            self._watch(conn, now)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "emit":
            item = self._items.get(message[1])
            if item is not None and not item.done:
                item.emit(message[2])
        elif kind == "finish" or kind == "fail":
            with self._lock:
                item = self._items.pop(message[1], None)
                self._cancelled.pop(message[1], None)
            if item is not None and not item.done:
                if kind == "finish":
                    item.finish(message[2])
                else:
                    item.fail(message[2])
        elif kind == "returned":
            _, number, error, caches = message
            self._caches = caches
            with self._lock:
                batch = self._batches.pop(number, None)
                if batch is not None and self._reader is None:
                    # one at a time: what the handler left unanswered is the worker's to end
                    for key in batch.keys:
                        self._items.pop(key, None)
                        self._cancelled.pop(key, None)
            if batch is not None:
                batch.error = error
                batch.returned.set()
        elif kind == "call":
            if self._reader is None:
                self._answer_call(*message[1:])
            else:  # the reader must go on relaying while the call waits for its model
                threading.Thread(target=self._answer_call, args=message[1:], daemon=True).start()
        else:
            logger.error("%s: unknown message %r from its process", self.recipe.name, kind)

    def _stuck(self, process: Any, reason: str) -> None:
        """The child's handler has a stuck thread it may not leave behind: the process
        goes (the thread with it), and a fresh one starts with the next batch."""
        conn = self._conn
        if conn is not None and self._process is process:
            self._kill(conn, reason, EngineStalled(f"{reason}; its process starts again"))

    def _kill(self, conn: Connection, why: str, error: LocalInferError | None = None) -> None:
        """Kill the child and fail what it served (``error``, or ``worker_crashed``)."""
        logger.error("%s: %s: killed, it starts again", self._process.name, why)
        self._process.kill()
        self._process.join(CLOSE_WAIT_S)
        self._child_ended(conn, f"killed: {why}", error)

    def _answer_call(
        self, call: int, model: str, payload: Any, timeout_s: float | None, stream: bool
    ) -> None:
        try:
            if stream:
                value: Any = list(self.context.stream(model, payload, timeout_s=timeout_s))
            else:
                value = self.context.call(model, payload, timeout_s=timeout_s)
            self._send(("reply", call, True, value))
        except Exception as exc:
            self._send(("reply", call, False, portable_error(exc)))

    def _watch(self, conn: Connection, now: float) -> None:
        """Pass cancellations on; kill a child stuck past :attr:`kill_after_s` after every
        request it serves ended."""
        with self._lock:
            live = list(self._items.items())
        if not live:
            return
        for key, item in live:
            if item.cancelled and key not in self._cancelled:
                self._cancelled[key] = now
                self._send(("cancel", key))
        if all(item.done or item.cancelled for _, item in live):
            since = [self._cancelled.get(key, now) for key, _ in live]
            if now - max(since) >= self.kill_after_s:
                self._kill(conn, f"stuck {self.kill_after_s:.0f} s after its requests ended")

    def _exit_reason(self) -> str:
        process = self._process
        process.join(1.0)
        return f"exit code {process.exitcode}"

    def _child_ended(
        self, conn: Connection, reason: str, error: LocalInferError | None = None
    ) -> None:
        """The child is gone: fail what it was serving (``error``, or ``worker_crashed``);
        the next batch starts a new one."""
        with self._lock:
            if self._conn is not conn:
                return  # told already
            self._conn = None
            conn.close()
            items, self._items = list(self._items.values()), {}
            batches, self._batches = list(self._batches.values()), {}
            self._cancelled.clear()
            self._threads.forget()  # they ended with it
        if items:
            logger.error(
                "the process serving %s ended (%s) with %d requests in it",
                self.recipe.name,
                reason,
                len(items),
            )
        for item in items:
            if not item.done:
                item.fail(
                    error
                    or WorkerCrashed(
                        f"the process serving this request ended ({reason}); "
                        "it starts again with the next request"
                    )
                )
        for batch in batches:
            batch.returned.set()

    def cache_usage(self) -> dict[str, CacheUsage]:
        """The child's caches, as it last reported them (with each batch's end)."""
        return dict(self._caches)


_ENDED = object()
#: the child's answers to its load
_LOAD_ENDS = ("loaded", "load_failed")


def isolated(
    definition: ModelDefinition, recipe: Recipe, priority: IsolatedPriority
) -> ModelDefinition:
    """``definition`` with each worker's handler built by ``recipe`` in a process of its own."""

    def create(index: int, device: str) -> Handler:
        return ProcessHandler(recipe, index=index, idle=priority == "idle")

    capabilities = {**definition.capabilities, "isolation": f"process ({priority})"}
    return replace(definition, create_handler=create, capabilities=capabilities)
