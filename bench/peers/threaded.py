"""Peer: the textbook way, starlette on hypercorn with ``anyio.to_thread.run_sync``.

Same ASGI server and framework as localinfer, no job queue: each request borrows a
thread from a pool capped at ``--workers`` (a ``CapacityLimiter``), which is what most
hand-written model servers do. Run: ``python -m bench.peers.threaded --port 8000``.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bench.bare import call_model, infer_app, json_response, run
from bench.serving import build_model, server_arguments


def create_app(model: Any, workers: int) -> Starlette:
    limiter: CapacityLimiter | None = None  # created on the loop, at first use

    async def infer(request: Request) -> Response:
        nonlocal limiter
        if limiter is None:
            limiter = CapacityLimiter(workers)
        body = json.loads(await request.body())
        args = body.get("args", [])
        result = await anyio.to_thread.run_sync(call_model, model, args, limiter=limiter)
        return json_response(result)

    return infer_app(infer)


def main() -> None:
    args = server_arguments(__doc__)
    run(create_app(build_model(args.model), args.workers), args.port)


if __name__ == "__main__":
    main()
