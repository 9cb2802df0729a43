"""One crossing to the event loop per engine step, however many items it streams to.

A batching engine's step samples a token for every sequence in flight, and each token is
an ``emit`` on its own work item. Sent one by one, the first emit of a step wakes the
event loop (a write to its self-pipe), which then takes the GIL and answers that token
while the engine still works through the others, and the next emit may wake it again.
Inside :func:`emits_together` the items' events are queued as usual but the loop is
woken once, when the block ends: the loop answers the whole step in one turn, while the
engine is back in C (a decode, which releases the GIL).

The handler layer owns the block; the runtime's thread bridge
(:class:`~localinfer.runtime.loop.LoopHandle`) asks :func:`hold_wakeup` before it wakes
the loop. On a thread outside any block nothing changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class _Held(threading.local):
    """This thread's open blocks and the wakeups they hold back (run once, in order)."""

    def __init__(self) -> None:
        self.depth = 0
        self.wakeups: dict[int, Callable[[], None]] = {}


_held = _Held()


@contextmanager
def emits_together() -> Iterator[None]:
    """Hold back this thread's wakeups of the event loop until the block ends (nestable)."""
    held = _held
    held.depth += 1
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0 and held.wakeups:
            wakeups = list(held.wakeups.values())
            held.wakeups.clear()
            for wake in wakeups:
                wake()


def hold_wakeup(key: int, wake: Callable[[], None]) -> bool:
    """Inside a block: keep ``wake`` (once per ``key``) for the block's end and return True;
    outside any block: return False (the caller wakes the loop now)."""
    held = _held
    if not held.depth:
        return False
    held.wakeups.setdefault(key, wake)
    return True
