"""The engine's conversions between the client's types and the handlers': chat results,
``response_format`` as a constraint, user-code payloads and their streamed items joined.
"""

from __future__ import annotations

import json
import time

from localinfer.calls.outcome import GenerationTiming, TokenUsage
from localinfer.client.messages import content_text
from localinfer.client.results import (
    ChatResult,
    Timing,
    ToolCallResult,
    Usage,
)
from localinfer.client.structured import (
    response_format_body,
)
from localinfer.errors import InvalidRequest
from localinfer.handlers.generation.constraints import OutputConstraint, canonical_schema
from localinfer.handlers.tasks import (
    GenerationResult,
)
from localinfer.runtime.job import Job
from localinfer.runtime.model import ServedModel


def text_of(content: object) -> str:
    """A message's text, its image parts left out (they are decoded once the model is known)."""
    if isinstance(content, list):
        content = [p for p in content if not (isinstance(p, dict) and p.get("type") == "image_url")]
    return content_text(content)


def has_images(content: object) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "image_url" for part in content
    )


def infer_payload(
    served: ServedModel, args: tuple[object, ...], kwargs: dict[str, object], stream: bool
) -> object:
    body = {"args": list(args), "kwargs": kwargs, "stream": stream}
    prepare = served.definition.prepare
    return prepare(body) if prepare is not None else body


def joined(chunks: list[object]) -> object:
    """A whole result from streamed items, as ``/v1/infer`` joins them."""
    texts = [c for c in chunks if isinstance(c, str)]
    if len(texts) == len(chunks):
        return "".join(texts)
    blobs = [bytes(c) for c in chunks if isinstance(c, bytes | bytearray)]
    if len(blobs) == len(chunks):
        return b"".join(blobs)
    return chunks


def chat_result(
    model: str, job: Job, result: GenerationResult, started: float, first_ms: float | None
) -> ChatResult:
    usage, timing = TokenUsage.of(result), GenerationTiming.of(job, result)
    return ChatResult(
        text=result.text,
        model=model,
        finish_reason=result.finish_reason,
        usage=Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
        timing=Timing(
            queue_ms=timing.queue_ms,
            prefill_ms=timing.prefill_ms,
            decode_ms=timing.decode_ms,
            tokens_per_second=timing.tokens_per_second,
            total_ms=(time.perf_counter() - started) * 1e3,
            first_token_ms=first_ms,
        ),
        id=job.request_id,
        tool_calls=tuple(
            ToolCallResult(call.id, call.name, json.loads(call.arguments))
            for call in result.tool_calls
        ),
    )


def constraint(response_format: object) -> OutputConstraint | None:
    """``response_format`` (a pydantic class or an OpenAI dict) as the handler's constraint."""
    if response_format is None:
        return None
    body = response_format_body(response_format)
    if body.get("type") == "text":
        return None
    if body.get("type") == "json_object":
        return OutputConstraint(canonical_schema({"type": "object"}))
    if body.get("type") == "json_schema":
        return OutputConstraint(canonical_schema(body["json_schema"]["schema"]))
    raise InvalidRequest(
        f"response_format type {body.get('type')!r} is not one of text, json_object, json_schema",
        param="response_format",
    )
