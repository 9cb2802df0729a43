"""What crosses between the ingress and a model replica: small tuples, pickled by Ray.

A streamed call yields lists of events (every event ready at the time, so a fast stream
costs one Ray item per burst, not per token); a unary call returns the job's events in
one list (for a model that answers once, just the result).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localinfer.errors import LocalInferError
from localinfer.runtime.model import ModelDefinition

#: ``("c", value)``: one streamed item
CHUNK = "c"
#: ``("d", value, queue_ms, run_ms)``: the result (``None`` after a stream)
DONE = "d"
#: ``("f", error)``: the job failed with ``error`` (a :class:`LocalInferError`)
FAILED = "f"

WireEvent = tuple[Any, ...]


@dataclass(frozen=True)
class Description:
    """A replica's model, for the ingress: its definition (no handler) and whether its
    jobs answer once (then one round trip per job, not a Ray stream)."""

    definition: ModelDefinition
    unary: bool


def failed(error: LocalInferError) -> WireEvent:
    return (FAILED, error)


def done(value: Any, queue_ms: float | None, run_ms: float | None) -> WireEvent:
    return (DONE, value, queue_ms, run_ms)
