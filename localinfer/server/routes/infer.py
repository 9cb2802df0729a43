"""``POST /v1/infer/{model}``: a user's own code, JSON in, JSON / SSE / bytes out.

Body ``{"args": [...], "kwargs": {...}, "stream": bool}`` for ``infer`` objects; the
raw JSON for LitAPI objects. A generator result streams: text (and JSON items) as SSE
events ending in ``data: [DONE]``, bytes as a chunked binary body. ``"stream": false``
asks for the whole result at once (text joined, bytes concatenated, others as a list).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from localinfer.errors import LocalInferError
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.runtime.model import ServedModel
from localinfer.server.bodies import read_json
from localinfer.server.encoding import JSON_CONTENT_TYPE, RawResponse, dumps
from localinfer.server.job_io import JobReader, JobStreamingResponse, error_event
from localinfer.server.routes.common import reader_for
from localinfer.server.sse import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from localinfer.server.state import registry_of, request_id_of, settings_of


def _timing_headers(job: Job) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in _raw_timing_headers(job)}


def _raw_timing_headers(job: Job) -> list[tuple[bytes, bytes]]:
    """``Server-Timing`` (W3C): the job's wait in the queue and its run, in ms (what a
    browser's developer tools show for the request). One header for both: each header
    an answer carries costs the HTTP layer a validation pass."""
    queue_ms = job.queue_ms
    if queue_ms is None:
        return []
    run_ms = job.run_ms
    if run_ms is None:
        return [(b"server-timing", b"queue;dur=%.3f" % queue_ms)]
    return [(b"server-timing", b"queue;dur=%.3f, run;dur=%.3f" % (queue_ms, run_ms))]


def value_response(value: Any, model: ServedModel, job: Job) -> Response:
    headers = _raw_timing_headers(job)
    if isinstance(value, bytes | bytearray):
        content_type = (b"content-type", model.definition.media_type.encode("latin-1"))
        return RawResponse(bytes(value), [content_type, *headers])
    return RawResponse(dumps(value), [JSON_CONTENT_TYPE, *headers])


def joined(chunks: list[Any]) -> Any:
    """A whole result from streamed items: text joined, bytes concatenated, else a list."""
    if chunks and all(isinstance(c, str) for c in chunks):
        return "".join(chunks)
    if chunks and all(isinstance(c, bytes | bytearray) for c in chunks):
        return b"".join(chunks)
    return chunks


async def sse_body(first: Chunk, reader: JobReader) -> AsyncIterator[bytes]:
    try:
        yield sse_event(first.value)
        async for event in reader.rest():
            if isinstance(event, Chunk):
                yield sse_event(event.value)
        yield DONE
    except LocalInferError as exc:
        yield sse_event(error_event(exc))
    finally:
        await reader.aclose()


async def bytes_body(first: Chunk, reader: JobReader) -> AsyncIterator[bytes]:
    try:
        yield bytes(first.value)
        async for event in reader.rest():
            if isinstance(event, Chunk):
                yield bytes(event.value)
    finally:
        await reader.aclose()


async def infer(request: Request) -> Response:
    registry, settings = registry_of(request), settings_of(request)
    model = registry.acquire(request.path_params["model"])  # may load it
    body = await read_json(request, settings.max_body_bytes)
    prepare = model.definition.prepare
    payload = prepare(body) if prepare is not None else body
    job = model.submit(payload, request_id=request_id_of(request))
    reader = reader_for(request, job)
    first = await reader.guarded(request)
    if isinstance(first, Done):
        return value_response(first.value, model, job)

    wants_stream = getattr(payload, "stream", None)
    if isinstance(first.value, bytes | bytearray) and wants_stream is not False:
        return JobStreamingResponse(
            job, bytes_body(first, reader), media_type=model.definition.media_type
        )
    if wants_stream is False:
        chunks = [first.value]

        async def collect() -> list[Any]:  # restartable: chunks live outside
            while not isinstance(event := await reader.next(), Done):
                chunks.append(event.value)
            return chunks

        try:
            return value_response(joined(await reader.guarded(request, collect)), model, job)
        finally:
            await reader.aclose()
    return JobStreamingResponse(
        job,
        sse_body(first, reader),
        media_type=SSE_MEDIA_TYPE,
        headers={**SSE_HEADERS, **_timing_headers(job)},
    )


routes = [Route("/v1/infer/{model}", infer, methods=["POST"])]
