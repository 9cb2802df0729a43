"""Reference: the cheapest possible worker-thread hop, the floor of any design that runs
models in dedicated threads.

Bare starlette on hypercorn, but each call runs in ``--workers`` dedicated threads fed
through a ``queue.SimpleQueue``; the result comes back with one
``loop.call_soon_threadsafe`` that resolves an asyncio future. No job queue, no
batching, no deadlines, no disconnects, no streaming: whatever localinfer costs above
this is its features, and whatever this costs above bare is the thread hop itself.
Run: ``python -m bench.peers.hop --port 8000``.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bench.bare import call_model, infer_app, json_response, run
from bench.serving import build_model, server_arguments

Call = tuple[list[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


def serve_calls(model: Any, calls: queue.SimpleQueue[Call]) -> None:
    """A dedicated thread: run each call, resolve its future on the loop."""
    while True:
        args, future, loop = calls.get()
        try:
            result = call_model(model, args)
        except Exception as exc:  # handed to the request
            loop.call_soon_threadsafe(future.set_exception, exc)
        else:
            loop.call_soon_threadsafe(future.set_result, result)


def create_app(model: Any, workers: int) -> Starlette:
    calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
    for _ in range(workers):
        threading.Thread(target=serve_calls, args=(model, calls), daemon=True).start()

    async def infer(request: Request) -> Response:
        body = json.loads(await request.body())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        calls.put((body.get("args", []), future, loop))
        result = await future
        return json_response(result)

    return infer_app(infer)


def main() -> None:
    args = server_arguments(__doc__)
    run(create_app(build_model(args.model), args.workers), args.port)


if __name__ == "__main__":
    main()
