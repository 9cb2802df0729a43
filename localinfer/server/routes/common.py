"""What the OpenAI routes share: picking the model for a task, reading a job to its result."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from localinfer.errors import InvalidRequest, ModelNotFound
from localinfer.runtime.job import Done, Job
from localinfer.runtime.model import ServedModel
from localinfer.server.job_io import JobReader
from localinfer.server.state import registry_of, settings_of


def model_for_task(request: Request, name: str, task: str) -> ServedModel:
    """The served model ``name``; a model of another task is the caller's mistake (400)."""
    registry = registry_of(request)
    try:
        model = registry.get(name)
    except ModelNotFound:
        candidates = [m.name for m in registry if m.definition.task == task]
        hint = f"; {task} models served: {', '.join(candidates)}" if candidates else ""
        raise ModelNotFound(f"the model {name!r} does not exist{hint}", param="model") from None
    if model.definition.task != task:
        raise InvalidRequest(
            f"the model {name!r} serves {model.definition.task}, not {task}", param="model"
        )
    return model


def reader_for(request: Request, job: Job) -> JobReader:
    return JobReader(job, settings_of(request).request_timeout_s)


async def run_to_result(request: Request, model: ServedModel, payload: Any) -> tuple[Job, Any]:
    """Submit ``payload`` and wait for its result, watching deadline and disconnect."""
    job = model.submit(payload, request_id=str(request.scope["state"]["request_id"]))
    reader = reader_for(request, job)

    async def final() -> Any:  # restartable: see until_disconnect
        while not isinstance(event := await reader.next(), Done):
            pass
        return event.value

    return job, await reader.guarded(request, final)
