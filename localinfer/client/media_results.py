"""What embeddings, rerank, transcription and speech calls return, each rendering itself in
Jupyter: vectors and their similarity matrix, ranked documents, transcripts, audio.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

from localinfer.client.chat_results import Usage, clip

Vectors = npt.NDArray[np.float32]

_PREVIEW_ROWS = 5
_PREVIEW_DIMS = 6


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
        width = max((len(clip(r, 24)) for r in self.rows), default=0)
        lines = [" " * width + "".join(f" {i:>6}" for i in range(len(self.columns)))]
        for label, values in zip(self.rows, self.matrix, strict=True):
            lines.append(f"{clip(label, 24):<{width}}" + "".join(f" {v:6.3f}" for v in values))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(clip(c, 24))}</th>" for c in self.columns)
        body = []
        for label, values in zip(self.rows, self.matrix, strict=True):
            cells = "".join(
                f'<td style="background: rgba(33, 150, 243, {max(0.0, float(v)) * 0.6:.2f})">'
                f"{v:.3f}</td>"
                for v in values
            )
            body.append(f"<tr><th>{html.escape(clip(label, 32))}</th>{cells}</tr>")
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
            body.append(f"<tr><th>{html.escape(clip(labels[i]))}</th>{cells}{more}</tr>")
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
            text = html.escape(clip(r.document or "", 60)).replace("|", "\\|")
            lines.append(f"| {rank} | {r.index} | {r.relevance_score:.4f} | {text} |")
        lines.append(f"\n*{html.escape(self.model)} · {self.usage.total_tokens} tokens*")
        return "\n".join(lines)
