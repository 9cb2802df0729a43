"""Typed results of the notebook face, shared by the HTTP clients and the in-process Engine.

The answers of localinfer's own routes (catalog, cache, stats) are the pydantic models
the server sends (:mod:`localinfer.server.resources`), used here as they are. Each
renders itself in Jupyter (``_repr_markdown_`` / ``_repr_html_``): a chat reply as
its text with usage and timing underneath, embeddings as their shape and a preview, a
similarity matrix as a shaded table. Plain ``repr`` stays one line.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from localinfer.server.resources import CachedModel, CatalogEntry, DeviceStats, ModelStats

__all__ = ["CachedModel", "CatalogEntry"]  # defined once, with the routes that send them
if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")

Vectors = npt.NDArray[np.float32]

_PREVIEW_ROWS = 5
_PREVIEW_DIMS = 6


def _clip(text: str, width: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Timing:
    """Where the time of one generation went, in milliseconds (server-side) plus the total
    the caller waited."""

    queue_ms: float
    prefill_ms: float
    decode_ms: float
    tokens_per_second: float
    #: wall time from sending the request to the whole reply, as the caller saw it
    total_ms: float
    #: streams only: wall time until the first text arrived
    first_token_ms: float | None = None

    def summary(self) -> str:
        parts = [
            f"{self.tokens_per_second:.1f} tok/s",
            f"queue {self.queue_ms:.1f} ms",
            f"prefill {self.prefill_ms:.1f} ms",
            f"decode {self.decode_ms:.1f} ms",
        ]
        if self.first_token_ms is not None:
            parts.append(f"first token {self.first_token_ms:.1f} ms")
        parts.append(f"total {self.total_ms:.1f} ms")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class ToolCallResult:
    """A function call the model asked for; ``arguments`` already parsed from JSON."""

    id: str
    name: str
    arguments: dict[str, Any]

    def parse(self, model: type[M]) -> M:
        """The arguments as an instance of ``model`` (a pydantic class)."""
        return model.model_validate(self.arguments)

    def message(self) -> dict[str, Any]:
        """This call as it goes back into the history (an assistant message's tool_calls)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole chat reply. ``str(result)`` is its text; ``tool_calls`` the calls it made."""

    text: str
    model: str
    finish_reason: str
    usage: Usage
    timing: Timing
    id: str = ""
    tool_calls: tuple[ToolCallResult, ...] = ()

    def assistant_message(self) -> dict[str, Any]:
        """The reply as the next request's assistant message (tool calls included)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.message() for call in self.tool_calls]
        return message

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return (
            f"ChatResult(text={_clip(self.text, 60)!r}, model={self.model!r}, "
            f"finish_reason={self.finish_reason!r}, tokens={self.usage.completion_tokens})"
        )

    def _repr_markdown_(self) -> str:
        footer = (
            f"{self.model} · {self.usage.prompt_tokens} prompt + "
            f"{self.usage.completion_tokens} completion tokens · {self.finish_reason} · "
            f"{self.timing.summary()}"
        )
        return f"{self.text or '*(empty reply)*'}\n\n---\n*{html.escape(footer)}*"


@dataclass(frozen=True, eq=False)
class Similarity:
    """Cosine similarities between two lists of texts (rows x columns)."""

    matrix: Vectors
    rows: tuple[str, ...]
    columns: tuple[str, ...]

    def most_similar(self, row: int | str, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` columns closest to ``row`` (an index or one of the row texts)."""
        index = self.rows.index(row) if isinstance(row, str) else row
        scores = self.matrix[index]
        order = np.argsort(-scores)[:k]
        return [(self.columns[i], float(scores[i])) for i in order]

    def __repr__(self) -> str:
        width = max((len(_clip(r, 24)) for r in self.rows), default=0)
        lines = [" " * width + "".join(f" {i:>6}" for i in range(len(self.columns)))]
        for label, values in zip(self.rows, self.matrix, strict=True):
            lines.append(f"{_clip(label, 24):<{width}}" + "".join(f" {v:6.3f}" for v in values))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(_clip(c, 24))}</th>" for c in self.columns)
        body = []
        for label, values in zip(self.rows, self.matrix, strict=True):
            cells = "".join(
                f'<td style="background: rgba(33, 150, 243, {max(0.0, float(v)) * 0.6:.2f})">'
                f"{v:.3f}</td>"
                for v in values
            )
            body.append(f"<tr><th>{html.escape(_clip(label, 32))}</th>{cells}</tr>")
        return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"


@dataclass(frozen=True, eq=False)
class Embeddings:
    """One L2-normalised vector per input text; behaves as a ``(n, dim)`` float32 array."""

    vectors: Vectors
    model: str
    usage: Usage
    texts: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        rows, dims = self.vectors.shape
        return int(rows), int(dims)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @overload
    def __getitem__(self, index: int) -> Vectors: ...
    @overload
    def __getitem__(self, index: slice) -> Vectors: ...
    def __getitem__(self, index: int | slice) -> Vectors:
        return self.vectors[index]

    def __iter__(self) -> Iterator[Vectors]:
        return iter(self.vectors)

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> Vectors:
        if dtype is None and not copy:
            return self.vectors
        return np.array(self.vectors, dtype=dtype, copy=True)

    def similarity(self, other: Embeddings | None = None) -> Similarity:
        """Cosine similarity of every vector with every vector of ``other`` (default: self)."""
        other = self if other is None else other
        matrix = np.asarray(self.vectors @ other.vectors.T, dtype=np.float32)
        return Similarity(matrix, self._labels(), other._labels())

    def _labels(self) -> tuple[str, ...]:
        return self.texts if len(self.texts) == len(self) else tuple(map(str, range(len(self))))

    def __repr__(self) -> str:
        return f"Embeddings(model={self.model!r}, shape={self.shape})"

    def _repr_html_(self) -> str:
        rows, dims = self.shape
        shown = min(dims, _PREVIEW_DIMS)
        labels = self._labels()
        body = []
        for i in range(min(rows, _PREVIEW_ROWS)):
            cells = "".join(f"<td>{v:+.4f}</td>" for v in self.vectors[i, :shown])
            more = "<td>…</td>" if dims > shown else ""
            body.append(f"<tr><th>{html.escape(_clip(labels[i]))}</th>{cells}{more}</tr>")
        if rows > _PREVIEW_ROWS:
            body.append(f"<tr><td colspan='{shown + 2}'>… {rows - _PREVIEW_ROWS} more</td></tr>")
        caption = (
            f"<b>Embeddings</b> {rows} x {dims} float32 · {html.escape(self.model)} · "
            f"{self.usage.prompt_tokens} tokens"
        )
        return f"<div>{caption}<table>{''.join(body)}</table></div>"


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    id: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcription:
    """What was said, in which language, with timed segments."""

    text: str
    model: str
    #: the language's English name, as OpenAI reports it ("english")
    language: str
    duration: float
    segments: tuple[TranscriptSegment, ...] = ()

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        lines = [f"> {self.text.strip() or '*(no speech)*'}", ""]
        lines.append(
            f"*{html.escape(self.model)} · {self.language or 'unknown language'} · "
            f"{self.duration:.1f} s · {len(self.segments)} segments*"
        )
        for s in self.segments[:20]:
            lines.append(f"- `{s.start:6.2f}-{s.end:6.2f}` {s.text.strip()}")
        return "\n".join(lines)


_AUDIO_MEDIA = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


class Speech(bytes):
    """Synthesised speech: the audio file's bytes, which play when a notebook shows them.

    It *is* ``bytes`` (write it to a file, send it on); ``format`` says which kind.
    """

    format: str

    def __new__(cls, data: bytes, format: str = "wav") -> Speech:
        speech = super().__new__(cls, data)
        speech.format = format
        return speech

    @property
    def media_type(self) -> str:
        return _AUDIO_MEDIA.get(self.format, "application/octet-stream")

    def save(self, path: str) -> str:
        """Write the audio to ``path``; returns it."""
        with open(path, "wb") as f:
            f.write(self)
        return path

    def _repr_html_(self) -> str:
        if self.format == "pcm":  # raw samples: browsers need a container
            return f"<code>{len(self)} bytes of 16-bit PCM at 24 kHz</code>"
        data = base64.b64encode(self).decode("ascii")
        return (
            f'<audio controls src="data:{self.media_type};base64,{data}"></audio>'
            f"<div><small>{self.format}, {len(self) / 1024:.1f} KiB</small></div>"
        )

    def __repr__(self) -> str:
        return f"Speech({self.format}, {len(self)} bytes)"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    task: str
    owned_by: str = "localinfer"
    created: int = 0


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


@dataclass(frozen=True, slots=True)
class RankedDocument:
    #: the document's position in the list that was sent
    index: int
    relevance_score: float
    #: the document's text, when ``return_documents=True`` asked for it
    document: str | None = None


@dataclass(frozen=True, slots=True)
class Reranking:
    """Documents best first (at most ``top_n``); iterate it, or take ``.indices``."""

    results: tuple[RankedDocument, ...]
    model: str
    usage: Usage

    @property
    def indices(self) -> list[int]:
        return [r.index for r in self.results]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[RankedDocument]:
        return iter(self.results)

    def __getitem__(self, index: int) -> RankedDocument:
        return self.results[index]

    def _repr_markdown_(self) -> str:
        lines = ["| rank | index | score | document |", "| ---: | ---: | ---: | --- |"]
        for rank, r in enumerate(self.results[:20], 1):
            text = html.escape(_clip(r.document or "", 60)).replace("|", "\\|")
            lines.append(f"| {rank} | {r.index} | {r.relevance_score:.4f} | {text} |")
        lines.append(f"\n*{html.escape(self.model)} · {self.usage.total_tokens} tokens*")
        return "\n".join(lines)
