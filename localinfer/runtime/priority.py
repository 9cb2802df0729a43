"""Model work yields the CPU to the event loop: worker threads run at a lower priority.

On a machine with fewer cores than busy threads, the event loop (which answers
``/health``, refuses with 429, streams tokens) waited behind the model threads for its
turn on a core: ``/health`` took up to 2 s in the soak on 2 cores. Linux gives each
thread its own nice value, and threads and processes a thread starts inherit it (a
llama.cpp or OpenMP pool, an encoder subprocess), so a worker lowers its own priority
once, before its handler loads, and all the model work follows it. The loop's thread
keeps its priority; it only runs for short turns, so the models lose little.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

#: the largest nice value Linux allows (the lowest priority)
MAX_NICE = 19


def lower_this_thread(niceness: int) -> None:
    """Raise this thread's nice value by ``niceness`` (0: leave it). Linux only: elsewhere
    a priority is the whole process's, and lowering it would slow the loop as well."""
    if niceness <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, current + niceness))
    except OSError as exc:  # a sandbox may forbid it: serve anyway, at the same priority
        logger.debug("could not lower the priority of thread %d: %s", tid, exc)
