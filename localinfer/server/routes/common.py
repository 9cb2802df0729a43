"""What the OpenAI routes share: reading the capability selector of a request, and
reading a job to its result. The model itself is chosen by the call layer
(:mod:`localinfer.calls.choice`), for HTTP and ``Engine`` alike.

A request names its model, or selects one by capability: ``X-Capability: lang=en,size=s``,
one ``X-Cap-<key>: value`` header per key (anyserve's form), or a ``model`` field that is
itself a selector (``"model": "lang=en"``). The route's task is implied. With a selector,
a plain ``model`` name is ignored (OpenAI clients must send one).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from localinfer.calls.calls import Calls
from localinfer.errors import InvalidRequest
from localinfer.runtime.job import Done, Job
from localinfer.runtime.model import ServedModel
from localinfer.server.job_io import JobReader
from localinfer.server.state import calls_of, settings_of

CAPABILITY_HEADER = "x-capability"
CAPABILITY_HEADER_PREFIX = "x-cap-"


def parse_capabilities(text: str) -> dict[str, str]:
    """``"task=chat, lang=en"`` → ``{"task": "chat", "lang": "en"}``."""
    wanted: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not (sep and key and value):
            raise InvalidRequest(
                f"capability {part.strip()!r} is not of the form key=value", param="capability"
            )
        wanted[key] = value
    return wanted


def requested_capabilities(request: Request, name: str = "") -> dict[str, str] | None:
    """The capability selector of ``request`` (headers, or a ``model`` that is one)."""
    wanted: dict[str, str] = {}
    for key, value in request.headers.items():
        if key == CAPABILITY_HEADER:
            wanted.update(parse_capabilities(value))
        elif key.startswith(CAPABILITY_HEADER_PREFIX) and value.strip():
            wanted[key[len(CAPABILITY_HEADER_PREFIX) :]] = value.strip()
    if "=" in name:
        wanted.update(parse_capabilities(name))
    return wanted or None


def model_for_task(request: Request, name: str, task: str) -> ServedModel:
    """The served model ``name`` (or the one the request selects by capability) for
    ``task``."""
    return calls_of(request).model(name, task, requested_capabilities(request, name))


def reader_for(request: Request, job: Job) -> JobReader:
    """The reader of ``job`` for ``request``: the server's deadline, watched by the server."""
    return JobReader(job, settings_of(request).request_timeout_s, request.app.state.job_watch)


async def run_to_result(request: Request, model: ServedModel, payload: Any) -> tuple[Job, Any]:
    """Submit ``payload`` and wait for its result, watching deadline and disconnect."""
    job = Calls.submit(model, payload, request_id=str(request.scope["state"]["request_id"]))
    reader = reader_for(request, job)

    async def final() -> Any:  # restartable: see until_disconnect
        while not isinstance(event := await reader.next(), Done):
            pass
        return event.value

    return job, await reader.guarded(request, final)
