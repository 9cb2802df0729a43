"""``POST /v1/models/{id}/workers``: change how many worker threads a loaded model runs.

Body ``{"workers": N, "wait": false}``. New workers load the handler in their own
threads; removed ones finish the jobs they hold, then stop. The reply is the model's
health (``target_workers`` and every worker, retiring ones marked); with ``"wait": true``
it comes once new workers have loaded and retired ones have stopped.
"""

from __future__ import annotations

import anyio
from pydantic import Field, StrictBool, StrictInt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer.errors import RequestTimeout
from localinfer.runtime.model import MAX_WORKERS
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.state import registry_of, settings_of


class ScaleRequest(p.Request):
    workers: StrictInt = Field(ge=1, le=MAX_WORKERS)
    wait: StrictBool = False


async def scale_workers(request: Request) -> Response:
    settings = settings_of(request)
    model = registry_of(request).get(request.path_params["model"])
    body = p.parse(ScaleRequest, await read_json(request, settings.max_body_bytes))
    model.scale(body.workers)
    if body.wait:
        with anyio.move_on_after(settings.request_timeout_s) as scope:
            await model.wait_scaled()
        if scope.cancelled_caught:
            raise RequestTimeout(
                f"model {model.name!r} did not reach {body.workers} worker(s) within "
                f"{settings.request_timeout_s:g} s; it carries on in the background"
            )
    return JSONResponse({"id": model.name, **model.health()})


routes = [Route("/v1/models/{model:path}/workers", scale_workers, methods=["POST"])]
