"""Tiny user-code models for the Ray Serve tests (imported by the replicas)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


class Sleep:
    """Answers after ``seconds``: requests stay in flight long enough to kill a replica."""

    name = "sleep"

    def infer(self, seconds: float = 0.5) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}


class Busy:
    """The autoscaled one: each request holds its replica for ``seconds``."""

    name = "busy"

    def infer(self, seconds: float = 0.5) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}


class Ticks:
    """Streams ``n`` ticks, ``delay_s`` apart: a stream to cancel half way."""

    name = "ticks"

    def infer(self, n: int = 5, delay_s: float = 0.05) -> Iterator[str]:
        for i in range(n):
            time.sleep(delay_s)
            yield f"tick {i} "


class Where:
    """Says which Ray actor (and process) ran it: the ingress, for a model set in_ingress."""

    name = "where"

    def infer(self) -> dict[str, object]:
        import ray

        return {"actor": ray.get_runtime_context().get_actor_name(), "pid": os.getpid()}
