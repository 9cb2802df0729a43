"""``n`` choices of one generation request: submitted together, read together, put in order.

Each choice is its own job (so every engine batches them); this module submits them,
waits for every first event before a status is sent (an error in any is a real HTTP
status), reads them to their results or interleaves their streams, and turns a choice's
items (text, :class:`TokenLogprob`, :class:`ToolCall`) into OpenAI's shapes.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from localinfer.handlers.tasks import CHAT, GenerationRequest, GenerationResult, TokenLogprob
from localinfer.handlers.tasks import ToolCall as HandlerToolCall
from localinfer.runtime.job import Chunk, Done, Job
from localinfer.server import protocol as p
from localinfer.server.job_io import JobReader
from localinfer.server.routes.common import model_for_task, reader_for
from localinfer.server.state import request_id_of


@dataclass(slots=True)
class Choice:
    """One choice's job, reader, first event, and what it produced so far."""

    index: int
    job: Job
    reader: JobReader
    first: Chunk | Done
    logprobs: list[TokenLogprob] = field(default_factory=list)
    result: GenerationResult | None = None


async def start_choices(
    request: Request, model_name: str, payloads: Sequence[GenerationRequest]
) -> list[Choice]:
    """Submit every choice, then wait for each one's first event (or error)."""
    model = model_for_task(request, model_name, CHAT)
    jobs: list[Job] = []
    try:
        for payload in payloads:
            jobs.append(model.submit(payload, request_id=request_id_of(request)))
        choices = []
        for index, job in enumerate(jobs):
            reader = reader_for(request, job)
            choices.append(Choice(index, job, reader, await reader.guarded(request)))
        return choices
    except BaseException:
        for job in jobs:
            job.release("another choice of the request failed")
        raise


def seeded(payload: GenerationRequest, index: int) -> GenerationRequest:
    """Choice ``index``'s payload: a seeded request gets a different seed per choice."""
    if index == 0 or payload.seed is None:
        return payload
    return replace(payload, seed=(payload.seed + index) % 2**63)


async def collect(request: Request, choices: Sequence[Choice]) -> None:
    """Read every choice to its result (concurrently), keeping its logprobs."""

    async def read(choice: Choice) -> None:
        async def rest() -> GenerationResult:
            event = choice.first
            while not isinstance(event, Done):
                if isinstance(event.value, TokenLogprob):
                    choice.logprobs.append(event.value)
                event = await choice.reader.next()
            result: GenerationResult = event.value
            return result

        choice.result = await choice.reader.guarded(request, rest)

    if len(choices) == 1:
        await read(choices[0])
        return
    async with anyio.create_task_group() as group:
        for choice in choices:
            group.start_soon(read, choice)


async def interleaved(choices: Sequence[Choice]) -> AsyncIterator[tuple[Choice, Chunk | Done]]:
    """Every choice's events as they come, first events first; ends when all are done."""
    for choice in choices:
        yield choice, choice.first
    live = [choice for choice in choices if not isinstance(choice.first, Done)]
    if len(live) == 1:
        choice = live[0]
        while not isinstance(event := await choice.reader.next(), Done):
            yield choice, event
        yield choice, event
        return
    if not live:
        return
    send, receive = anyio.create_memory_object_stream[tuple[Choice, Chunk | Done]](math.inf)

    async def pump(
        choice: Choice, out: MemoryObjectSendStream[tuple[Choice, Chunk | Done]]
    ) -> None:
        async with out:
            while True:
                event = await choice.reader.next()
                await out.send((choice, event))
                if isinstance(event, Done):
                    return

    async with anyio.create_task_group() as group, receive:
        async with send:
            for choice in live:
                group.start_soon(pump, choice, send.clone())
        async for item in receive:
            yield item


async def close_all(choices: Sequence[Choice]) -> None:
    for choice in choices:
        await choice.reader.aclose()


class ChoicesStreamingResponse(StreamingResponse):
    """A streaming response that cancels every choice's job however the response ends."""

    def __init__(self, choices: Sequence[Choice], content: AsyncIterator[bytes], **kw: Any):
        super().__init__(content, **kw)
        self.jobs = [choice.job for choice in choices]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for job in self.jobs:
                job.cancel("client disconnected")


def usage(results: Sequence[GenerationResult]) -> p.Usage:
    """The prompt once, the completions summed."""
    prompt = results[0].prompt_tokens if results else 0
    completion = sum(result.completion_tokens for result in results)
    return p.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


# -- OpenAI shapes ---------------------------------------------------------------------------


def token_logprob(entry: TokenLogprob) -> p.TokenLogprob:
    return p.TokenLogprob(
        token=entry.token,
        logprob=entry.logprob,
        bytes=list(entry.bytes),
        top_logprobs=[
            p.TopLogprob(token=top.token, logprob=top.logprob, bytes=list(top.bytes))
            for top in entry.top
        ],
    )


def chat_logprobs(entries: Sequence[TokenLogprob]) -> p.ChoiceLogprobs:
    return p.ChoiceLogprobs(content=[token_logprob(entry) for entry in entries])


def completion_logprobs(entries: Sequence[TokenLogprob], offset: int = 0) -> p.CompletionLogprobs:
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return p.CompletionLogprobs(
        tokens=[entry.token for entry in entries],
        token_logprobs=[entry.logprob for entry in entries],
        top_logprobs=[{top.token: top.logprob for top in entry.top} for entry in entries],
        text_offset=offsets,
    )


def tool_call(call: HandlerToolCall) -> p.ToolCallParam:
    return p.ToolCallParam(
        id=call.id, function=p.FunctionCall(name=call.name, arguments=call.arguments)
    )


def tool_call_delta(call: HandlerToolCall, index: int) -> p.ToolCallDelta:
    return p.ToolCallDelta(
        index=index,
        id=call.id,
        type="function",
        function=p.FunctionCallDelta(name=call.name, arguments=call.arguments),
    )


def assistant_message(result: GenerationResult) -> p.AssistantMessage:
    calls = [tool_call(call) for call in result.tool_calls]
    content = result.text if (result.text or not calls) else None
    return p.AssistantMessage(content=content, tool_calls=calls or None)
