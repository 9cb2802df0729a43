"""One model's numbers, as ``/v1/stats`` and ``Engine.stats()`` both report them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localinfer.runtime.model import ServedModel


def model_stats(model: ServedModel, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Counters, latency and workers of ``model``; ``extra`` adds what the face keeps
    itself (the HTTP server's embedding cache)."""
    snapshot = model.stats.snapshot()
    task = model.definition.task
    return {
        **snapshot,
        "task": task,
        # what serves it (continuous batching or a slower fallback), as /health says
        "engine": model.engine,
        # a chat stream's chunks are its text deltas: about one token each
        **({"tokens_per_second": snapshot["chunks_per_second"]} if task == "chat" else {}),
        "queue_depth": model.queue.depth,
        "dropped": model.queue.dropped,
        "workers": len(model.workers),
        "busy_workers": sum(w.busy_since is not None for w in model.workers),
        "restarts": model.restarts,
        "hangs": model.hangs,
        "hung_workers": model.hung_workers,
        "abandoned_workers": len(model.abandoned_workers),
        "abandoned_threads": len(model.supervisor.abandoned_threads),
        "abandoned_device_memory_bytes": model.supervisor.abandoned_memory_bytes,
        "draining": model.draining,
        # what its handlers keep between requests (a prompt cache): bounded, not a leak
        "caches": model.cache_usage(),
        **(extra or {}),
        **model.replica_stats(),
    }
