"""Peer: the textbook way, starlette on hypercorn with ``anyio.to_thread.run_sync``.

Same ASGI server and framework as localinfer, no job queue: each request borrows a
thread from a pool capped at ``--workers`` (a ``CapacityLimiter``), which is what most
hand-written model servers do. Run: ``python -m bench.peers.threaded --port 8000``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from hypercorn.asyncio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.bare import hypercorn_config
from bench.serving import build_model, server_arguments


def create_app(model: Any, workers: int) -> Starlette:
    limiter: CapacityLimiter | None = None  # created on the loop, at first use

    async def infer(request: Request) -> Response:
        nonlocal limiter
        if limiter is None:
            limiter = CapacityLimiter(workers)
        body = json.loads(await request.body())
        args = body.get("args", [])
        result = await anyio.to_thread.run_sync(lambda: model.infer(*args), limiter=limiter)
        if not isinstance(result, dict | list | str | int | float):  # a generator
            result = list(result)
        return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/infer/{model}", infer, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def main() -> None:
    args = server_arguments(__doc__)
    app = create_app(build_model(args.model), args.workers)
    asyncio.run(serve(app, hypercorn_config(args.port)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
