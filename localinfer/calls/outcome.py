"""A finished generation turned into usage and timing, once for every face (the OpenAI
wire form rounds these; ``ChatResult`` keeps them as they are)."""

from __future__ import annotations

from dataclasses import dataclass

from localinfer.handlers.tasks import GenerationResult
from localinfer.runtime.job import Job


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens read and written by one call."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, result: GenerationResult) -> TokenUsage:
        return cls(
            result.prompt_tokens,
            result.completion_tokens,
            result.prompt_tokens + result.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class GenerationTiming:
    """Where one generation's time went: waiting in the queue, prefill, decode."""

    queue_ms: float
    prefill_ms: float
    decode_ms: float
    tokens_per_second: float

    @classmethod
    def of(cls, job: Job, result: GenerationResult) -> GenerationTiming:
        return cls(
            queue_ms=job.queue_ms or 0.0,
            prefill_ms=result.prefill_ms,
            decode_ms=result.decode_ms,
            tokens_per_second=result.tokens_per_second,
        )
