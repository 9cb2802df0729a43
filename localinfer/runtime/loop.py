"""The loop's thread-safe entry, as seen from a worker thread.

``call_soon`` is fire-and-forget (the worker never waits for the loop: one call per
generated token must stay cheap); ``run`` blocks the calling worker until an async
function finishes on the loop (used only to take the next batch, once per batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")


_LOOP_GONE = {"CancelledError", "RunFinishedError", "Cancelled", "NoEventLoopError"}


def running_backend() -> str:
    """``"asyncio"`` or ``"trio"``: the kind of loop running the caller."""
    native = anyio.lowlevel.current_token().native_token
    return "asyncio" if isinstance(native, asyncio.AbstractEventLoop) else "trio"


class LoopClosed(RuntimeError):
    """The event loop this handle points to has stopped."""


class LoopHandle:
    """A reference to a running event loop (asyncio or trio) usable from any thread."""

    def __init__(self, token: anyio.lowlevel.EventLoopToken):
        self._token = token
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
        """Schedule ``fn(*args)`` on the loop and return at once."""
        try:
            self._schedule(fn, *args)
        except RuntimeError as exc:  # asyncio: loop closed; trio: RunFinishedError
            raise LoopClosed(str(exc)) from exc

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
