"""What the async and sync clients share: request bodies, response parsing, SSE decoding.

No I/O here (the httpx way: ``Client`` and ``SyncClient`` differ only in how they send),
so each protocol detail is written once and tested once.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import numpy as np

from localinfer import errors as e
from localinfer.client.errors import CONNECTION_ERROR, error_from_body, error_from_response
from localinfer.client.messages import Messages, as_texts, chat_messages
from localinfer.client.results import (
    CachedModel,
    CatalogEntry,
    ChatResult,
    Download,
    Embeddings,
    ModelInfo,
    ModelList,
    RankedDocument,
    Reranking,
    Stats,
    Timing,
    Transcription,
    TranscriptSegment,
    Usage,
)
from localinfer.client.structured import response_format_body, tool_call_results, tools_body
from localinfer.server import resources

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 300.0

CHAT, EMBEDDINGS, TRANSCRIPTION = "chat", "embeddings", "transcription"
RERANK = "rerank"
SPEECH = "speech"

__all__ = ["CONNECTION_ERROR", "Messages", "as_texts", "chat_messages"]  # and the functions below


def default_base_url() -> str:
    return (os.environ.get("LOCALINFER_URL") or DEFAULT_URL).rstrip("/")


def default_api_key() -> str | None:
    return os.environ.get("LOCALINFER_API_KEY") or None


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def model_path(name: str) -> str:
    return quote(name, safe="")


def check(response: httpx.Response) -> None:
    """Raise the error a non-2xx response (already read) stands for."""
    if response.is_error:
        raise error_from_response(response.status_code, response.headers, response.content)


@contextmanager
def transport_errors(base_url: str) -> Iterator[None]:
    """httpx's network failures as :class:`LocalInferError` s that say where and why."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise e.RequestTimeout(f"no answer from {base_url} in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise e.LocalInferError(
            f"cannot reach localinfer at {base_url}: {exc or type(exc).__name__}",
            code=CONNECTION_ERROR,
        ) from exc


# -- models ----------------------------------------------------------------------------------


def model_list(body: object) -> ModelList:
    data = body.get("data", []) if isinstance(body, Mapping) else []
    return ModelList(tuple(model_info(card) for card in data if isinstance(card, Mapping)))


def model_info(card: Mapping[str, object]) -> ModelInfo:
    created = card.get("created", 0)
    return ModelInfo(
        id=str(card.get("id", "")),
        task=str(card.get("task", "")),
        owned_by=str(card.get("owned_by", "localinfer")),
        created=created if isinstance(created, int) else 0,
    )


def pick_model(models: ModelList, task: str, wanted: str | None) -> str | None:
    """``wanted``, else the only model serving ``task``; None when that is ambiguous."""
    if wanted is not None:
        return wanted
    candidates = models.for_task(task)
    return candidates[0].id if len(candidates) == 1 else None


def no_default_model(models: ModelList, task: str) -> e.InvalidRequest:
    served = ", ".join(m.id for m in models.for_task(task))
    reason = f"several serve {task}: {served}" if served else f"none serves {task}"
    return e.InvalidRequest(f"name the model with model=... ({reason})", param="model")


def stats_result(body: object) -> Stats:
    answer = resources.Stats.model_validate(body)
    return Stats(answer.models, tuple(answer.devices))


def _listed(body: object) -> list[Mapping[str, object]]:
    """The entries of an ``{"object": "list", "data": [...]}`` body."""
    data = body.get("data", []) if isinstance(body, Mapping) else []
    return [item for item in data if isinstance(item, Mapping)] if isinstance(data, list) else []


def catalog_result(body: object) -> tuple[CatalogEntry, ...]:
    return tuple(resources.Catalog.model_validate(body).data)


def cached_models_result(body: object) -> tuple[CachedModel, ...]:
    return tuple(resources.CachedModels.model_validate(body).data)


def downloads_result(body: object) -> tuple[Download, ...]:
    return tuple(download_from(item) for item in _listed(body))


# -- chat ------------------------------------------------------------------------------------


#: ``tool_choice`` values that are not a function's name
_CHOICES = ("auto", "none", "required")


def chat_body(
    model: str,
    messages: list[dict[str, object]],
    *,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    seed: int | None,
    params: Mapping[str, object],
) -> dict[str, object]:
    body: dict[str, object] = {"model": model, "messages": messages, "stream": stream}
    optional = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "stop": stop if stop is None or isinstance(stop, str) else list(stop),
        "seed": seed,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key, value in params.items():
        if key == "response_format" and value is not None:
            value = response_format_body(value)
        elif key == "tools" and isinstance(value, list | tuple):
            value = tools_body(value)
        elif isinstance(value, str) and key == "tool_choice" and value not in _CHOICES:
            value = {"type": "function", "function": {"name": value}}  # a function's name
        body[key] = value
    return body


def _usage(raw: object) -> Usage:
    raw = raw if isinstance(raw, Mapping) else {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens", 0)),
        completion_tokens=int(raw.get("completion_tokens", 0)),
        total_tokens=int(raw.get("total_tokens", 0)),
    )


def _timing(raw: object, total_ms: float, first_token_ms: float | None = None) -> Timing:
    raw = raw if isinstance(raw, Mapping) else {}
    return Timing(
        queue_ms=float(raw.get("queue_ms", 0.0)),
        prefill_ms=float(raw.get("prefill_ms", 0.0)),
        decode_ms=float(raw.get("decode_ms", 0.0)),
        tokens_per_second=float(raw.get("tokens_per_second", 0.0)),
        total_ms=total_ms,
        first_token_ms=first_token_ms,
    )


def chat_result(body: Mapping[str, object], started: float) -> ChatResult:
    """A non-streamed ``chat.completion`` body as a :class:`ChatResult`."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message", {}) if isinstance(choice, Mapping) else {}
    text = message.get("content") if isinstance(message, Mapping) else None
    return ChatResult(
        text=str(text or ""),
        model=str(body.get("model", "")),
        finish_reason=str(choice.get("finish_reason") or "") if isinstance(choice, Mapping) else "",
        usage=_usage(body.get("usage")),
        timing=_timing(body.get("performance"), (time.perf_counter() - started) * 1e3),
        id=str(body.get("id", "")),
        tool_calls=tool_call_results(
            message.get("tool_calls") if isinstance(message, Mapping) else None
        ),
    )


class SSEDecoder:
    """Server-sent events, line by line: ``feed`` returns an event's data once it is complete."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # comments, event:, id:, retry: carry nothing we use


def event_payload(data: str) -> object:
    """An SSE event's JSON; an ``{"error": ...}`` event is raised as its error."""
    payload: object = json.loads(data)
    if isinstance(payload, Mapping) and _is_error(payload):
        raise error_from_body(payload)
    return payload


def _is_error(payload: Mapping[str, object]) -> bool:
    error = payload.get("error")
    return len(payload) == 1 and isinstance(error, Mapping) and "message" in error


class ChatAccumulator:
    """Folds ``chat.completion.chunk`` events into text deltas and, at ``[DONE]``, a result."""

    def __init__(self, model: str, started: float):
        self.model = model
        self.started = started
        self.first_token_at: float | None = None
        self.parts: list[str] = []
        self.finish_reason = ""
        self.id = ""
        self.usage: object = None
        self.performance: object = None
        self.done = False
        self._decoder = SSEDecoder()
        self._calls: dict[int, dict[str, str]] = {}

    def feed_line(self, line: str) -> str | None:
        """The text delta carried by this line's event, if it completes one."""
        data = self._decoder.feed(line)
        if data is None:
            return None
        if data == "[DONE]":
            self.done = True
            return None
        return self.feed(event_payload(data))

    def feed(self, chunk: object) -> str | None:
        if not isinstance(chunk, Mapping):
            return None
        self.id = str(chunk.get("id", self.id))
        self.model = str(chunk.get("model", self.model))
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        if chunk.get("performance") is not None:
            self.performance = chunk["performance"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        if isinstance(delta, Mapping) and isinstance(delta.get("tool_calls"), list):
            self._add_calls(delta["tool_calls"])
        text = delta.get("content") if isinstance(delta, Mapping) else None
        if not text:
            return None
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.parts.append(str(text))
        return str(text)

    def _add_calls(self, deltas: list[object]) -> None:
        """Fold streamed tool-call deltas (id and name once, arguments in fragments)."""
        for delta in deltas:
            if not isinstance(delta, Mapping):
                continue
            call = self._calls.setdefault(
                int(delta.get("index", 0)), {"id": "", "name": "", "arguments": ""}
            )
            function = delta.get("function")
            call["id"] += str(delta.get("id") or "")
            if isinstance(function, Mapping):
                call["name"] += str(function.get("name") or "")
                call["arguments"] += str(function.get("arguments") or "")

    def result(self) -> ChatResult:
        now = time.perf_counter()
        first = None if self.first_token_at is None else (self.first_token_at - self.started) * 1e3
        return ChatResult(
            text="".join(self.parts),
            model=self.model,
            finish_reason=self.finish_reason,
            usage=_usage(self.usage),
            timing=_timing(self.performance, (now - self.started) * 1e3, first),
            id=self.id,
            tool_calls=tool_call_results(
                [
                    {"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for _, c in sorted(self._calls.items())
                ]
            ),
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
        usage=_usage(body.get("usage")),
        texts=tuple(texts),
    )


def pick_reranker(models: ModelList) -> str | None:
    """The only rerank model; without any, the only embeddings model (it ranks by cosine)."""
    for task in (RERANK, EMBEDDINGS):
        candidates = models.for_task(task)
        if candidates:
            return candidates[0].id if len(candidates) == 1 else None
    return None


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
        tuple(ranked), model=str(body.get("model", "")), usage=_usage(body.get("usage"))
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


# -- user code -------------------------------------------------------------------------------


def infer_body(
    args: tuple[object, ...], kwargs: Mapping[str, object], stream: bool
) -> dict[str, object]:
    return {"args": list(args), "kwargs": dict(kwargs), "stream": stream}


def infer_value(response: httpx.Response) -> object:
    """A whole ``/v1/infer`` reply: JSON decoded, anything else as bytes."""
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if media == "application/json":
        return response.json()
    return response.content


def is_sse(response: httpx.Response) -> bool:
    media: str = response.headers.get("content-type", "")
    return media.startswith("text/event-stream")


# -- downloads -------------------------------------------------------------------------------

_FINISHED = {"done", "completed", "complete", "finished", "succeeded", "success", "cached"}
_FAILED = {"failed", "error", "cancelled", "canceled"}


def download_from(raw: object, model: str = "") -> Download:
    """A download's state from the management API's JSON (field names read leniently)."""
    raw = raw if isinstance(raw, Mapping) else {}
    fields = dict(raw)
    for nested in ("download", "progress"):  # {"state": ..., "progress": {"done_bytes": ...}}
        inner = raw.get(nested)
        if isinstance(inner, Mapping):
            fields.update(inner)

    def first_int(*keys: str) -> int | None:
        for key in keys:
            value = fields.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
        return None

    error = fields.get("error")
    code = None
    if isinstance(error, Mapping):
        code = error.get("code")
        error = error.get("message")
    return Download(
        id=str(fields.get("id", "")),
        model=str(fields.get("model") or fields.get("repo_id") or model),
        status=str(fields.get("state") or fields.get("status") or "").lower(),
        downloaded_bytes=first_int("done_bytes", "downloaded_bytes", "downloaded", "completed")
        or 0,
        total_bytes=first_int("total_bytes", "total", "size"),
        error=None if error is None else str(error),
        error_code=None if code is None else str(code),
        raw=dict(raw),
    )


def download_finished(download: Download) -> bool:
    return download.status in _FINISHED


def download_failed(download: Download) -> bool:
    return download.status in _FAILED or download.error is not None


def download_error(download: Download) -> e.LocalInferError:
    """The error a failed download stands for (``DownloadFailed``, ``OfflineModeEnabled``...)."""
    message = f"downloading {download.model!r} failed: {download.error or download.status}"
    code = download.error_code or ("download_cancelled" if "cancel" in download.status else None)
    return error_from_body({"error": {"message": message, "code": code or "download_failed"}})


def load_body(device: str | None, workers: int | None) -> dict[str, object]:
    """``wait``: answer once the workers have loaded, so the model serves when it returns."""
    body: dict[str, object] = {"wait": True}
    if device is not None:
        body["device"] = device
    if workers is not None:
        body["workers"] = workers
    return body
