"""What every endpoint's models share: the request base and its parser, ids, usage and
timing, and the OpenAI error body.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)

from localinfer.calls.outcome import GenerationTiming, TokenUsage
from localinfer.errors import InvalidRequest

# -- shared ----------------------------------------------------------------------------------


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=10_000_000)


def parse(model: type[Request], body: Any, *, strict: bool = True) -> Any:
    """Validate ``body`` into ``model``; the first problem becomes a 400 naming the field.

    JSON bodies are validated strictly, as the schemas in ``/openapi.json`` say: ``0`` is
    not ``false``, ``"1"`` and ``1.5`` are not integers. Form fields (all text) are not.
    """
    try:
        return model.model_validate(body, strict=strict)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = first.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        count = exc.error_count()
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        raise InvalidRequest(
            f"{where + ': ' if where else ''}{message}{more}", param=where or None
        ) from None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int

    @classmethod
    def of(cls, usage: TokenUsage) -> Usage:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )


class Performance(BaseModel):
    """Timing beyond OpenAI's fields, in every chat/completion response."""

    queue_ms: float
    prefill_ms: float
    decode_ms: float
    tokens_per_second: float

    @classmethod
    def of(cls, timing: GenerationTiming) -> Performance:
        """The wire form: milliseconds to the microsecond."""
        return cls(
            queue_ms=round(timing.queue_ms, 3),
            prefill_ms=round(timing.prefill_ms, 3),
            decode_ms=round(timing.decode_ms, 3),
            tokens_per_second=round(timing.tokens_per_second, 3),
        )


# -- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error the OpenAI-style routes answer (``localinfer.server.errors``)."""

    error: ErrorDetail
