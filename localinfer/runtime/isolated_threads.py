"""The stuck threads of a handler served from a process of its own (``--isolate``).

A handler that gives up on a thread of its own (a stalled engine's loop) asks its
``ThreadLedger`` first, and the runtime counts such threads against
``max_abandoned_workers`` and lists them on ``/health``. In a child process that ledger is
:class:`ChildLedger`: it tells the server's side over a pipe of its own, which
:class:`LedgerRelay` reads at any time (the requests' pipe is read only while a batch
runs), answering ``may_abandon`` from the worker's ledger and mirroring the child's
abandoned threads into it, named with the child's pid, until they end or the child does.

The wire, child to server: ``("may_abandon",)`` (answered ``True`` or ``False``),
``("threads", [(name, reason), ...])`` (the abandoned ones still running, sent when that
changes), ``("stuck", reason)`` (one it may not abandon: the server's side ends the child).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from localinfer.handlers.base import ThreadLedger

#: how often an idle child tells the server which of its handler's abandoned threads live
TELL_THREADS_S = 1.0


class ChildLedger(ThreadLedger):
    """The handler's ledger in the child: what it records is told to the server's side."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self._lock = threading.Lock()
        self._told: list[tuple[str, str]] = []

    def _say(self, message: tuple[Any, ...], *, answered: bool = False) -> Any:
        try:
            with self._lock:
                self._conn.send(message)
                return self._conn.recv() if answered else None
        except (EOFError, OSError, ValueError):
            return None  # the server is gone; the child's main thread sees it too

    def may_abandon(self) -> bool:
        return bool(self._say(("may_abandon",), answered=True))

    def abandon(self, name: str, reason: str, alive: Callable[[], bool]) -> None:
        super().abandon(name, reason, alive)
        self.tell()

    def stuck_in_place(self, reason: str | None) -> None:
        super().stuck_in_place(reason)
        self._say(("stuck", reason))

    def tell(self) -> None:
        """Send the abandoned threads still running, if that changed since last told."""
        live = [(thread.name, thread.reason) for thread in self.live()]
        if live != self._told:
            self._told = live
            self._say(("threads", live))


class LedgerRelay:
    """The server's side, one per isolated worker: a thread per child reads its ledger."""

    def __init__(
        self,
        ledger: Callable[[], ThreadLedger],
        on_stuck: Callable[[Any, str], None],
    ) -> None:
        #: the worker's ledger (the handler's ``thread_ledger``, set after construction)
        self._ledger = ledger
        #: what to do with a child whose handler has a thread it may not abandon
        self._on_stuck = on_stuck
        self._lock = threading.Lock()
        self._process: Any = None
        self._threads: set[str] = set()

    def start(self, conn: Connection, process: Any, name: str) -> None:
        """Read ``process``'s ledger pipe from now on, until it ends."""
        with self._lock:
            self._process, self._threads = process, set()
        reader = threading.Thread(
            target=self._read, args=(conn, process), name=f"{name}:ledger", daemon=True
        )
        reader.start()

    def forget(self) -> None:
        """The child ended: its threads did too."""
        with self._lock:
            self._threads = set()

    def _read(self, conn: Connection, process: Any) -> None:
        try:
            while True:
                message = conn.recv()
                kind = message[0]
                if kind == "may_abandon":
                    conn.send(self._ledger().may_abandon())
                elif kind == "threads":
                    self._mirror(process, message[1])
                elif kind == "stuck" and message[1] is not None:
                    self._on_stuck(process, message[1])
        except (EOFError, OSError):
            pass  # the child ended
        finally:
            conn.close()

    def _mirror(self, process: Any, live: list[tuple[str, str]]) -> None:
        with self._lock:
            if self._process is not process:
                return  # a child already replaced, telling late
            new = [(name, reason) for name, reason in live if name not in self._threads]
            self._threads = {name for name, _ in live}
        for name, reason in new:
            alive = partial(self._alive, process, name)
            self._ledger().abandon(f"{name} (pid {process.pid})", reason, alive)

    def _alive(self, process: Any, name: str) -> bool:
        return self._process is process and name in self._threads
