"""Loading a handler: one load at a time, process-wide, and what it allocated on its device."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LoadTurn:
    """Loads run one at a time, process-wide: transformers' ``from_pretrained`` patches
    global state while it builds a model (default dtype, ``tie_weights``,
    ``torch.linspace``), and two loads in parallel threads corrupt each other ("Cannot copy
    out of meta tensor").

    Unlike a lock, a turn can be taken back from a load that overran its deadline (see
    ``load_timeout_s``): a hung ``load()`` would otherwise keep every later model, of every
    name, from loading. The overrunning load goes on in its abandoned thread.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._holder: object | None = None

    @contextmanager
    def turn(self, owner: object) -> Iterator[None]:
        with self._changed:
            while self._holder is not None:
                self._changed.wait()
            self._holder = owner
        try:
            yield
        finally:
            self.give_up(owner)

    def give_up(self, owner: object) -> None:
        """End ``owner``'s turn, if it still has it (from any thread)."""
        with self._changed:
            if self._holder is owner:
                self._holder = None
                self._changed.notify()


LOADS = LoadTurn()


def device_memory_allocated(device: str) -> int | None:
    """Bytes torch has allocated on a CUDA ``device`` (``None`` elsewhere, or before torch
    was imported by a handler: the runtime never imports it itself)."""
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda"):
        return None
    try:
        return int(torch.cuda.memory_allocated(torch.device(device)))
    except Exception:  # no driver, or a device that went away
        return None


def grown_since(before: int | None, device: str) -> int | None:
    after = device_memory_allocated(device)
    return None if before is None or after is None else max(after - before, 0)
