"""The limit: bare starlette on hypercorn answering the no-op route with the same JSON.

No middleware, no queue, no worker thread: whatever localinfer costs above this is
the price of its bridge and its request handling.
Run: ``python -m bench.bare --port 8000``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.serving import server_arguments


def json_response(value: Any) -> Response:
    """``value`` as compact JSON: the answer every bench server sends."""
    return Response(
        json.dumps(value, separators=(",", ":")).encode(), media_type="application/json"
    )


def call_model(model: Any, args: list[Any]) -> Any:
    """``model.infer(*args)``, a generator's items collected into a list."""
    result = model.infer(*args)
    if not isinstance(result, dict | list | str | int | float):  # a generator
        result = list(result)
    return result


async def infer(request: Request) -> Response:
    body = json.loads(await request.body())
    return json_response(body["args"][0])


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def infer_app(infer: Callable[[Request], Awaitable[Response]]) -> Starlette:
    """The bench's route and ``/health``, around ``infer`` (the bare and peer servers)."""
    return Starlette(
        routes=[
            Route("/v1/infer/{model}", infer, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def create_app() -> Starlette:
    return infer_app(infer)


def hypercorn_config(port: int) -> Config:
    """The same hypercorn settings localinfer uses (no access log, long keep-alive)."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.keep_alive_timeout = 75
    return config


def run(app: Starlette, port: int) -> None:
    """Serve ``app`` on hypercorn with localinfer's settings until interrupted."""
    asyncio.run(serve(app, hypercorn_config(port)))  # type: ignore[arg-type]


def main() -> None:
    args = server_arguments(__doc__)  # --model and --workers are accepted and ignored
    run(create_app(), args.port)


if __name__ == "__main__":
    main()
