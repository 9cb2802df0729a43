"""``POST /v1/chat/completions`` and ``POST /v1/completions``: text generation, streamed or not.

The worker streams text token by token; each delta becomes one SSE chunk. The response
waits for the first token before sending headers, so an error found before generation
starts (context overflow, unknown model) is a real HTTP status, not an event in a 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer.errors import InvalidRequest, LocalInferError, RequestTooLarge
from localinfer.handlers.tasks import GenerationRequest, GenerationResult, TokenLogprob, ToolCall
from localinfer.runtime.job import Done, Job
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.chat_payload import (
    response_constraint,
    template_messages,
    tool_definitions,
)
from localinfer.server.choices import (
    Choice,
    ChoicesStreamingResponse,
    assistant_message,
    chat_logprobs,
    close_all,
    collect,
    completion_logprobs,
    interleaved,
    seeded,
    start_choices,
    tool_call_delta,
)
from localinfer.server.choices import usage as summed_usage
from localinfer.server.job_io import error_event
from localinfer.server.sse import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from localinfer.server.state import settings_of


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


async def _sse_stream(
    choices: list[Choice], events: Callable[[], AsyncIterator[BaseModel]]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in events():
            yield _sse(chunk)
        yield DONE
    except LocalInferError as exc:
        yield sse_event(error_event(exc))
    finally:
        await close_all(choices)


async def chat_completions(request: Request) -> Response:
    body = p.parse(
        p.ChatCompletionRequest, await read_json(request, settings_of(request).max_body_bytes)
    )
    texts = [m.text() for m in body.messages]
    _check_size(request, texts, messages=len(body.messages))
    payload = replace(
        _generation_request(request, body, messages=template_messages(body, texts)),
        constraint=response_constraint(body),
        logprobs=body.logprobs_top,
        tools=tool_definitions(body),
        tool_choice=body.tool_choice_name,
        parallel_tool_calls=body.parallel_tool_calls,
    )
    choices = await start_choices(request, body.model, [seeded(payload, i) for i in range(body.n)])
    reply_id, created = p.new_id("chatcmpl"), p.now()
    job = choices[0].job

    if not body.stream:
        try:
            await collect(request, choices)
        finally:
            await close_all(choices)
        results = [c.result for c in choices if c.result is not None]
        return JSONResponse(
            p.ChatCompletion(
                id=reply_id,
                created=created,
                model=body.model,
                choices=[
                    p.ChatChoice(
                        index=c.index,
                        message=assistant_message(c.result),
                        finish_reason=c.result.finish_reason,
                        logprobs=chat_logprobs(c.logprobs) if body.logprobs else None,
                    )
                    for c in choices
                    if c.result is not None
                ],
                usage=summed_usage(results),
                performance=performance(job, results[0]),
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

    async def events() -> AsyncIterator[BaseModel]:
        for c in choices:
            yield chunk([p.ChunkChoice(index=c.index, delta=p.Delta(role="assistant", content=""))])
        held = {c.index: "" for c in choices}  # text waiting for its token's logprob
        calls = {c.index: 0 for c in choices}
        results: dict[int, GenerationResult] = {}
        async for c, event in interleaved(choices):
            if isinstance(event, Done):
                result: GenerationResult = event.value
                results[c.index] = result
                text = held.pop(c.index, "")
                if text:
                    yield chunk([p.ChunkChoice(index=c.index, delta=p.Delta(content=text))])
                yield chunk(
                    [
                        p.ChunkChoice(
                            index=c.index, delta=p.Delta(), finish_reason=result.finish_reason
                        )
                    ],
                    performance=performance(c.job, result),
                )
                continue
            value = event.value
            if isinstance(value, str):
                if body.logprobs:
                    held[c.index] += value
                elif value:
                    yield chunk([p.ChunkChoice(index=c.index, delta=p.Delta(content=value))])
            elif isinstance(value, TokenLogprob):
                text, held[c.index] = held[c.index], ""
                yield chunk(
                    [
                        p.ChunkChoice(
                            index=c.index,
                            delta=p.Delta(content=text),
                            logprobs=chat_logprobs([value]),
                        )
                    ]
                )
            elif isinstance(value, ToolCall):
                delta = p.Delta(tool_calls=[tool_call_delta(value, calls[c.index])])
                calls[c.index] += 1
                yield chunk([p.ChunkChoice(index=c.index, delta=delta)])
        if body.include_usage:
            ordered = [results[i] for i in sorted(results)]
            yield chunk([], usage=summed_usage(ordered), performance=performance(job, ordered[0]))

    return ChoicesStreamingResponse(
        choices, _sse_stream(choices, events), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS
    )


async def completions(request: Request) -> Response:
    body = p.parse(
        p.CompletionRequest, await read_json(request, settings_of(request).max_body_bytes)
    )
    _check_size(request, [body.prompt_text])
    payload = replace(
        _generation_request(request, body, prompt=body.prompt_text), logprobs=body.logprobs
    )
    choices = await start_choices(request, body.model, [seeded(payload, i) for i in range(body.n)])
    reply_id, created = p.new_id("cmpl"), p.now()
    job = choices[0].job
    wants_logprobs = body.logprobs is not None

    def reply(
        completion_choices: list[p.CompletionChoice],
        usage: p.Usage | None = None,
        performance: p.Performance | None = None,
    ) -> p.Completion:
        return p.Completion(
            id=reply_id,
            created=created,
            model=body.model,
            choices=completion_choices,
            usage=usage,
            performance=performance,
        )

    if not body.stream:
        try:
            await collect(request, choices)
        finally:
            await close_all(choices)
        results = [c.result for c in choices if c.result is not None]
        return JSONResponse(
            reply(
                [
                    p.CompletionChoice(
                        index=c.index,
                        text=c.result.text,
                        finish_reason=c.result.finish_reason,
                        logprobs=completion_logprobs(c.logprobs) if wants_logprobs else None,
                    )
                    for c in choices
                    if c.result is not None
                ],
                usage=summed_usage(results),
                performance=performance(job, results[0]),
            ).model_dump()
        )

    async def events() -> AsyncIterator[BaseModel]:
        held = {c.index: "" for c in choices}
        offsets = {c.index: 0 for c in choices}
        results: dict[int, GenerationResult] = {}
        async for c, event in interleaved(choices):
            if isinstance(event, Done):
                result: GenerationResult = event.value
                results[c.index] = result
                text = held.pop(c.index, "")
                yield reply(
                    [
                        p.CompletionChoice(
                            index=c.index, text=text, finish_reason=result.finish_reason
                        )
                    ],
                    performance=performance(c.job, result),
                )
                continue
            value = event.value
            if isinstance(value, str):
                if wants_logprobs:
                    held[c.index] += value
                elif value:
                    yield reply([p.CompletionChoice(index=c.index, text=value)])
            elif isinstance(value, TokenLogprob):
                text, held[c.index] = held[c.index], ""
                logprobs = completion_logprobs([value], offsets[c.index])
                offsets[c.index] += len(value.token)
                yield reply([p.CompletionChoice(index=c.index, text=text, logprobs=logprobs)])
        if body.include_usage:
            ordered = [results[i] for i in sorted(results)]
            yield reply([], usage=summed_usage(ordered), performance=performance(job, ordered[0]))

    return ChoicesStreamingResponse(
        choices, _sse_stream(choices, events), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS
    )


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
]
