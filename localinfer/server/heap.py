"""Keeping the garbage collector's full passes short in a serving process.

A model server's heap is mostly long-lived: the libraries (torch, transformers) and the
loaded models are hundreds of thousands of objects that never become garbage, yet every
full collection walks all of them, and a busy server triggers one every second or so.
Once the models have loaded, ``gc.freeze()`` moves what exists into a generation the
collector never scans. Objects frozen stay freed by reference counting; only cycles
among them are no longer collected, which for import-time and model objects is what
happens anyway.

Only for a process the server owns (``localinfer serve``): in a notebook the heap is the
user's, and freezing it would be a surprise.
"""

from __future__ import annotations

import gc
import logging

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
