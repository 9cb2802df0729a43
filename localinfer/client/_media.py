"""Embeddings, rerank, transcription and speech for both clients: request bodies and the
parsing of their answers.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import numpy as np

from localinfer.client._wire import event_payload, usage_of
from localinfer.client.results import (
    Embeddings,
    RankedDocument,
    Reranking,
    Transcription,
    TranscriptSegment,
)

# -- embeddings and audio --------------------------------------------------------------------


def embed_body(model: str, texts: list[str], dimensions: int | None) -> dict[str, object]:
    # base64 float32: a quarter of the bytes of JSON floats, and no float parsing
    body: dict[str, object] = {"model": model, "input": texts, "encoding_format": "base64"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def embeddings_result(body: Mapping[str, object], texts: list[str]) -> Embeddings:
    data = body.get("data")
    items = sorted(
        (d for d in data if isinstance(d, Mapping)) if isinstance(data, list) else [],
        key=lambda d: int(d.get("index", 0)),
    )
    rows = []
    for item in items:
        vector = item.get("embedding")
        if isinstance(vector, str):
            rows.append(np.frombuffer(base64.b64decode(vector), dtype="<f4"))
        else:
            rows.append(np.asarray(vector, dtype=np.float32))
    vectors = np.vstack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, 0))
    return Embeddings(
        vectors=vectors.astype(np.float32, copy=False),
        model=str(body.get("model", "")),
        usage=usage_of(body.get("usage")),
        texts=tuple(texts),
    )


def rerank_body(
    model: str, query: str, documents: Sequence[str], top_n: int | None, return_documents: bool
) -> dict[str, object]:
    body: dict[str, object] = {"model": model, "query": query, "documents": list(documents)}
    if top_n is not None:
        body["top_n"] = top_n
    if return_documents:
        body["return_documents"] = True
    return body


def reranking_result(body: Mapping[str, object]) -> Reranking:
    results = body.get("results")
    ranked = []
    for item in results if isinstance(results, list) else []:
        if not isinstance(item, Mapping):
            continue
        document = item.get("document")
        text = document.get("text") if isinstance(document, Mapping) else document
        ranked.append(
            RankedDocument(
                index=int(item.get("index", 0)),
                relevance_score=float(item.get("relevance_score", 0.0)),
                document=text if isinstance(text, str) else None,
            )
        )
    return Reranking(
        tuple(ranked), model=str(body.get("model", "")), usage=usage_of(body.get("usage"))
    )


def transcription_form(
    model: str,
    *,
    language: str | None,
    prompt: str | None,
    temperature: float | None,
) -> dict[str, str]:
    form = {"model": model, "response_format": "verbose_json"}
    if language is not None:
        form["language"] = language
    if prompt is not None:
        form["prompt"] = prompt
    if temperature is not None:
        form["temperature"] = str(temperature)
    return form


def transcript_delta(data: str) -> str | None:
    """The text of a ``transcript.text.delta`` event (None for ``done`` and others)."""
    payload = event_payload(data)
    if isinstance(payload, Mapping) and payload.get("type") == "transcript.text.delta":
        return str(payload.get("delta", ""))
    return None


def speech_body(
    model: str,
    text: str,
    *,
    voice: str | None,
    response_format: str,
    speed: float | None,
) -> dict[str, object]:
    body: dict[str, object] = {"model": model, "input": text, "response_format": response_format}
    if voice is not None:
        body["voice"] = voice
    if speed is not None:
        body["speed"] = speed
    return body


def transcription_result(body: Mapping[str, object], model: str) -> Transcription:
    segments = body.get("segments")
    return Transcription(
        text=str(body.get("text", "")),
        model=model,
        language=str(body.get("language") or ""),
        duration=float(body.get("duration") or 0.0),  # type: ignore[arg-type]
        segments=tuple(
            TranscriptSegment(
                id=int(s.get("id", i)),
                start=float(s.get("start", 0.0)),
                end=float(s.get("end", 0.0)),
                text=str(s.get("text", "")),
            )
            for i, s in enumerate(segments if isinstance(segments, list) else [])
            if isinstance(s, Mapping)
        ),
    )
