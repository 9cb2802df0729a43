"""Typed results of the notebook face, shared by the HTTP clients and the in-process Engine.

The answers of localinfer's own routes (catalog, cache, stats) are the pydantic models
the server sends (:mod:`localinfer.server.resources`), used here as they are. Each
renders itself in Jupyter (``_repr_markdown_`` / ``_repr_html_``): a chat reply as
its text with usage and timing underneath, embeddings as their shape and a preview, a
similarity matrix as a shaded table. Plain ``repr`` stays one line.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from localinfer.client.chat_results import ChatResult, Timing, ToolCallResult, Usage
from localinfer.client.media_results import (
    Embeddings,
    RankedDocument,
    Reranking,
    Similarity,
    Speech,
    Transcription,
    TranscriptSegment,
    Vectors,
)
from localinfer.server.resources import CachedModel, CatalogEntry, DeviceStats, ModelStats

# CachedModel and CatalogEntry are defined once, with the routes that send them; the chat
# and media results live in chat_results and media_results
__all__ = [
    "CachedModel",
    "CatalogEntry",
    "ChatResult",
    "Embeddings",
    "RankedDocument",
    "Reranking",
    "Similarity",
    "Speech",
    "Timing",
    "ToolCallResult",
    "TranscriptSegment",
    "Transcription",
    "Usage",
    "Vectors",
]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    task: str
    owned_by: str = "localinfer"
    created: int = 0
    #: what serves it, e.g. "llama.cpp (batched)" or a slower fallback; None: not said
    engine: str | None = None


@dataclass(frozen=True)
class ModelList:
    """The served models; ``"name" in models`` and ``models.get("name")`` work."""

    models: tuple[ModelInfo, ...] = ()

    def __getitem__(self, index: int) -> ModelInfo:
        return self.models[index]

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, item: object) -> bool:
        return any(m.id == item or m == item for m in self.models)

    def get(self, name: str) -> ModelInfo | None:
        return next((m for m in self.models if m.id == name), None)

    @property
    def names(self) -> list[str]:
        return [m.id for m in self.models]

    def for_task(self, task: str) -> list[ModelInfo]:
        return [m for m in self.models if m.task == task]

    def __repr__(self) -> str:
        return f"ModelList({', '.join(f'{m.id} ({m.task})' for m in self.models)})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(m.id)}</td><td>{html.escape(m.task)}</td></tr>"
            for m in self.models
        )
        return f"<table><tr><th>model</th><th>task</th></tr>{rows}</table>"


#: one model's counters (``/v1/stats``); ``raw`` keeps every field the server sent
ModelStatistics = ModelStats
#: one device of the *server's* machine: the CPU (with the RAM) or a GPU; ``None`` is a
#: number the server could not read (no NVML: no GPU utilisation)
DeviceStatistics = DeviceStats


@dataclass(frozen=True)
class Stats:
    """Per-model statistics of a server or engine, and the server's devices."""

    models: Mapping[str, ModelStatistics]
    devices: tuple[DeviceStatistics, ...] = ()
    #: how the serving process's OpenMP threads wait (``localinfer.openmp.describe``)
    openmp: str | None = None

    def __getitem__(self, name: str) -> ModelStatistics:
        return self.models[name]

    def _repr_html_(self) -> str:
        columns = ("submitted", "succeeded", "failed", "cancelled", "in_flight", "queue_depth")
        head = "".join(f"<th>{c}</th>" for c in (*columns, "busy/workers", "p50 ms"))
        rows = []
        for name, s in self.models.items():
            cells = "".join(f"<td>{getattr(s, c)}</td>" for c in columns)
            p50 = "-" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.1f}"
            rows.append(
                f"<tr><th>{html.escape(name)}</th>{cells}"
                f"<td>{s.busy_workers}/{s.workers}</td><td>{p50}</td></tr>"
            )
        return f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>"


def statistics_from(raw: Mapping[str, object]) -> ModelStatistics:
    """A :class:`ModelStatistics` from one model's ``/v1/stats`` entry (unknown keys kept)."""
    return ModelStats.model_validate(raw)


def device_statistics_from(raw: Mapping[str, object]) -> DeviceStatistics:
    """A :class:`DeviceStatistics` from one ``/v1/stats`` ``devices`` entry."""
    return DeviceStats.model_validate(raw)


@dataclass(frozen=True)
class Download:
    """A model download's state, as ``pull`` last saw it."""

    id: str
    model: str
    status: str
    downloaded_bytes: int = 0
    total_bytes: int | None = None
    error: str | None = None
    error_code: str | None = None
    raw: Mapping[str, object] = field(default_factory=dict, repr=False)

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(1.0, self.downloaded_bytes / self.total_bytes)
