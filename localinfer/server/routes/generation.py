"""``POST /v1/chat/completions`` and ``POST /v1/completions``: text generation, streamed or not.

The worker streams text token by token; each delta becomes one SSE chunk. The response
waits for the first token before sending headers, so an error found before generation
starts (context overflow, unknown model) is a real HTTP status, not an event in a 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer.errors import InvalidRequest, LocalInferError, RequestTooLarge
from localinfer.handlers.tasks import CHAT, GenerationRequest, GenerationResult
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.chat_images import vision_messages
from localinfer.server.job_io import JobReader, JobStreamingResponse, error_event
from localinfer.server.routes.common import model_for_task, reader_for
from localinfer.server.sse import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from localinfer.server.state import request_id_of, settings_of


def _budget(request: Request, asked: int | None) -> int:
    settings = settings_of(request)
    if asked is not None and asked > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens is {asked}; the largest accepted is {settings.max_tokens_limit}",
            param="max_tokens",
        )
    return asked or settings.default_max_tokens


def _check_size(request: Request, texts: list[str], messages: int = 0) -> None:
    settings = settings_of(request)
    if messages > settings.max_messages:
        raise RequestTooLarge(
            f"{messages} messages; at most {settings.max_messages} are accepted", param="messages"
        )
    chars = sum(len(t) for t in texts)
    if chars > settings.max_input_chars:
        raise RequestTooLarge(
            f"the input is {chars} characters; at most {settings.max_input_chars} are accepted"
        )


def _generation_request(
    request: Request,
    body: p.ChatCompletionRequest | p.CompletionRequest,
    *,
    messages: tuple[dict[str, Any], ...] | None = None,
    prompt: str | None = None,
) -> GenerationRequest:
    """The handler's request from the sampling fields chat and completions share."""
    return GenerationRequest(
        messages=messages,
        prompt=prompt,
        max_new_tokens=_budget(request, body.token_budget),
        temperature=p.sampling_temperature(body.temperature),
        top_p=body.top_p,
        stop=body.stop_sequences,
        seed=body.seed,
    )


def performance(job: Job, result: GenerationResult) -> p.Performance:
    return p.Performance(
        queue_ms=round(job.queue_ms or 0.0, 3),
        prefill_ms=round(result.prefill_ms, 3),
        decode_ms=round(result.decode_ms, 3),
        tokens_per_second=round(result.tokens_per_second, 3),
    )


def usage(result: GenerationResult) -> p.Usage:
    return p.Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )


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
    job = model.submit(payload, request_id=request_id_of(request))
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
    with_images = any(m.images for m in body.messages)
    texts = [m.text_beside_images() if with_images else m.text() for m in body.messages]
    _check_size(request, texts, messages=len(body.messages))
    if with_images:
        settings = settings_of(request)
        model = model_for_task(request, body.model, CHAT)
        messages = await vision_messages(model, body.messages, settings, settings.max_images)
    else:
        messages = tuple(
            {"role": m.role, "content": t} for m, t in zip(body.messages, texts, strict=True)
        )
    payload = _generation_request(request, body, messages=messages)
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
    _check_size(request, [body.prompt_text])
    payload = _generation_request(request, body, prompt=body.prompt_text)
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
