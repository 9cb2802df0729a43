"""What the async and sync clients share: request bodies, response parsing, SSE decoding.

No I/O here (the httpx way: ``Client`` and ``SyncClient`` differ only in how they send),
so each protocol detail is written once and tested once. The chat, media and SSE details
live in ``_chat``, ``_media`` and ``_wire``; the clients read them all here as ``core.<name>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import quote

import httpx

from localinfer import errors as e
from localinfer.client._chat import ChatAccumulator, chat_body, chat_result
from localinfer.client._media import (
    embed_body,
    embeddings_result,
    rerank_body,
    reranking_result,
    speech_body,
    transcript_delta,
    transcription_form,
    transcription_result,
)
from localinfer.client._wire import SSEDecoder, event_payload
from localinfer.client.errors import CONNECTION_ERROR, error_from_body, error_from_response
from localinfer.client.messages import Messages, as_texts, chat_messages
from localinfer.client.results import (
    CachedModel,
    CatalogEntry,
    Download,
    ModelInfo,
    ModelList,
    Stats,
)
from localinfer.server import resources

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 300.0

CHAT, EMBEDDINGS, TRANSCRIPTION = "chat", "embeddings", "transcription"
RERANK = "rerank"
SPEECH = "speech"

# and the functions below
__all__ = [
    "CONNECTION_ERROR",
    "ChatAccumulator",
    "Messages",
    "SSEDecoder",
    "as_texts",
    "chat_body",
    "chat_messages",
    "chat_result",
    "embed_body",
    "embeddings_result",
    "event_payload",
    "rerank_body",
    "reranking_result",
    "speech_body",
    "transcript_delta",
    "transcription_form",
    "transcription_result",
]


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
    engine = card.get("engine")
    return ModelInfo(
        id=str(card.get("id", "")),
        task=str(card.get("task", "")),
        owned_by=str(card.get("owned_by", "localinfer")),
        created=created if isinstance(created, int) else 0,
        engine=engine if isinstance(engine, str) else None,
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
    return Stats(answer.models, tuple(answer.devices), answer.openmp)


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


def pick_reranker(models: ModelList) -> str | None:
    """The only rerank model; without any, the only embeddings model (it ranks by cosine)."""
    for task in (RERANK, EMBEDDINGS):
        candidates = models.for_task(task)
        if candidates:
            return candidates[0].id if len(candidates) == 1 else None
    return None


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
