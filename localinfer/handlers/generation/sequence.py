"""One request's progress through any token-by-token engine.

:class:`Generation` takes each sampled token id, streams the text it settles (incremental
decode, stop strings), decides when to stop (EOS, stop string, length, a cancelled
caller) and finishes the work item with counts and timings, so a request gets the same
text from every engine.
"""

from __future__ import annotations

import time

from localinfer.errors import InvalidRequest
from localinfer.handlers.base import WorkItem
from localinfer.handlers.generation.grammar import ConstrainedSequence
from localinfer.handlers.generation.logprobs import LogprobRecorder
from localinfer.handlers.generation.text import Decode, IncrementalDecoder, StopStringFilter
from localinfer.handlers.generation.tool_calls import ToolCallFilter, ToolCallFormat
from localinfer.handlers.tasks import FinishReason, GenerationRequest, GenerationResult, ToolCall


def check_fits_context(
    prompt_tokens: int, max_new_tokens: int, limit: int | None, *, counted: str = ""
) -> None:
    """A 400 (``context_length_exceeded``) when prompt and completion cannot both fit;
    ``counted`` says what the prompt count includes (e.g. `` (images included)``)."""
    total = prompt_tokens + max_new_tokens
    if limit is not None and total > limit:
        raise InvalidRequest(
            f"the prompt has {prompt_tokens} tokens{counted} and max_tokens is "
            f"{max_new_tokens}: {total} tokens exceed this model's context of {limit} tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )


class Generation:
    """One request's progress: decode each new token, stream stable text, decide when to stop."""

    def __init__(
        self,
        item: WorkItem,
        request: GenerationRequest,
        prompt_ids: list[int],
        decode: Decode,
        eos_token_ids: frozenset[int],
        logprobs: LogprobRecorder | None = None,
        grammar: ConstrainedSequence | None = None,
        tool_format: ToolCallFormat | None = None,
    ) -> None:
        self.item = item
        self.request = request
        self.prompt_ids = prompt_ids
        self.completion_tokens = 0
        self.finish_reason: FinishReason | None = None
        self._eos = eos_token_ids
        self._decoder = IncrementalDecoder(decode)
        self._text = StopStringFilter(request.stop)
        self._started = time.perf_counter()
        self._first_token_at: float | None = None
        #: the engine records each step's logits here when the request asks for logprobs
        self.logprobs = logprobs
        #: the request's output constraint, which the engine applies to each step's logits
        self.grammar = grammar
        #: parses the model's tool calls out of its text when the request offers tools
        self._calls = ToolCallFilter(tool_format) if tool_format is not None else None
        self._content: list[str] = []

    @property
    def needs_own_generator(self) -> bool:
        """Seeded sampling: reproducible only with a generator of its own."""
        return self.request.seed is not None and self.request.temperature > 0

    @property
    def stopped(self) -> bool:
        return self.finish_reason is not None

    def start(self) -> None:
        """Generation begins now: ``prefill_ms`` counts from here, tokenization excluded."""
        self._started = time.perf_counter()

    def on_token(self, token_id: int) -> bool:
        """Take one generated token; stream the text it settles; True once generation must stop."""
        if self.finish_reason is not None:
            return True
        if self._first_token_at is None:
            self._first_token_at = time.perf_counter()
        self.completion_tokens += 1
        logprob = self.logprobs.take(token_id) if self.logprobs is not None else None
        if token_id in self._eos:
            self.finish_reason = "stop"
            return True
        self._send(self._text.push(self._decoder.push(token_id)))
        if logprob is not None and not self._text.matched and not self.item.done:
            self.item.emit(logprob)
        if self._text.matched:
            self.finish_reason = "stop"
        elif self.completion_tokens >= self.request.max_new_tokens:
            self.finish_reason = "length"
        elif self.item.cancelled:
            self.finish_reason = "stop"
        return self.finish_reason is not None

    def finish(self) -> None:
        """Flush what was held back and finish the item with its result."""
        if self.item.done:
            return
        now = time.perf_counter()
        if self.finish_reason is None:  # the engine ended it without us seeing why
            at_limit = self.completion_tokens >= self.request.max_new_tokens
            self.finish_reason = "length" if at_limit else "stop"
        if not self._text.matched:
            self._send(self._text.push(self._decoder.flush()) + self._text.flush())
        text, calls = self._text.released, tuple[ToolCall, ...]()
        if self._calls is not None:
            for piece in self._calls.flush():
                self._deliver(piece)
            text, calls = "".join(self._content), tuple(self._calls.calls)
            if calls and self.finish_reason == "stop":
                self.finish_reason = "tool_calls"
        first = self._first_token_at if self._first_token_at is not None else now
        self.item.finish(
            GenerationResult(
                text=text,
                tool_calls=calls,
                finish_reason=self.finish_reason,
                prompt_tokens=len(self.prompt_ids),
                completion_tokens=self.completion_tokens,
                prefill_ms=(first - self._started) * 1e3,
                decode_ms=(now - first) * 1e3,
            )
        )

    def _send(self, text: str) -> None:
        if not text or self.item.done:
            return
        if self._calls is None:
            self.item.emit(text)
            return
        for piece in self._calls.push(text):
            self._deliver(piece)

    def _deliver(self, piece: str | ToolCall) -> None:
        if isinstance(piece, str):
            self._content.append(piece)
        if piece and not self.item.done:
            self.item.emit(piece)
