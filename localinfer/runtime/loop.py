"""The loop's thread-safe entry, as seen from a worker thread.

``call_soon`` is fire-and-forget (the worker never waits for the loop: one call per
generated token must stay cheap); ``run`` blocks the calling worker until an async
function finishes on the loop (used only to take the next batch of a batching worker).

Calls from threads are coalesced: they go into one queue, and the loop is woken (a
write to its self-pipe, a system call that also hands the GIL over) only when no wakeup
is already on its way. Under load many calls cross in one wakeup, and so does a batching
engine's step (see :mod:`localinfer.handlers.crossing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

import anyio.from_thread
import anyio.lowlevel

from localinfer.handlers.crossing import hold_wakeup

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: calls run per wakeup at most before the loop gets a turn for other work
_CALLS_PER_WAKEUP = 1024


_LOOP_GONE = {"CancelledError", "RunFinishedError", "Cancelled", "NoEventLoopError"}


def running_backend() -> str:
    """``"asyncio"`` or ``"trio"``: the kind of loop running the caller."""
    native = anyio.lowlevel.current_token().native_token
    return "asyncio" if isinstance(native, asyncio.AbstractEventLoop) else "trio"


class Arrival(Protocol):
    """A one-shot wakeup for one waiting task, set from the loop (an asyncio future's API)."""

    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...

    def __await__(self) -> Generator[Any, Any, Any]: ...


class _EventArrival:
    """:class:`Arrival` on an ``anyio.Event``, for loops other than asyncio (trio)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, result: None, /) -> None:
        self._event.set()

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._event.wait().__await__()


def new_arrival() -> Arrival:
    """An :class:`Arrival` for the running loop: on asyncio a bare future, which costs a
    third of an ``anyio.Event`` (no backend lookup, no waiter list, no lock)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        return _EventArrival()
    return loop.create_future()


class LoopClosed(RuntimeError):
    """The event loop this handle points to has stopped."""


class LoopHandle:
    """A reference to a running event loop (asyncio or trio) usable from any thread."""

    def __init__(self, token: anyio.lowlevel.EventLoopToken):
        self._token = token
        self._calls: deque[tuple[Callable[..., object], tuple[object, ...]]] = deque()
        #: a wakeup is scheduled and has not started running the calls yet
        self._wakeup_due = False
        native = token.native_token
        if isinstance(native, asyncio.AbstractEventLoop):
            self._schedule: Callable[..., Any] = native.call_soon_threadsafe
        else:  # trio.lowlevel.TrioToken
            self._schedule = native.run_sync_soon  # type: ignore[attr-defined]

    @classmethod
    def current(cls) -> LoopHandle:
        """The handle of the loop running the caller (call from async code)."""
        return cls(anyio.lowlevel.current_token())

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Schedule ``fn(*args)`` on the loop and return at once (calls run in order)."""
        self._calls.append((fn, args))
        if not self._wakeup_due and not hold_wakeup(id(self), self._wake_held):
            self._wake()

    def _wake_held(self) -> None:
        """A wakeup held back to the end of an engine step (no-op if one is on its way)."""
        if not self._wakeup_due:
            try:
                self._wake()
            except LoopClosed:
                pass  # the server is gone; nobody is waiting

    def _wake(self) -> None:
        self._wakeup_due = True
        try:
            self._schedule(self._run_calls)
        except RuntimeError as exc:  # asyncio: loop closed; trio: RunFinishedError
            self._wakeup_due = False
            raise LoopClosed(str(exc)) from exc

    def _run_calls(self) -> None:
        """On the loop: run the calls queued so far.

        The flag is cleared before the queue is read: a call queued meanwhile either is
        run here or finds the flag clear and schedules another wakeup, never neither.
        """
        self._wakeup_due = False
        calls = self._calls
        for _ in range(_CALLS_PER_WAKEUP):
            if not calls:
                return
            fn, args = calls.popleft()
            try:
                fn(*args)
            except Exception:
                logger.exception("error in a call from a worker thread to the loop")
        if calls and not self._wakeup_due:  # more than one turn's worth: go on next turn
            try:
                self._wake()
            except LoopClosed:
                pass

    def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        """Run ``await fn(*args)`` on the loop, blocking this (worker) thread for the result."""
        try:
            return anyio.from_thread.run(fn, *args, token=self._token)
        except BaseException as exc:
            # the loop stopped, or cancelled the call while shutting down
            if type(exc).__name__ in _LOOP_GONE or (
                isinstance(exc, RuntimeError) and "closed" in str(exc).lower()
            ):
                raise LoopClosed(f"{type(exc).__name__}: {exc}") from exc
            raise
