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

from localinfer.calls.options import ChatOptions
from localinfer.calls.outcome import GenerationTiming, TokenUsage
from localinfer.errors import LocalInferError
from localinfer.handlers.tasks import (
    CHAT,
    GenerationResult,
    TokenLogprob,
    ToolCall,
)
from localinfer.runtime.job import Done, Job
from localinfer.server import protocol as p
from localinfer.server.bodies import read_json
from localinfer.server.chat_images import vision_messages
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
from localinfer.server.routes.common import model_for_task
from localinfer.server.sse import (
    DONE,
    SSE_HEADERS,
    SSE_MEDIA_TYPE,
    TextFrames,
    sse_event,
    sse_model,
)
from localinfer.server.state import calls_of, settings_of


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


async def _sse_stream(
    choices: list[Choice], events: Callable[[], AsyncIterator[BaseModel | bytes]]
) -> AsyncIterator[bytes]:
    """The chunks as events (a text delta comes framed already: :class:`TextFrames`)."""
    try:
        async for chunk in events():
            yield chunk if isinstance(chunk, bytes) else sse_model(chunk)
        yield DONE
    except LocalInferError as exc:
        yield sse_event(error_event(exc))
    finally:
        await close_all(choices)


async def chat_completions(request: Request) -> Response:
    body = p.parse(
        p.ChatCompletionRequest, await read_json(request, settings_of(request).max_body_bytes)
    )
    calls = calls_of(request)
    with_images = any(m.images for m in body.messages)
    texts = [m.text_beside_images() if with_images else m.text() for m in body.messages]
    # the call layer checks the limits and applies the sampling defaults; the chat
    # surface (history with tool calls, constraints, logprobs, tools) goes on top
    checked = calls.chat(
        [{"role": m.role, "content": t} for m, t in zip(body.messages, texts, strict=True)],
        **_options(body),
    )
    if with_images:  # checked as text first: no image is decoded for a refused request
        settings = settings_of(request)
        model = model_for_task(request, body.model, CHAT)
        messages = await vision_messages(model, body.messages, settings, settings.max_images)
    else:
        messages = template_messages(body, texts)
    payload = replace(
        checked,
        messages=messages,
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

    def text_chunk(index: int) -> Callable[[str], p.ChatCompletionChunk]:
        return lambda text: chunk([p.ChunkChoice(index=index, delta=p.Delta(content=text))])

    async def events() -> AsyncIterator[BaseModel | bytes]:
        for c in choices:
            yield chunk([p.ChunkChoice(index=c.index, delta=p.Delta(role="assistant", content=""))])
        texts = {c.index: TextFrames(text_chunk(c.index)) for c in choices}
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
                    yield texts[c.index].frame(value)
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
    payload = replace(
        calls_of(request).completion(body.prompt_text, **_options(body)), logprobs=body.logprobs
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

    def text_reply(index: int) -> Callable[[str], p.Completion]:
        return lambda text: reply([p.CompletionChoice(index=index, text=text)])

    async def events() -> AsyncIterator[BaseModel | bytes]:
        texts = {c.index: TextFrames(text_reply(c.index)) for c in choices}
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
                    yield texts[c.index].frame(value)
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
