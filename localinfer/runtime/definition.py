"""What a model is, for the runtime: its handler factory, devices, batching and limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from localinfer.runtime.job import DEFAULT_STREAM_BUFFER, DEFAULT_STREAM_STALL_S
from localinfer.runtime.worker import HandlerFactory


@dataclass(frozen=True)
class ModelDefinition:
    """Everything the runtime needs to serve a model. Built by the faces, not by handlers."""

    name: str
    #: ``(worker_index, device) -> Handler``; called inside the worker thread
    create_handler: HandlerFactory
    task: str = "infer"
    devices: tuple[str, ...] = ("cpu",)
    workers_per_device: int = 1
    max_batch_size: int = 1
    batch_window_ms: float = 0.0
    max_queue: int = 256
    #: items a stream may hold for its reader at most (then the reader is cut off)
    stream_buffer: int = DEFAULT_STREAM_BUFFER
    #: a reader that reads nothing for this long while items pile up is cut off
    stream_stall_s: float = DEFAULT_STREAM_STALL_S
    #: loop-side validation/normalisation of a payload before it is queued (fast, no I/O)
    prepare: Callable[[Any], Any] | None = None
    #: jobs a one-at-a-time worker may take from the queue in one trip (its fair share)
    prefetch: int = 16
    #: content type of binary (bytes) streams
    media_type: str = "application/octet-stream"
    #: what the model offers, for selection by capability; ``task`` and ``model`` are
    #: always added (see :attr:`ServedModel.capabilities`)
    capabilities: Mapping[str, str] = field(default_factory=dict)

    @property
    def worker_count(self) -> int:
        return len(self.devices) * self.workers_per_device
