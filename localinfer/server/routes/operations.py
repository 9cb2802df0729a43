"""Operations: ``/health``, ``/ready``, ``/v1/stats``, ``/v1/models``."""

from __future__ import annotations

import time

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer import openmp
from localinfer.server import protocol as p
from localinfer.server import resources as r
from localinfer.server.connections import ConnectionLimit
from localinfer.server.state import calls_of, registry_of
from localinfer.server.telemetry import device_telemetry

_STARTED = int(time.time())


async def health(request: Request) -> Response:
    """Liveness, with each worker's state: a dead or failed worker shows here."""
    models = registry_of(request).health()
    degraded = any(not m["ready"] for m in models.values())
    answer = r.Health(status="degraded" if degraded else "ok", models=models)
    return JSONResponse(answer.model_dump())


async def ready(request: Request) -> Response:
    """200 once every worker of every model has loaded, else 503."""
    registry = registry_of(request)
    answer = r.Readiness(ready=registry.ready, models={m.name: m.ready for m in registry})
    body = answer.model_dump()
    failed = {m.name: m.failure for m in registry if m.failure is not None}
    if failed:  # why a model will not become ready without help
        body["failed"] = failed
    return JSONResponse(body, status_code=200 if registry.ready else 503)


async def stats(request: Request) -> Response:
    """Per-model counters, and the server machine's devices (CPU/RAM, GPUs)."""
    caches = request.app.state.embedding_caches
    devices = await anyio.to_thread.run_sync(device_telemetry)  # driver calls: off the loop
    connections: ConnectionLimit | None = getattr(request.app.state, "connections", None)
    models = calls_of(request).stats(
        lambda m: {"embedding_cache": caches[m.name].snapshot()} if m.name in caches else {}
    )
    here = getattr(request.app.state, "models_run_here", True)
    wait = openmp.describe() if here else None  # a Ray ingress: the replicas' own
    answer = r.Stats.model_validate(
        {"models": models, "devices": devices, "openmp": wait}
    ).model_dump()
    if connections is not None:
        answer["connections"] = connections.snapshot()
    return JSONResponse(answer)


def _model_card(model_name: str, task: str, engine: str | None = None) -> p.ModelCard:
    return p.ModelCard(id=model_name, created=_STARTED, task=task, engine=engine)


async def list_models(request: Request) -> Response:
    cards = [_model_card(m.name, m.definition.task, m.engine) for m in registry_of(request)]
    return JSONResponse(p.ModelList(data=cards).model_dump())


async def get_model(request: Request) -> Response:
    model = registry_of(request).get(request.path_params["model"])
    card = _model_card(model.name, model.definition.task, model.engine).model_dump()
    return JSONResponse(r.ModelInfo.model_validate({**card, **model.health()}).model_dump())


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/v1/stats", stats, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
]
