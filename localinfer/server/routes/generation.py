"""``POST /v1/chat/completions`` and ``POST /v1/completions``: text generation, streamed or not.

The worker streams text token by token; each delta becomes one SSE chunk. The response
waits for the first token before sending headers, so an error found before generation
starts (context overflow, unknown model) is a real HTTP status, not an event in a 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer.calls.calls import Calls
from localinfer.calls.options import ChatOptions
from localinfer.calls.outcome import GenerationTiming, TokenUsage
from localinfer.errors import LocalInferError
from localinfer.handlers.tasks import CHAT, GenerationRequest, GenerationResult
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.chat_images import vision_messages
from localinfer.server.job_io import JobReader, JobStreamingResponse, error_event
from localinfer.server.routes.common import model_for_task, reader_for
from localinfer.server.sse import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from localinfer.server.state import calls_of, request_id_of, settings_of


def _options(body: p.ChatCompletionRequest | p.CompletionRequest) -> ChatOptions:
    """The sampling fields chat and completions share, for the call layer."""
    return ChatOptions(
        max_tokens=body.token_budget,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_sequences,
        seed=body.seed,
    )


def performance(job: Job, result: GenerationResult) -> p.Performance:
    return p.Performance.of(GenerationTiming.of(job, result))


def usage(result: GenerationResult) -> p.Usage:
    return p.Usage.of(TokenUsage.of(result))


def _sse(model: BaseModel) -> bytes:
    return b"data: " + model.model_dump_json(exclude_none=False).encode() + b"\n\n"


async def _stream(
    first: Chunk | Done,
    reader: JobReader,
    on_delta: Callable[[str], BaseModel],
    on_finish: Callable[[GenerationResult], list[BaseModel]],
    opening: BaseModel | None,
) -> AsyncIterator[bytes]:
    try:
        if opening is not None:
            yield _sse(opening)
        event: Chunk | Done = first
        while True:
            if isinstance(event, Done):
                for chunk in on_finish(event.value):
                    yield _sse(chunk)
                yield DONE
                return
            if event.value:
                yield _sse(on_delta(event.value))
            event = await reader.next()
    except LocalInferError as exc:
        yield sse_event(error_event(exc))
    finally:
        await reader.aclose()


async def _start(
    request: Request, model_name: str, payload: GenerationRequest
) -> tuple[Job, JobReader, Chunk | Done]:
    model = model_for_task(request, model_name, CHAT)
    job = Calls.submit(model, payload, request_id=request_id_of(request))
    reader = reader_for(request, job)
    first = await reader.guarded(request)
    return job, reader, first


async def _collect(request: Request, reader: JobReader, first: Chunk | Done) -> GenerationResult:
    async def rest() -> GenerationResult:
        event = first
        while not isinstance(event, Done):
            event = await reader.next()
        result: GenerationResult = event.value
        return result

    return await reader.guarded(request, rest)


async def chat_completions(request: Request) -> Response:
    body = p.parse(
        p.ChatCompletionRequest, await read_json(request, settings_of(request).max_body_bytes)
    )
    calls = calls_of(request)
    with_images = any(m.images for m in body.messages)
    texts = [m.text_beside_images() if with_images else m.text() for m in body.messages]
    payload = calls.chat(
        [{"role": m.role, "content": t} for m, t in zip(body.messages, texts, strict=True)],
        **_options(body),
    )
    if with_images:  # checked as text first: no image is decoded for a refused request
        settings = settings_of(request)
        model = model_for_task(request, body.model, CHAT)
        converted = await vision_messages(model, body.messages, settings, settings.max_images)
        payload = replace(payload, messages=converted)
    job, reader, first = await _start(request, body.model, payload)
    reply_id, created = p.new_id("chatcmpl"), p.now()

    if not body.stream:
        result = await _collect(request, reader, first)
        return JSONResponse(
            p.ChatCompletion(
                id=reply_id,
                created=created,
                model=body.model,
                choices=[
                    p.ChatChoice(
                        message=p.AssistantMessage(content=result.text),
                        finish_reason=result.finish_reason,
                    )
                ],
                usage=usage(result),
                performance=performance(job, result),
            ).model_dump()
        )

    def chunk(
        choices: list[p.ChunkChoice],
        usage: p.Usage | None = None,
        performance: p.Performance | None = None,
    ) -> p.ChatCompletionChunk:
        return p.ChatCompletionChunk(
            id=reply_id,
            created=created,
            model=body.model,
            choices=choices,
            usage=usage,
            performance=performance,
        )

    def on_finish(result: GenerationResult) -> list[BaseModel]:
        last = chunk(
            [p.ChunkChoice(delta=p.Delta(), finish_reason=result.finish_reason)],
            performance=performance(job, result),
        )
        if not body.include_usage:
            return [last]
        return [last, chunk([], usage=usage(result), performance=performance(job, result))]

    return JobStreamingResponse(
        job,
        _stream(
            first,
            reader,
            on_delta=lambda text: chunk([p.ChunkChoice(delta=p.Delta(content=text))]),
            on_finish=on_finish,
            opening=chunk([p.ChunkChoice(delta=p.Delta(role="assistant", content=""))]),
        ),
        media_type=SSE_MEDIA_TYPE,
        headers=SSE_HEADERS,
    )


async def completions(request: Request) -> Response:
    body = p.parse(
        p.CompletionRequest, await read_json(request, settings_of(request).max_body_bytes)
    )
    payload = calls_of(request).completion(body.prompt_text, **_options(body))
    job, reader, first = await _start(request, body.model, payload)
    reply_id, created = p.new_id("cmpl"), p.now()

    def reply(
        text: str,
        finish: p.FinishReason | None,
        usage: p.Usage | None = None,
        performance: p.Performance | None = None,
    ) -> p.Completion:
        return p.Completion(
            id=reply_id,
            created=created,
            model=body.model,
            choices=[p.CompletionChoice(text=text, finish_reason=finish)],
            usage=usage,
            performance=performance,
        )

    if not body.stream:
        result = await _collect(request, reader, first)
        return JSONResponse(
            reply(
                result.text,
                result.finish_reason,
                usage=usage(result),
                performance=performance(job, result),
            ).model_dump()
        )

    def on_finish(result: GenerationResult) -> list[BaseModel]:
        last = reply("", result.finish_reason, performance=performance(job, result))
        if not body.include_usage:
            return [last]
        return [
            last,
            p.Completion(
                id=reply_id,
                created=created,
                model=body.model,
                choices=[],
                usage=usage(result),
                performance=performance(job, result),
            ),
        ]

    return JobStreamingResponse(
        job,
        _stream(
            first,
            reader,
            on_delta=lambda text: reply(text, None),
            on_finish=on_finish,
            opening=None,
        ),
        media_type=SSE_MEDIA_TYPE,
        headers=SSE_HEADERS,
    )


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
]
