"""Model management while the server runs: load, unload, downloads with live progress.

- ``POST /v1/models/{id}/load`` ``{"device", "workers", "wait"}`` — 202 while loading,
  200 once ready (``"wait": true``) or when it already was loaded;
- ``DELETE /v1/models/{id}`` — unload: workers stop, handlers are released; the answer
  says how many are gone and the device memory before and after;
- ``GET /v1/downloads``, ``POST /v1/downloads`` ``{"model", "revision"}``,
  ``GET /v1/downloads/{id}``, ``GET /v1/downloads/{id}/events`` (SSE, one event per
  progress report, then ``[DONE]``), ``DELETE /v1/downloads/{id}`` (cancel);
- ``GET /v1/catalog`` — catalog entries, each with whether it is cached and loaded;
- ``GET /v1/cache`` — the models in the server's cache (any repo), size and loaded state.

Ids are validated as catalog aliases or ``org/name`` repo ids: never paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from localinfer.config import Settings
from localinfer.runtime.downloads import DownloadManager
from localinfer.runtime.lifecycle import CatalogModels, LoadDefaults, ModelLifecycle
from localinfer.runtime.registry import ModelRegistry
from localinfer.server import resources as r
from localinfer.server.bodies import read_json
from localinfer.server.protocol import Request as ProtocolRequest
from localinfer.server.protocol import parse
from localinfer.server.sse import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from localinfer.server.state import registry_of, settings_of


class LoadModelRequest(ProtocolRequest):
    #: auto, cpu, cuda, cuda:N, mps or a comma list (default: the server's --device)
    device: str | None = Field(None, max_length=200)
    #: worker threads per device (default: the server's --workers)
    workers: int | None = Field(None, ge=1, le=64)
    #: answer once the workers have loaded (200), instead of at once (202)
    wait: bool = False


class DownloadRequest(ProtocolRequest):
    model: str = Field(max_length=300)
    revision: str | None = Field(None, max_length=200)


@contextlib.asynccontextmanager
async def management_state(
    app: Starlette, registry: ModelRegistry, settings: Settings
) -> AsyncIterator[None]:
    """The lifecycle (keep-alive, on-demand loads) and downloads, for the app's lifetime."""
    from localinfer.plugins import discover

    plugins = await anyio.to_thread.run_sync(discover)  # imports plugin modules: off the loop
    defaults = LoadDefaults(
        device=settings.device,
        workers=settings.workers,
        max_queue=settings.max_queue,
        stream_buffer=settings.stream_buffer,
        isolate=tuple(settings.isolate),
        isolated_priority=settings.isolated_priority,
    )
    async with (
        ModelLifecycle(
            registry,
            CatalogModels(plugins, defaults),
            keep_alive_s=settings.keep_alive_s,
            load_on_demand=settings.load_on_demand,
        ) as lifecycle,
        DownloadManager(plugins.catalog, offline=settings.offline) as downloads,
    ):
        app.state.lifecycle = lifecycle
        app.state.downloads = downloads
        yield


def lifecycle_of(request: Request) -> ModelLifecycle:
    lifecycle: ModelLifecycle = request.app.state.lifecycle
    return lifecycle


def downloads_of(request: Request) -> DownloadManager:
    downloads: DownloadManager = request.app.state.downloads
    return downloads


async def _optional_json(request: Request) -> Any:
    """The JSON body, or ``{}`` when the request has none (every field has a default)."""
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return {}
    return await read_json(request, settings_of(request).max_body_bytes)


async def load_model(request: Request) -> Response:
    body: LoadModelRequest = parse(LoadModelRequest, await _optional_json(request))
    model, loaded = await lifecycle_of(request).load(
        request.path_params["model"], device=body.device, workers=body.workers, wait=body.wait
    )
    state = {"id": model.name, "object": "model", "loaded": loaded, **model.health()}
    return JSONResponse(
        r.ModelState.model_validate(state).model_dump(), status_code=200 if model.ready else 202
    )


async def unload_model(request: Request) -> Response:
    report = await lifecycle_of(request).unload(request.path_params["model"])
    answer = r.UnloadReport.model_validate({"id": report.model, **report.as_dict()})
    return JSONResponse(answer.model_dump())


def _download(snapshot: dict[str, Any]) -> r.Download:
    """A download task's snapshot (the runtime's plain dict) as the answer it is."""
    return r.Download.model_validate(snapshot)


async def list_downloads(request: Request) -> Response:
    data = [_download(task.snapshot()) for task in downloads_of(request)]
    return JSONResponse(r.DownloadList(data=data).model_dump())


async def start_download(request: Request) -> Response:
    body: DownloadRequest = parse(
        DownloadRequest, await read_json(request, settings_of(request).max_body_bytes)
    )
    task, created = downloads_of(request).start(body.model, revision=body.revision)
    return JSONResponse(
        _download(task.snapshot()).model_dump(),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/downloads/{task.id}"},
    )


async def get_download(request: Request) -> Response:
    return JSONResponse(
        _download(downloads_of(request).get(request.path_params["id"]).snapshot()).model_dump()
    )


async def download_events(request: Request) -> Response:
    task = downloads_of(request).get(request.path_params["id"])

    async def events() -> AsyncIterator[bytes]:
        async for snapshot in task.updates():
            yield sse_event(_download(snapshot).model_dump())
        yield DONE

    return StreamingResponse(events(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)


async def cancel_download(request: Request) -> Response:
    task = downloads_of(request).get(request.path_params["id"])
    task.cancel()
    return JSONResponse(
        _download(task.snapshot()).model_dump(), status_code=200 if task.finished else 202
    )


async def catalog(request: Request) -> Response:
    from localinfer.hub.cache import available_locally

    lifecycle, registry = lifecycle_of(request), registry_of(request)
    entries = sorted(lifecycle.models.plugins.catalog.values(), key=lambda e: e.alias)

    flags = await anyio.to_thread.run_sync(lambda: [available_locally(e) for e in entries])
    answer = r.Catalog(
        data=[
            r.CatalogEntry(
                id=entry.alias,
                repo=entry.repo,
                task=entry.task,
                handler=entry.handler,
                description=entry.description,
                origin=entry.origin,
                cached=is_cached,
                loaded=entry.alias in registry,
            )
            for entry, is_cached in zip(entries, flags, strict=True)
        ]
    )
    return JSONResponse(answer.model_dump())


async def cache(request: Request) -> Response:
    """The models in the server's Hugging Face cache, catalog or not, with their size."""
    from localinfer.hub.listing import cached_models

    registry = registry_of(request)
    models = await anyio.to_thread.run_sync(cached_models)  # walks the cache: off the loop
    answer = r.CachedModels(
        data=[
            r.CachedModel(
                id=model.repo_id,
                size_bytes=model.size_bytes,
                files=model.files,
                revisions=len(model.revisions),
                last_accessed=round(model.last_accessed, 3),
                loaded=model.repo_id in registry,
            )
            for model in models
        ]
    )
    return JSONResponse(answer.model_dump())


routes = [
    Route("/v1/models/{model:path}/load", load_model, methods=["POST"]),
    Route("/v1/models/{model:path}", unload_model, methods=["DELETE"]),
    Route("/v1/downloads", list_downloads, methods=["GET"]),
    Route("/v1/downloads", start_download, methods=["POST"]),
    Route("/v1/downloads/{id}", get_download, methods=["GET"]),
    Route("/v1/downloads/{id}", cancel_download, methods=["DELETE"]),
    Route("/v1/downloads/{id}/events", download_events, methods=["GET"]),
    Route("/v1/catalog", catalog, methods=["GET"]),
    Route("/v1/cache", cache, methods=["GET"]),
]
