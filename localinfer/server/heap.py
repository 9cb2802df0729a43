"""A serving process's heap: the garbage collector's full passes kept short, and freed
memory handed back to the OS.

A model server's heap is mostly long-lived: the libraries (torch, transformers) and the
loaded models are hundreds of thousands of objects that never become garbage, yet every
full collection walks all of them, and a busy server triggers one every second or so.
Once the models have loaded, ``gc.freeze()`` moves what exists into a generation the
collector never scans. Objects frozen stay freed by reference counting; only cycles
among them are no longer collected, which for import-time and model objects is what
happens anyway.

Both only for a process the server owns (``localinfer serve``): in a notebook the heap is the
user's, and freezing it would be a surprise.
"""

from __future__ import annotations

import ctypes
import gc
import logging
from collections.abc import Callable
from functools import partial

import anyio
import anyio.to_thread

from localinfer.errors import ConfigurationError
from localinfer.runtime.registry import ModelRegistry

logger = logging.getLogger(__name__)


async def freeze_when_ready(registry: ModelRegistry) -> None:
    """Once every model has loaded: collect what is garbage, then freeze the rest."""
    try:
        await registry.wait_ready()
    except ConfigurationError:
        return  # a model failed to load: the server reports it; nothing is frozen
    gc.collect()
    gc.freeze()
    logger.debug("froze %d objects out of the collector's full passes", gc.get_freeze_count())


#: how often freed heap memory is handed back to the OS (``malloc_trim``)
TRIM_EVERY_S = 30.0


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None (another C library: nothing to call)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return partial(trim, 0)


async def trim_periodically(every_s: float = TRIM_EVERY_S) -> None:
    """Give freed heap pages back to the OS now and then.

    glibc keeps what a thread frees in that thread's arena for reuse, and returns it
    only from the top of the main heap. Many threads freeing large buffers (audio,
    batches, JSON bodies) leave free memory scattered in their arenas, and the RSS
    drifts up while the live heap stays flat (the soak: ~150 MiB free inside the
    arenas). ``malloc_trim`` releases every free page of every arena; it walks the
    arenas, so it runs in a thread, off the loop.
    """
    trim = _malloc_trim()
    if trim is None:
        return
    while True:
        await anyio.sleep(every_s)
        await anyio.to_thread.run_sync(trim)
